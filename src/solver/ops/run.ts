// RUN: the step's snapshot mounted as the rootfs, its --mount sources prepared, one container in runc.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { run, type ExecMount } from '../../executor/index.js';
import type { MountFrom, RunMount, RunStep } from '../../frontend/types.js';
import { resolveInRoot } from '../../fsutil/rootpath.js';
import { cacheMountDir } from '../cache-io.js';
import { mountView, withActive, type Scope } from '../mounted.js';
import { serveAgentProxy } from '../ssh-agent.js';
import { formatPlatform, hostPlatform } from '../../oci/index.js';
import { definitionOf, stableStringify } from '../keys.js';
import { checkRunnable } from '../platforms.js';
import { describeFrom, StepError, type Entitlement, type Op, type OpContext } from './types.js';

/** Lines of output quoted in the error of a failed RUN. */
const ERROR_TAIL_LINES = 12;

/**
 * A privilege a Dockerfile can ask for but not grant itself (BuildKit's entitlements): the build must
 * ask with --allow, and the daemon (or, embedded, the config) must permit it.
 */
function requireEntitlement(step: RunStep, allow: readonly Entitlement[], entitlement: Entitlement, what: string): void {
  if (allow.includes(entitlement)) return;
  throw new StepError(
    step.location,
    `${what} needs the ${entitlement} entitlement: build with --allow ${entitlement}, on a kiln whose config permits it ("allowed-entitlements": ["${entitlement}"], or kiln daemon --allow-insecure-entitlement ${entitlement})`,
  );
}

/**
 * Refuses a RUN that uses a privilege the build was not granted. The solver asks before it looks in
 * the cache too: a result made with a privilege is no more the build's to take than to make.
 */
export function checkEntitlements(step: RunStep, allow: readonly Entitlement[]): void {
  if (step.security === 'insecure') requireEntitlement(step, allow, 'security.insecure', 'RUN --security=insecure');
  if (step.network === 'host') requireEntitlement(step, allow, 'network.host', 'RUN --network=host');
}

/**
 * RUN's key: its definition (the proxy args left out, as in BuildKit), the content of what its bind
 * mounts read, and the platform it executes for: the same RUN for amd64 and for arm64 makes
 * different files even on the same parent (a scratch stage, an image without an index). It runs in
 * the solver's queue of containers.
 */
export const runOp: Op<RunStep> = {
  admit: checkEntitlements,
  async cacheInputs(step, k) {
    const { proxyEnv: _proxy, ...rest } = definitionOf(step);
    const sources: Record<string, string> = {};
    const mounts = await Promise.all(
      step.mounts.map(async (m) => {
        // A cache mount's content is deliberately not part of the key, as in BuildKit.
        if (m.type !== 'bind' && !(m.type === 'cache' && m.from)) return m;
        const from = await k.sourceKey(m.from!, [m.source]);
        sources[`mount ${m.target} (${describeFrom(m.from!)})`] = from;
        return { ...m, from };
      }),
    );
    const { env, buildArgs, ...others } = rest;
    const platform = formatPlatform(k.platform);
    return { material: { ...rest, mounts, platform }, inputs: { env, buildArgs, definition: stableStringify({ ...others, mounts }), sources } };
  },
  async exec(step, x) {
    checkRunnable(step, x.platform, hostPlatform());
    await x.queueRun(() => runStep(step, x.op, x.parent, x.name));
  },
};

export async function runStep(step: RunStep, ctx: OpContext, parent: string | undefined, name: string): Promise<void> {
  checkEntitlements(step, ctx.allow);
  await withActive(ctx.snapshotter, ctx.layout.tmp, parent, name, async (rootfs, scope) => {
    const mounts: ExecMount[] = [];
    // Secret env= values and SSH_AUTH_SOCK: the step's environment only, never its key or history.
    const mountEnv: MountEnv = { vars: [], sensitive: false };
    for (const m of step.mounts) {
      const em = await prepareMount(m, step, ctx, scope, mountEnv);
      if (em) mounts.push(em);
    }
    const env = [...step.env, ...step.buildArgs, ...(step.proxyEnv ?? []), ...mountEnv.vars].map(([k, v]) => `${k}=${v}`);
    const result = await run({
      rootfs,
      stateDir: ctx.layout.executor,
      args: step.args,
      env: dedupeEnv(env),
      cwd: step.workdir,
      user: step.user || undefined,
      // BuildKit's sandbox hostname; some build scripts print or test it.
      hostname: 'buildkitsandbox',
      network: step.network === 'default' ? ctx.network : step.network,
      insecure: step.security === 'insecure',
      mounts,
      limits: ctx.limits,
      onStdout: (c) => ctx.log('stdout', c),
      onStderr: (c) => ctx.log('stderr', c),
      signal: ctx.signal,
      sensitive: mountEnv.sensitive,
    });
    if (ctx.signal?.aborted) throw new StepError(step.location, 'build cancelled');
    if (result.exitCode !== 0) {
      const tail = result.outputTail.trimEnd().split('\n').slice(-ERROR_TAIL_LINES).join('\n');
      const shown = step.shellForm ? JSON.stringify(step.args.join(' ')) : JSON.stringify(step.args);
      throw new StepError(step.location, `${step.original}: process ${shown} did not complete successfully: exit code: ${result.exitCode}`, {
        exitCode: result.exitCode,
        outputTail: tail || undefined,
      });
    }
  });
}

