// One RUN step in a real runc container.
//
// The bundle (config.json, the /etc files, read-only file mounts) lives in <stateDir>/bundles/<id>,
// outside the rootfs, and is removed after every run, whatever happened. runc runs in the foreground
// (`runc run`), without a terminal, stdin from /dev/null, stdout and stderr piped to us. runc's own
// messages go to a log file in the bundle, so the step's stderr stays the step's.
//
// Every process of the step dies with it: the step gets its own PID namespace, and when its first
// process exits the kernel kills the rest. On abort we `runc kill ID KILL` (repeatedly, since the
// container may not exist yet), wait for `runc run` to return, then `runc delete -f ID`.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { isInside, mkdirAllInRoot, resolveInRoot } from '../fsutil/rootpath.js';
import { hostsFile, resolvConf, validateHostname } from './etcfiles.js';
import { buildSpec, DEFAULT_MOUNT_DESTINATIONS, nofileLimit, processEnv, type OciMount } from './spec.js';
import { recordStubs, removeStubs } from './stubs.js';
import { TailBuffer } from './tail.js';
import { ExecutorError, type ExecMount, type RunOptions, type RunResult } from './types.js';
import { lookupUser } from '../fsutil/rootfs-users.js';

const DEFAULT_HOSTNAME = 'kiln';
const DEFAULT_TAIL_BYTES = 64 * 1024;
/** Kernel file systems mounted over these: a directory created there in the rootfs would be hidden. */
const KERNEL_TREES = ['/proc', '/sys', '/dev'];

function underTree(p: string, tree: string): boolean {
  return p === tree || p.startsWith(tree + '/');
}

/** Normalises a container path; refuses relative ones and "/" (nothing may be mounted over the root). */
function mountTarget(target: string): string {
  if (!target.startsWith('/')) throw new ExecutorError(`mount target ${JSON.stringify(target)} is not absolute`);
  if (target.includes('\0')) throw new ExecutorError(`mount target ${JSON.stringify(target)} contains a NUL byte`);
  const norm = path.posix.normalize(target).replace(/\/+$/, '');
  if (norm === '') throw new ExecutorError('cannot mount over /');
  for (const tree of ['/proc', '/sys']) {
    if (underTree(norm, tree)) throw new ExecutorError(`cannot mount over ${norm}: ${tree} belongs to the kernel`);
  }
  return norm;
}

/**
 * Creates the working directory inside the rootfs with every symlink resolved inside it, and returns
 * it as a container path with no symlinks left, so runc's chdir cannot be led anywhere else.
 */
async function prepareCwd(rootfs: string, cwd: string, owner: { uid: number; gid: number }): Promise<string> {
  let host: string;
  try {
    host = await resolveInRoot(rootfs, cwd);
  } catch (err) {
    throw new ExecutorError(`working directory ${cwd}: ${(err as Error).message}`, { cause: err });
  }
  if (!isInside(rootfs, host)) throw new ExecutorError(`working directory ${cwd} resolves outside the rootfs`);
  const inside = '/' + path.relative(rootfs, host);
  for (const tree of KERNEL_TREES) {
    // "/dev" itself exists in every container; anything below (or /proc/self/fd/N) is not a directory
    // of the image and would be hidden by, or resolved through, a kernel file system.
    if (underTree(inside, tree) && inside !== '/dev') {
      throw new ExecutorError(`working directory ${cwd} resolves to ${inside}, inside ${tree}, which the container's kernel file systems cover`);
    }
  }
  try {
    // runc's prepareRootfs runs os.MkdirAll(cwd) in the container on the path as written, so
    // "/a/../b" makes /a too (root-owned): every prefix that a ".." follows is made first.
    const parts = cwd.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (parts[i] === '..' && parts[i - 1] !== '' && parts[i - 1] !== '.' && parts[i - 1] !== '..') {
        await mkdirAllInRoot(rootfs, parts.slice(0, i).join('/') || '/', 0o755);
      }
    }
    // BuildKit's runc executor: MkdirAllAndChown(cwd, 0755, the RUN's uid and gid) when it is missing.
    await mkdirAllInRoot(rootfs, inside, 0o755, owner);
  } catch (err) {
    throw new ExecutorError(`cannot create working directory ${cwd}: ${(err as Error).message}`, { cause: err });
  }
  return inside;
}

