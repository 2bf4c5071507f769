// The builders behind one interface: kiln (embedded mode, its compiled CLI), kiln (a `kiln daemon`
// and its client), Docker's BuildKit (the test daemon) and buildah. Each keeps its images in its own local store, and each
// knows what "cold" means for itself: no build cache, the base image present.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { check, procMemory, run, type ProcMemory, type RunResult } from './proc.js';
import { startCountingProxy, type CountingProxy } from './proxy.js';
import type { Workload } from './workloads.js';

export type BuilderId = 'kiln' | 'kiln-daemon' | 'buildkit' | 'buildah';
export const BUILDER_IDS: readonly BuilderId[] = ['kiln', 'kiln-daemon', 'buildkit', 'buildah'];

export const BUILDER_LABELS: Readonly<Record<BuilderId, string>> = {
  kiln: 'kiln (embedded)',
  'kiln-daemon': 'kiln (daemon)',
  buildkit: 'BuildKit (docker)',
  buildah: 'buildah',
};

export type Probe = { ok: true; version: string } | { ok: false; reason: string };

/** Where a workload's context is on disk. */
export interface Context {
  dir: string;
  dockerfile: string;
  /** The image name to store under, when not imageName(w) (the concurrent builds have one each). */
  tag?: string;
}

export interface Builder {
  readonly id: BuilderId;
  /** Whether the builder is installed and answers, and its version. */
  probe(): Promise<Probe>;
  /** Makes the base image present and the build cache empty (untimed). */
  resetCold(w: Workload): Promise<void>;
  /** One timed build of W, storing the image in the builder's local store under imageName(W). */
  build(w: Workload, ctx: Context): Promise<RunResult>;
  /** One timed export of the image built last to an OCI (or, for Docker, docker-format) tarball. */
  exportImage(w: Workload, ctx: Context, dest: string): Promise<RunResult>;
  /** Removes what the benchmark left in the builder's stores. */
  cleanup(): Promise<void>;
}

export const BUILD_TIMEOUT_MS = 20 * 60_000;
const SETUP_TIMEOUT_MS = 10 * 60_000;
const PROBE_TIMEOUT_MS = 30_000;

export function imageName(w: Workload, ctx?: Context): string {
  return ctx?.tag ?? `kiln-bench/${w.name}:latest`;
}

function firstLine(r: RunResult): string {
  return r.output.trim().split('\n')[0] ?? '';
}

// ---- kiln ------------------------------------------------------------------------------------

export interface KilnOptions {
  /** The `kiln` command as installed: dist/bin/kiln (the sh script that starts Node on dist/bin/kiln.js). */
  cli: string;
  /** A directory of the benchmark's own (roots, configs). */
  work: string;
  /** host:port of the registry kiln uses as its Docker Hub mirror. */
  registry: string;
}

/**
 * kiln in embedded mode: one process per build, state in a --root directory. Cold = a fresh root
 * into which a throw-away build (FROM base + RUN true) pulled and unpacked the base image: the base
 * is present as it is in Docker's and buildah's stores, no step of the workload is cached.
 */
/**
 * Both kiln builders: the work directory and a daemon.json mirroring Docker Hub to the test
 * registry, then the private copy of the CLI must answer --version.
 */
async function probeKiln(opts: { work: string; registry: string; cli: string }, config: string): Promise<Probe> {
  await fsp.mkdir(opts.work, { recursive: true });
  await fsp.writeFile(config, JSON.stringify({ 'registry-mirrors': [`http://${opts.registry}`] }));
  try {
    await fsp.access(opts.cli);
  } catch {
    return { ok: false, reason: `${opts.cli} is missing (npm run build)` };
  }
  const r = await run([opts.cli, '--version'], { timeoutMs: PROBE_TIMEOUT_MS });
  return r.code === 0 ? { ok: true, version: firstLine(r) } : { ok: false, reason: `kiln --version failed: ${firstLine(r)}` };
}

export class KilnBuilder implements Builder {
  readonly id = 'kiln' as const;
  private readonly roots = new Map<string, string>();
  /** Roots of earlier cold runs, removed in cleanup() (see RETIRED_ROOTS). */
  private readonly retired: string[] = [];
  private generation = 0;
  /** Numbers GNU time's output files: concurrent builds must not write the same one. */
  private timed = 0;
  private readonly config: string;

