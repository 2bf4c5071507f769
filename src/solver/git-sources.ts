// ADD of git repositories in the solver: each git URL of a step is resolved to a commit before the
// step's key is made (git ls-remote, no fetch), and the key names that commit rather than the ref
// as written, as BuildKit's git source keys by commit: the same commit through another ref, or with
// --checksum, is the same step; a branch that moved is a miss. ssh remotes use the build's
// `--ssh default` agent through a private proxy socket, as RUN --mount=type=ssh does.

import { cleanSubdir, parseGitRef, type GitRef } from '../frontend/git-ref.js';
import { redactCredentials } from '../frontend/urls.js';
import { gitChecksum, resolveRef, verifyGitChecksum, type GitSourceOptions, type ResolvedGit } from '../fileop/index.js';
import type { CopyStep } from '../frontend/types.js';
import { serveAgentProxy, type SshAgents } from './ssh-agent.js';

export interface GitContext {
  tmpDir: string;
  sshAgents?: SshAgents;
  /** The build's secrets: GIT_AUTH_TOKEN[.HOST] and GIT_AUTH_HEADER[.HOST] authenticate http(s) remotes. */
  secrets?: ReadonlyMap<string, Uint8Array>;
  signal?: AbortSignal;
  /**
   * Refs resolved so far in this build, by remote and ref (BuildKit's resolver cache): every step
   * of one build that names the same ref gets the same commit, even if the branch moves meanwhile.
   */
  refCache?: Map<string, Promise<ResolvedGit>>;
}

/**
 * BuildKit's git credentials from build secrets, for one http(s) remote: GIT_AUTH_HEADER.<host>,
 * GIT_AUTH_TOKEN.<host>, GIT_AUTH_HEADER, GIT_AUTH_TOKEN, the first that exists. A token becomes
 * Basic "x-access-token:TOKEN"; the header applies to URLs under the remote (all of github.com
 * for a github.com remote, as actions/checkout does).
 */
export function gitHttpAuth(ref: GitRef, secrets: ReadonlyMap<string, Uint8Array> | undefined): { scope: string; header: string } | undefined {
  if (!secrets || (ref.scheme !== 'https' && ref.scheme !== 'http')) return undefined;
  let host: string;
  try {
    host = new URL(ref.remote).host;
  } catch {
    return undefined;
  }
  const names: [string, boolean][] = [
    [`GIT_AUTH_HEADER.${host}`, false],
    [`GIT_AUTH_TOKEN.${host}`, true],
    ['GIT_AUTH_HEADER', false],
    ['GIT_AUTH_TOKEN', true],
  ];
  for (const [name, token] of names) {
    const v = secrets.get(name);
    if (v === undefined) continue;
    const text = Buffer.from(v).toString('utf8').trim();
    const header = token ? `basic ${Buffer.from(`x-access-token:${text}`).toString('base64')}` : text;
    const scope = ['https://github.com/', 'https://www.github.com/'].find((p) => ref.remote.startsWith(p)) ?? ref.remote;
    return { scope, header };
  }
  return undefined;
}

/** The step's git sources by URL as written (none: not an ADD of a repository). */
export function gitSources(step: CopyStep): Map<string, GitRef> {
  const out = new Map<string, GitRef>();
  for (const u of step.urls) {
    const g = parseGitRef(u);
    if (g) out.set(u, g);
  }
  return out;
}

/**
 * Runs `fn` with git options for these sources: an SSH agent socket when one is an ssh remote and
 * the build forwarded a default agent. Errors of ssh remotes without an agent say so.
 */
export async function withGitOptions<T>(
  ctx: GitContext,
  refs: Iterable<GitRef>,
  resolved: ReadonlyMap<string, ResolvedGit> | undefined,
  fn: (opts: GitSourceOptions) => Promise<T>,
): Promise<T> {
  const list = [...refs];
  // One step has one git source in practice (ADD --checksum needs exactly one); the first http(s)
  // remote with credentials in the secrets gets them.
  const httpAuth = list.map((r) => gitHttpAuth(r, ctx.secrets)).find((a) => a !== undefined);
  const base: GitSourceOptions = {
    tmpDir: ctx.tmpDir,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(resolved ? { resolved } : {}),
    ...(httpAuth ? { httpAuth } : {}),
  };
  const ssh = list.some((r) => r.scheme === 'ssh');
  if (!ssh) return fn(base);
  const agent = ctx.sshAgents?.get('default');
  if (!agent) {
    try {
      return await fn(base);
    } catch (err) {
      (err as Error).message += ' (no SSH agent was forwarded for this ssh remote: build with --ssh default)';
      throw err;
    }
  }
  const proxy = await serveAgentProxy(ctx.tmpDir, agent, { mode: 0o600, uid: 0, gid: 0, ...(ctx.signal ? { signal: ctx.signal } : {}) });
  try {
    return await fn({ ...base, sshAuthSock: proxy.socket });
  } finally {
    await proxy.close();
  }
}

/** Resolves every git source of the step to its commit (verifying --checksum). */
export async function resolveGitSources(step: CopyStep, ctx: GitContext): Promise<Map<string, ResolvedGit>> {
  const refs = gitSources(step);
  const out = new Map<string, ResolvedGit>();
  if (refs.size === 0) return out;
  await withGitOptions(ctx, refs.values(), undefined, async (opts) => {
    for (const [url, ref] of refs) {
      // Resolved once per build; the checksum is each step's own.
      const key = `${ref.remote}#${ref.ref}`;
      let p = ctx.refCache?.get(key);
      if (!p) {
        p = resolveRef(ref, ctx.tmpDir, opts);
        ctx.refCache?.set(key, p);
        // A failure is not remembered: a later step may give credentials that work.
        p.catch(() => ctx.refCache?.delete(key));
      }
      const r = await p;
      verifyGitChecksum(r, gitChecksum(step.checksum, ref));
      out.set(url, r);
    }
  });
  return out;
}

/**
 * The step's definition for its cache key with each git URL replaced by what its checkout holds:
 * the commit and subdirectory, and with --keep-git-dir the ref, tag and (redacted) remote that the
 * .git directory records. A --checksum for git only checks the commit, so it is left out.
 */
export function gitKeyDefinition<T extends { urls: string[]; checksum?: string; keepGitDir: boolean }>(
  def: T,
  refs: ReadonlyMap<string, GitRef>,
  resolved: ReadonlyMap<string, ResolvedGit>,
): T {
  if (refs.size === 0) return def;
  const urls = def.urls.map((u) => {
    const g = refs.get(u);
    const r = resolved.get(u);
    if (!g || !r) return u;
    const subdir = cleanSubdir(g.subdir);
    const keep = def.keepGitDir && subdir === '';
    return JSON.stringify({ git: r.commit, subdir, ...(keep ? { ref: r.ref, tag: r.tagObject, remote: redactCredentials(g.remote) } : {}) });
  });
  const { checksum: _checksum, ...rest } = def;
  return { ...rest, urls } as T;
}