function swapAccounted(): boolean {
  if (fs.existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes')) return true;
  try {
    // cgroup v2: the swap knob exists in our own cgroup when swap is accounted.
    const own = fs.readFileSync('/proc/self/cgroup', 'utf8').match(/^0::(.*)$/m)?.[1];
    return own !== undefined && fs.existsSync(path.join('/sys/fs/cgroup', own, 'memory.swap.max'));
  } catch {
    return false;
  }
}

/** Our own hard RLIMIT_NOFILE (Node has no getrlimit): the container may not exceed it. */
function callerNofileHard(): number {
  try {
    const line = fs
      .readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    if (hard === 'unlimited') return Number.MAX_SAFE_INTEGER;
    const n = Number(hard);
    return Number.isFinite(n) && n > 0 ? n : 1024;
  } catch {
    return 1024;
  }
}

interface Prepared {
  mounts: OciMount[];
}

/** Writes the /etc files and file mounts into the bundle and translates the caller's mounts. */
async function prepareMounts(bundle: string, hostname: string, opts: RunOptions): Promise<Prepared> {
  const mounts: OciMount[] = [];
  const etc = path.join(bundle, 'etc');
  await fsp.mkdir(etc, { mode: 0o755 });
  // BuildKit's generateMountOpts binds only these two; /etc/hostname stays the image's own file,
  // which a RUN may write (the hostname itself is the UTS namespace's).
  const files: [string, string][] = [
    ['hosts', hostsFile(hostname, opts.extraHosts)],
    ['resolv.conf', await resolvConf()],
  ];
  for (const [name, content] of files) {
    const p = path.join(etc, name);
    await fsp.writeFile(p, content, { mode: 0o644 });
    await fsp.chmod(p, 0o644);
    mounts.push({ destination: `/etc/${name}`, type: 'bind', source: p, options: ['rbind', 'ro'] });
  }

  const fileDir = path.join(bundle, 'files');
  let n = 0;
  for (const m of opts.mounts ?? []) {
    const destination = mountTarget(m.target);
    switch (m.type) {
      case 'bind': {
        if (!path.isAbsolute(m.source)) throw new ExecutorError(`bind mount source ${m.source} is not absolute`);
        try {
          await fsp.stat(m.source);
        } catch (err) {
          throw new ExecutorError(`bind mount source ${m.source} for ${destination}: ${(err as Error).message}`, { cause: err });
        }
        mounts.push({ destination, type: 'bind', source: m.source, options: ['rbind', m.readonly ? 'ro' : 'rw'] });
        break;
      }
      case 'tmpfs': {
        const options = ['nosuid', 'nodev', `mode=${(m.mode ?? 0o1777).toString(8)}`];
        if (m.size !== undefined) options.push(`size=${Math.floor(m.size)}`);
        mounts.push({ destination, type: 'tmpfs', source: 'tmpfs', options });
        break;
      }
      case 'file': {
        await fsp.mkdir(fileDir, { recursive: true, mode: 0o711 });
        const p = path.join(fileDir, String(n++));
        await fsp.writeFile(p, m.content, { mode: 0o600 });
        await fsp.chown(p, m.uid ?? 0, m.gid ?? 0);
        await fsp.chmod(p, m.mode ?? 0o444);
        mounts.push({ destination, type: 'bind', source: p, options: ['rbind', 'ro', 'nosuid', 'nodev'] });
        break;
      }
      default:
        throw new ExecutorError(`unknown mount type ${(m as ExecMount).type}`);
    }
  }
  return { mounts };
}

interface RuncCall {
  code: number;
  stdout: string;
  stderr: string;
}

export function runcCall(runc: string, args: string[]): Promise<RuncCall> {
  return new Promise((resolve) => {
    const child = spawn(runc, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', (err) => resolve({ code: -1, stdout, stderr: stderr + String(err) }));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** runc's own error messages from its JSON log (not the step's output). */
async function runcErrors(logFile: string): Promise<string[]> {
  let text: string;
  try {
    text = await fsp.readFile(logFile, 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const rec = JSON.parse(line) as { level?: string; msg?: string };
      if ((rec.level === 'error' || rec.level === 'fatal') && rec.msg) out.push(rec.msg);
    } catch {
      out.push(line);
    }
  }
  return out;
}

export async function run(opts: RunOptions): Promise<RunResult> {
  if (opts.signal?.aborted) throw new ExecutorError('run aborted before it started', { cause: opts.signal.reason });
  if (opts.args.length === 0) throw new ExecutorError('nothing to run: empty argv');
  if (opts.network !== 'host' && opts.network !== 'none') throw new ExecutorError(`unknown network mode ${String(opts.network)}`);
  const hostname = opts.hostname ?? DEFAULT_HOSTNAME;
  try {
    validateHostname(hostname);
  } catch (err) {
    throw new ExecutorError((err as Error).message);
  }
  const runc = opts.runc ?? 'runc';
  const rootfs = path.resolve(opts.rootfs);
  const rootStat = await fsp.stat(rootfs).catch(() => undefined);
  if (!rootStat?.isDirectory()) throw new ExecutorError(`rootfs ${rootfs} is not a directory`);

  let user;
  try {
    user = await lookupUser(rootfs, opts.user ?? '');
  } catch (err) {
    throw new ExecutorError(`USER ${opts.user ?? ''}: ${(err as Error).message}`, { cause: err });
  }
  const cwd = await prepareCwd(rootfs, opts.cwd ?? '/', { uid: user.uid, gid: user.gid });
  const env = processEnv(opts.env ?? [], user.home);

  const id = `kiln-${randomBytes(10).toString('hex')}`;
  const runcRoot = path.join(path.resolve(opts.stateDir), 'runc');
  const bundle = path.join(path.resolve(opts.stateDir), 'bundles', id);
  await fsp.mkdir(runcRoot, { recursive: true, mode: 0o700 });
  await fsp.mkdir(bundle, { recursive: true, mode: 0o711 });
  let onTmpfs = false;
  try {
    if (opts.sensitive) {
      await mountPrivateTmpfs(bundle, opts.mounts ?? []);
      onTmpfs = true;
    }
    const { mounts } = await prepareMounts(bundle, hostname, opts);
    // After prepareCwd: a working directory the step asked for is content, not a stub.
    const stubs = await recordStubs(rootfs, [...DEFAULT_MOUNT_DESTINATIONS, ...mounts.map((m) => m.destination)]);
    try {
      const spec = buildSpec({
        rootfs,
        args: opts.args,
        env,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additionalGids: user.additionalGids,
        hostname,
        network: opts.network,
        mounts,
        memoryBytes: opts.limits?.memoryBytes,
        swapAccounting: opts.limits?.memoryBytes !== undefined ? swapAccounted() : false,
        pids: opts.limits?.pids,
        nofile: nofileLimit(callerNofileHard()),
        // Relative: runc nests it under its own cgroup, so kiln's steps stay inside whatever limits
        // the kiln process itself runs under (a systemd unit, a CI sandbox).
        cgroupsPath: `kiln/${id}`,
        insecure: opts.insecure,
      });
      await fsp.writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 2), { mode: 0o600 });
      return await runContainer(runc, runcRoot, bundle, id, opts);
    } finally {
      // `runc run` removes the container when it returns; this covers aborts and runc failures. A
      // container runc left nothing of (no state directory) needs no second runc start (~30-100 ms).
      if (fs.existsSync(path.join(runcRoot, id))) await runcCall(runc, ['--root', runcRoot, 'delete', '-f', id]);
      await removeStubs(stubs);
    }
  } finally {
    if (onTmpfs) await unmountTmpfs(bundle);
    await fsp.rm(bundle, { recursive: true, force: true });
  }
}

function spawnChecked(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new ExecutorError(`${cmd} ${args.join(' ')}: ${err.trim() || `exit ${code}`}`))));
  });
}