  constructor(private readonly opts: KilnOptions) {
    this.config = path.join(opts.work, 'kiln-config.json');
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, KILN_CONFIG: this.config, BUILDKIT_PROGRESS: '' };
  }

  private cmd(root: string, args: string[]): string[] {
    return [this.opts.cli, '--root', root, ...args];
  }

  probe(): Promise<Probe> {
    return probeKiln(this.opts, this.config);
  }

  rootOf(w: Workload): string | undefined {
    return this.roots.get(w.name);
  }

  async resetCold(w: Workload): Promise<void> {
    const old = this.roots.get(w.name);
    if (old) this.retired.push(old);
    const root = path.join(this.opts.work, `root-${w.name}-${++this.generation}`);
    const prep = path.join(this.opts.work, `prep-${w.name}`);
    await fsp.mkdir(prep, { recursive: true });
    await fsp.writeFile(path.join(prep, 'Dockerfile'), `FROM ${w.base}\nRUN true\n`);
    this.roots.set(w.name, root);
    await check(this.cmd(root, ['build', '--progress', 'plain', '-f', path.join(prep, 'Dockerfile'), prep]), {
      env: this.env(),
      timeoutMs: SETUP_TIMEOUT_MS,
    });
  }

  private root(w: Workload): string {
    const r = this.roots.get(w.name);
    if (!r) throw new Error(`kiln: no root for ${w.name} yet (resetCold first)`);
    return r;
  }

  build(w: Workload, ctx: Context): Promise<RunResult> {
    return run(this.cmd(this.root(w), ['build', '-t', imageName(w, ctx), '--progress', 'plain', '-f', ctx.dockerfile, ctx.dir]), {
      env: this.env(),
      timeoutMs: BUILD_TIMEOUT_MS,
      rssFile: path.join(this.opts.work, `time-${++this.timed % 16}.out`),
    });
  }

  /** A build whose every step is cached, exporting an OCI layout tarball: what `kiln` offers for "export". */
  exportImage(w: Workload, ctx: Context, dest: string): Promise<RunResult> {
    return run(this.cmd(this.root(w), ['build', '--progress', 'plain', '-o', `type=oci,dest=${dest}`, '-f', ctx.dockerfile, ctx.dir]), {
      env: this.env(),
      timeoutMs: BUILD_TIMEOUT_MS,
      rssFile: path.join(this.opts.work, `time-${++this.timed % 16}.out`),
    });
  }

  async cleanup(): Promise<void> {
    for (const root of [...this.retired, ...this.roots.values()]) await removeTree(root);
    this.retired.length = 0;
    this.roots.clear();
  }
}

// ---- kiln daemon -----------------------------------------------------------------------------

/** One `kiln daemon` process of the run, as it was when it was stopped. */
export interface DaemonInstance {
  /** The workload whose cold run (or concurrent set-up) started it on a fresh root. */
  startedFor: string;
  /** Client builds it served (set-up builds included). */
  builds: number;
  /** VmRSS and VmHWM just before SIGTERM; missing when it had already exited. */
  memory?: ProcMemory;
  /** From SIGTERM to its exit. */
  stopSeconds: number;
  /** "exit 0", "exit 1", "SIGKILL" (it did not stop within STOP_TIMEOUT_MS), ... */
  exit: string;
}

const DAEMON_START_TIMEOUT_MS = 60_000;
const DAEMON_STOP_TIMEOUT_MS = 60_000;

/**
 * kiln as a service: a `kiln daemon` with its own root, socket and daemon.json (the same registry
 * mirror as embedded kiln), and one `kiln build --addr` client process per build. Clients reach the
 * daemon through a counting proxy (proxy.ts), so each build's upload is measured on the socket.
 * Cold: a running daemon cannot be given a fresh root, so cold restarts it on a fresh one and makes
 * the base present with embedded kiln's throw-away build (FROM base + RUN true), through the daemon.
 */
export class KilnDaemonBuilder implements Builder {
  readonly id = 'kiln-daemon' as const;
  /** Every daemon process of the run, in order; the last one is the daemon "after the run". */
  readonly instances: DaemonInstance[] = [];
  private daemon?: { proc: ChildProcess; exited: Promise<string>; root: string; startedFor: string; builds: number };
  private proxy?: CountingProxy;
  private generation = 0;
  private readonly config: string;
  private readonly socket: string;
  private readonly proxySocket: string;
  /** The daemons' stderr (one line per request and per build), appended across restarts. */
  readonly logFile: string;