/** Later entries win, as in a process environment built from ENV then ARG. */
function dedupeEnv(env: string[]): string[] {
  const byName = new Map<string, string>();
  for (const e of env) byName.set(e.slice(0, e.indexOf('=')), e);
  return [...byName.values()];
}

/** What a step's mounts add to its environment, and whether it carries a secret. */
interface MountEnv {
  vars: [string, string][];
  sensitive: boolean;
}

async function prepareMount(m: RunMount, step: RunStep, ctx: OpContext, scope: Scope, mountEnv: MountEnv): Promise<ExecMount | undefined> {
  switch (m.type) {
    case 'tmpfs':
      return { type: 'tmpfs', target: m.target, size: m.size };
    case 'heredoc':
      return { type: 'file', target: m.target, content: m.content, mode: m.mode };
    case 'bind': {
      const root = await sourceRoot(m.from, ctx, scope);
      const source = await resolveInRoot(root, m.source);
      await fsp.lstat(source).catch(() => {
        throw new StepError(step.location, `RUN --mount=type=bind: source ${m.source} not found`);
      });
      if (!m.readwrite) return { type: 'bind', source, target: m.target, readonly: true };
      // A read-write bind gets a scratch copy: the step may write to it, nothing flows back.
      const scratch = await fsp.mkdtemp(path.join(ctx.layout.tmp, 'rwbind-'));
      scope.defer(() => fsp.rm(scratch, { recursive: true, force: true }));
      await cpArchive(source, path.join(scratch, 'data'));
      return { type: 'bind', source: path.join(scratch, 'data'), target: m.target, readonly: false };
    }
    case 'cache': {
      // Cache mounts persist under the root by id; they are never part of a layer or a cache key.
      const dir = cacheMountDir(ctx.layout, m.id);
      try {
        await fsp.mkdir(dir, { recursive: false, mode: m.mode });
        await fsp.chmod(dir, m.mode);
        await fsp.chown(dir, m.uid, m.gid);
        await ctx.seedCacheMount?.(m.id, dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          await fsp.mkdir(ctx.layout.cacheMounts, { recursive: true });
          return prepareMount(m, step, ctx, scope, mountEnv);
        }
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      // A cache mount's last use is its directory's time (GC evicts least recently used first).
      const now = new Date();
      await fsp.utimes(dir, now, now).catch(() => undefined);
      return { type: 'bind', source: dir, target: m.target, readonly: m.readonly };
    }
    case 'secret': {
      const value = ctx.secrets?.get(m.id);
      if (value === undefined) {
        if (m.required) throw new StepError(step.location, `secret ${m.id} not found: pass it with kiln build --secret id=${m.id}[,src=FILE|,env=VAR]`);
        return undefined; // as BuildKit: an optional secret that is not provided is simply absent
      }
      mountEnv.sensitive = true;
      if (m.env !== undefined) mountEnv.vars.push([m.env, Buffer.from(value).toString('utf8')]);
      if (m.target === '') return undefined;
      // Written into the run's bundle, which is then on a private tmpfs (RunOptions.sensitive).
      return { type: 'file', target: m.target, content: value, mode: m.mode, uid: m.uid, gid: m.gid };
    }
    case 'ssh': {
      const agent = ctx.sshAgents?.get(m.id);
      if (!agent) {
        if (m.required)
          throw new StepError(step.location, `ssh agent ${m.id} not found: pass it with kiln build --ssh ${m.id === 'default' ? 'default' : `${m.id}=SOCKET`}`);
        return undefined;
      }
      const proxy = await serveAgentProxy(ctx.layout.tmp, agent, { mode: m.mode, uid: m.uid, gid: m.gid, signal: ctx.signal });
      scope.defer(() => proxy.close());
      // As BuildKit: the first ssh mount is the step's SSH_AUTH_SOCK.
      if (!mountEnv.vars.some(([k]) => k === 'SSH_AUTH_SOCK')) mountEnv.vars.push(['SSH_AUTH_SOCK', m.target]);
      return { type: 'bind', source: proxy.socket, target: m.target, readonly: false };
    }
  }
}

async function sourceRoot(from: MountFrom, ctx: OpContext, scope: Scope): Promise<string> {
  if (from.kind === 'context') {
    const filtered = await ctx.filteredContext(from.name);
    if (filtered === undefined) return ctx.context(from.name).dir;
    return mountView(scope, ctx.snapshotter, ctx.layout.tmp, filtered);
  }
  return mountView(scope, ctx.snapshotter, ctx.layout.tmp, await ctx.sourceSnapshot(from));
}

function cpArchive(src: string, dest: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('cp', ['-a', '--no-dereference', src, dest], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`copying ${src} for a read-write bind mount failed: ${err.trim()}`))));
  });
}