/** A fresh tmpfs on the bundle directory, big enough for the file mounts and runc's few files. */
async function mountPrivateTmpfs(dir: string, mounts: ExecMount[]): Promise<void> {
  const files = mounts.reduce((n, m) => n + (m.type === 'file' ? Buffer.byteLength(m.content) : 0), 0);
  const size = files + 16 * 1024 * 1024;
  await spawnChecked('mount', ['--no-mtab', '-t', 'tmpfs', '-o', `mode=0711,nosuid,nodev,size=${size}`, 'tmpfs', dir]);
}

async function unmountTmpfs(dir: string): Promise<void> {
  try {
    await spawnChecked('umount', [dir]);
  } catch {
    // Still busy (runc just let go): detach it; its pages are freed with the last user.
    await spawnChecked('umount', ['-l', dir]).catch(() => undefined);
  }
}

function runContainer(runc: string, runcRoot: string, bundle: string, id: string, opts: RunOptions): Promise<RunResult> {
  const logFile = path.join(bundle, 'runc.log');
  const tail = new TailBuffer(opts.tailBytes ?? DEFAULT_TAIL_BYTES);
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(runc, ['--root', runcRoot, '--log', logFile, '--log-format', 'json', 'run', '--bundle', bundle, id], {
      cwd: bundle,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let exited = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;

    const killLoop = async () => {
      // The container may not exist yet (runc still creating it): keep asking until runc run returns.
      while (!exited) {
        await runcCall(runc, ['--root', runcRoot, 'kill', id, 'KILL']);
        if (exited) break;
        await new Promise<void>((r) => (killTimer = setTimeout(r, 100)));
      }
    };
    const onAbort = () => {
      if (aborted) return;
      aborted = true;
      void killLoop();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    // An abort between the check at the top of run() and here (the rootfs and mounts were being
    // prepared) fired no event this listener could see: without this the container ran to its end.
    if (opts.signal?.aborted) onAbort();

    // A throwing output callback is the caller's bug: stop the step and report it, rather than crash
    // kiln with an exception thrown from a stream event.
    let callbackError: unknown;
    const deliver = (cb: ((chunk: Buffer) => void) | undefined, chunk: Buffer) => {
      tail.push(chunk);
      if (!cb || callbackError !== undefined) return;
      try {
        cb(chunk);
      } catch (err) {
        callbackError = err;
        onAbort();
      }
    };
    child.stdout.on('data', (chunk: Buffer) => deliver(opts.onStdout, chunk));
    child.stderr.on('data', (chunk: Buffer) => deliver(opts.onStderr, chunk));
    child.on('error', (err) => {
      exited = true;
      opts.signal?.removeEventListener('abort', onAbort);
      reject(new ExecutorError(`cannot start ${runc}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, sig) => {
      exited = true;
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      void (async () => {
        if (callbackError !== undefined) {
          reject(new ExecutorError(`output callback failed: ${(callbackError as Error).message}`, { cause: callbackError }));
          return;
        }
        if (aborted) {
          resolve({ exitCode: 137, signal: 'SIGKILL', outputTail: tail.toString() });
          return;
        }
        const errors = await runcErrors(logFile);
        if (errors.length > 0) {
          // runc itself failed (bad config, executable not found, cgroup trouble): not an exit status.
          reject(new ExecutorError(`runc: ${errors[errors.length - 1]}`));
          return;
        }
        let exitCode = code ?? 255;
        if (code === null && sig) exitCode = 128 + (os.constants.signals[sig] ?? 0);
        resolve({ exitCode, outputTail: tail.toString() });
      })();
    });
  });
}