  constructor(private readonly opts: KilnOptions) {
    this.config = path.join(opts.work, 'daemon.json');
    this.socket = path.join(opts.work, 'kiln.sock');
    this.proxySocket = path.join(opts.work, 'proxy.sock');
    this.logFile = path.join(opts.work, 'daemon.log');
  }

  probe(): Promise<Probe> {
    return probeKiln(this.opts, this.config);
  }

  private client(args: string[]): string[] {
    return [this.opts.cli, 'build', '--addr', `unix://${this.proxySocket}`, '--progress', 'plain', ...args];
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, BUILDKIT_PROGRESS: '' };
  }

  async resetCold(w: Workload): Promise<void> {
    // The old root is removed with the others in cleanup(), not here: see RETIRED_ROOTS.
    await this.stop();
    await this.start(path.join(this.opts.work, `root-${++this.generation}`), w.name);
    const prep = path.join(this.opts.work, `prep-${w.name}`);
    await fsp.mkdir(prep, { recursive: true });
    await fsp.writeFile(path.join(prep, 'Dockerfile'), `FROM ${w.base}\nRUN true\n`);
    this.daemon!.builds++;
    await check(this.client(['-f', path.join(prep, 'Dockerfile'), prep]), { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS });
  }

  build(w: Workload, ctx: Context): Promise<RunResult> {
    return this.timed(['-t', imageName(w, ctx), '-f', ctx.dockerfile, ctx.dir]);
  }

  exportImage(_w: Workload, ctx: Context, dest: string): Promise<RunResult> {
    return this.timed(['-o', `type=oci,dest=${dest}`, '-f', ctx.dockerfile, ctx.dir]);
  }

  /**
   * One client build; uploadBytes = what the proxy saw the client send meanwhile. Exact for builds
   * run one at a time; concurrent builds each count the others' bytes too (the runner ignores them).
   */
  private async timed(args: string[]): Promise<RunResult> {
    const d = this.daemon;
    const proxy = this.proxy;
    if (!d || !proxy) throw new Error('kiln daemon: not running (resetCold first)');
    const before = proxy.clientToTarget();
    d.builds++;
    // run() spawns before its first await, so concurrent calls start together.
    const r = await run(this.client(args), { env: this.env(), timeoutMs: BUILD_TIMEOUT_MS });
    r.uploadBytes = proxy.clientToTarget() - before;
    if (r.code !== 0) r.output += `\n(kiln daemon log: ${this.logFile})\n${await this.logTail()}`;
    return r;
  }

  private async start(root: string, startedFor: string): Promise<void> {
    await fsp.mkdir(this.opts.work, { recursive: true });
    this.proxy ??= await startCountingProxy(this.proxySocket, this.socket);
    const log = fs.openSync(this.logFile, 'a');
    const proc = spawn(this.opts.cli, ['daemon', '--root', root, '--addr', `unix://${this.socket}`, '--config', this.config], {
      stdio: ['ignore', 'ignore', log],
      env: this.env(),
    });
    fs.closeSync(log);
    const exited = new Promise<string>((resolve) => {
      proc.once('error', (err) => resolve(`not started: ${err.message}`));
      proc.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`));
    });
    let gone: string | undefined;
    void exited.then((how) => (gone = how));
    this.daemon = { proc, exited, root, startedFor, builds: 0 };
    const deadline = Date.now() + DAEMON_START_TIMEOUT_MS;
    while (!(await ping(this.socket))) {
      if (gone !== undefined || Date.now() > deadline) {
        if (gone === undefined) await this.stop();
        this.daemon = undefined;
        throw new Error(`kiln daemon on ${root} ${gone ? `exited at start (${gone})` : 'did not answer /_ping within 60 s'}:\n${await this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Reads the daemon's memory, then SIGTERM and waits for its exit (SIGKILL if it does not come). */
  async stop(): Promise<void> {
    const d = this.daemon;
    if (!d) return;
    this.daemon = undefined;
    const memory = d.proc.pid !== undefined ? await procMemory(d.proc.pid) : undefined;
    const started = process.hrtime.bigint();
    d.proc.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([d.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), DAEMON_STOP_TIMEOUT_MS)))]);
    clearTimeout(timer);
    if (exit === undefined) d.proc.kill('SIGKILL');
    const instance: DaemonInstance = {
      startedFor: d.startedFor,
      builds: d.builds,
      stopSeconds: Number(process.hrtime.bigint() - started) / 1e9,
      exit: exit ?? `SIGKILL (no exit within ${DAEMON_STOP_TIMEOUT_MS / 1000} s of SIGTERM)`,
    };
    if (memory) instance.memory = memory;
    this.instances.push(instance);
    if (exit === undefined) await d.exited;
  }

  private async logTail(): Promise<string> {
    const text = await fsp.readFile(this.logFile, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-8).join('\n');
  }

  async cleanup(): Promise<void> {
    await this.stop();
    await this.proxy?.close();
    this.proxy = undefined;
    for (const e of await fsp.readdir(this.opts.work).catch(() => [])) {
      if (e.startsWith('root-')) await removeTree(path.join(this.opts.work, e));
    }
  }
}

/** GET /_ping on a unix socket: true when the daemon answers 200. */
function ping(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath: socket, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

// ---- Docker (BuildKit inside dockerd) --------------------------------------------------------

export interface DockerOptions {
  docker: string;
  host: string;
}

/** Cold = `docker builder prune -af` and the image of the previous run removed; base images kept. */
export class DockerBuilder implements Builder {
  readonly id = 'buildkit' as const;
  private readonly built = new Set<string>();

  constructor(private readonly opts: DockerOptions) {}

  private cmd(args: string[]): string[] {
    return [this.opts.docker, '-H', this.opts.host, ...args];
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, DOCKER_BUILDKIT: '1', BUILDKIT_PROGRESS: 'plain' };
  }

  async probe(): Promise<Probe> {
    try {
      await fsp.access(this.opts.docker);
    } catch {
      return { ok: false, reason: `${this.opts.docker} is not installed` };
    }
    const r = await run(this.cmd(['version', '--format', '{{.Server.Version}}']), { env: this.env(), timeoutMs: PROBE_TIMEOUT_MS });
    return r.code === 0 ? { ok: true, version: `dockerd ${firstLine(r)}` } : { ok: false, reason: `no daemon on ${this.opts.host}: ${firstLine(r)}` };
  }

  async resetCold(w: Workload): Promise<void> {
    const opts = { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS };
    if ((await run(this.cmd(['image', 'inspect', w.base]), opts)).code !== 0) await check(this.cmd(['pull', '-q', w.base]), opts);
    await run(this.cmd(['rmi', '-f', imageName(w)]), opts);
    await check(this.cmd(['builder', 'prune', '-af']), opts);
  }

  build(w: Workload, ctx: Context): Promise<RunResult> {
    this.built.add(imageName(w, ctx));
    return run(this.cmd(['build', '--network', 'host', '--progress', 'plain', '-t', imageName(w, ctx), '-f', ctx.dockerfile, ctx.dir]), {
      env: this.env(),
      timeoutMs: BUILD_TIMEOUT_MS,
    });
  }

  /** `docker save`: Docker 20.10 has no OCI export without buildx, so this is its docker-format tarball. */
  exportImage(w: Workload, _ctx: Context, dest: string): Promise<RunResult> {
    return run(this.cmd(['save', '-o', dest, imageName(w)]), { env: this.env(), timeoutMs: BUILD_TIMEOUT_MS });
  }

  async cleanup(): Promise<void> {
    for (const name of this.built) await run(this.cmd(['rmi', '-f', name]), { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS });
    this.built.clear();
  }
}

// ---- buildah ----------------------------------------------------------------------------------

export interface BuildahOptions {
  buildah: string;
  runc: string;
  /** buildah's own storage and configuration live here, nowhere else. */
  work: string;
  registry: string;
}

/**
 * buildah with its storage in the benchmark's directory, and a registries.conf of its own that
 * sends docker.io to the local registry as a mirror (so `FROM busybox` works offline, as with the
 * other two). Cold = every image but the base ones removed (built images and the --layers cache).
 */
export class BuildahBuilder implements Builder {
  readonly id = 'buildah' as const;

  constructor(private readonly opts: BuildahOptions) {}

  private cmd(args: string[]): string[] {
    const w = this.opts.work;
    return [this.opts.buildah, '--root', path.join(w, 'storage'), '--runroot', path.join(w, 'run'), '--storage-driver', 'overlay', ...args];
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, CONTAINERS_REGISTRIES_CONF: path.join(this.opts.work, 'registries.conf'), BUILDAH_ISOLATION: 'oci' };
  }

  async probe(): Promise<Probe> {
    await fsp.mkdir(this.opts.work, { recursive: true });
    await fsp.writeFile(path.join(this.opts.work, 'registries.conf'), buildahRegistriesConf(this.opts.registry));
    const v = await run([this.opts.buildah, '--version'], { timeoutMs: PROBE_TIMEOUT_MS });
    if (v.code !== 0) return { ok: false, reason: `${this.opts.buildah} --version failed: ${firstLine(v)}` };
    const s = await run(this.cmd(['images']), { env: this.env(), timeoutMs: PROBE_TIMEOUT_MS });
    if (s.code !== 0) return { ok: false, reason: `buildah cannot open its storage: ${firstLine(s)}` };
    return { ok: true, version: firstLine(v) };
  }

  private async imageIds(ref?: string): Promise<string[]> {
    // -a (intermediate images too) only when listing everything: buildah refuses it with a name.
    const r = await check(this.cmd(['images', '-q', '--no-trunc', ...(ref ? [ref] : ['-a'])]), { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS });
    return r.output
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^(sha256:)?[0-9a-f]{64}$/.test(l));
  }

  async resetCold(w: Workload): Promise<void> {
    const opts = { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS };
    await check(this.cmd(['rm', '-a']), opts);
    if ((await run(this.cmd(['inspect', '--type', 'image', w.base]), opts)).code !== 0) await check(this.cmd(['pull', '-q', w.base]), opts);
    const keep = new Set<string>();
    for (const base of ['busybox', 'debian:bookworm']) {
      if ((await run(this.cmd(['inspect', '--type', 'image', base]), opts)).code === 0) for (const id of await this.imageIds(base)) keep.add(id);
    }
    const drop = (await this.imageIds()).filter((id) => !keep.has(id));
    if (drop.length > 0) await check(this.cmd(['rmi', '-f', ...drop]), opts);
    await run(this.cmd(['rmi', '--prune']), opts);
  }

  build(w: Workload, ctx: Context): Promise<RunResult> {
    return run(this.cmd(['bud', '--layers', `--runtime=${this.opts.runc}`, '--network', 'host', '-t', imageName(w, ctx), '-f', ctx.dockerfile, ctx.dir]), {
      env: this.env(),
      timeoutMs: BUILD_TIMEOUT_MS,
    });
  }

  exportImage(w: Workload, _ctx: Context, dest: string): Promise<RunResult> {
    return run(this.cmd(['push', '-q', imageName(w), `oci-archive:${dest}`]), { env: this.env(), timeoutMs: BUILD_TIMEOUT_MS });
  }

  async cleanup(): Promise<void> {
    const opts = { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS };
    await run(this.cmd(['rm', '-a']), opts);
    await run(this.cmd(['rmi', '-a', '-f']), opts);
    await removeTree(this.opts.work);
  }
}

/** registries.conf for buildah: short names search docker.io, and docker.io is mirrored by REGISTRY (plain HTTP). */
export function buildahRegistriesConf(registry: string): string {
  return [
    'unqualified-search-registries = ["docker.io"]',
    'short-name-mode = "permissive"',
    '',
    '[[registry]]',
    'prefix = "docker.io"',
    'location = "docker.io"',
    '',
    '[[registry.mirror]]',
    `location = "${registry}"`,
    'insecure = true',
    '',
  ].join('\n');
}

// ---- helpers ----------------------------------------------------------------------------------

/**
 * rm -rf of a directory of ours, after lazily unmounting anything still mounted below it (overlay
 * snapshots of an interrupted build, buildah's private bind of its storage). Never follows a mount.
 */
// RETIRED_ROOTS: a cold run's previous root is removed at the end of the run, not just before the
// next cold run. Removing a tree of tens of thousands of files leaves the file system slow to
// create files for a while (on the bench machine a shell loop creating 30,000 files took 6.1 s
// right after an rm -rf of a manyfiles root, 1.4 s otherwise), and that would be charged to the
// timed build that follows: the harness's own clean-up, not the builder. Docker's and buildah's
// cold runs remove their previous results too, but keep the unpacked base.
export async function removeTree(dir: string): Promise<void> {
  const abs = path.resolve(dir);
  const mounts = (await fsp.readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => unescapeMount(l.split(' ')[4] ?? ''))
    .filter((m) => m === abs || m.startsWith(abs + '/'))
    // Deepest first.
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run(['umount', '-l', m], { timeoutMs: 60_000 });
  await fsp.rm(abs, { recursive: true, force: true });
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}
