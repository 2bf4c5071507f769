// ADD of a git repository, as BuildKit's git source does it: the ref is resolved to a commit with
// `git ls-remote` first (that commit is the cache key, so an unchanged ref is a cache hit without any
// fetch, and a moved branch is a miss), then the commit is fetched shallowly into a bare repository
// in a temporary directory of kiln's root, checked out into a work tree beside it (submodules too),
// and the caller copies that tree into the layer with the rootfs-safe copier.
//
// git is run as a child process and treated as handling hostile input (the remote, .gitmodules):
//  - a clean environment: no system or global config, no terminal prompts, HOME an empty directory,
//    ssh without the host user's config or keys (only the build's forwarded agent);
//  - a protocol allow-list of http, https, git and ssh: a submodule URL "file:///..." or "ext::cmd"
//    is refused by git itself. The local fetch that keeps a .git directory (from our own bare
//    repository) is the one command that may use file://;
//  - hooks off (core.hooksPath=/dev/null), no fsmonitor, a timeout, and the build's cancel signal;
//  - files are written only below the temporary directory; the subdirectory must be a real directory
//    (no symlink on the way), and the copy into the layer never follows a link.
// Messages never show a URL's credentials.

import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { cleanSubdir, invalidGitRef, isCommitSha, type GitRef } from '../frontend/git-ref.js';
import { redactCredentials } from '../frontend/urls.js';

export class GitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GitError';
  }
}

/** A git ref resolved on the remote. */
export interface ResolvedGit {
  /** The commit the checkout will have (an annotated tag's commit, not the tag object). */
  commit: string;
  /** The full ref it was found under ("refs/heads/main", "refs/tags/v1"), or the commit itself. */
  ref: string;
  /** An annotated tag's own object sha, when the ref is one. */
  tagObject?: string;
}

export interface GitRunOptions {
  /** A unix socket of an SSH agent for ssh remotes (the build's `--ssh default`). */
  sshAuthSock?: string;
  /**
   * An Authorization header for http(s) URLs starting with `scope` (BuildKit's GIT_AUTH_TOKEN /
   * GIT_AUTH_HEADER secrets). Given to git through its environment, never on a command line.
   */
  httpAuth?: { scope: string; header: string };
  signal?: AbortSignal;
  /** Per git command; default 10 minutes. */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;
const REMOTE_PROTOCOLS = 'http:https:git:ssh';

/** `-c` settings on every git command: nothing of the repository may run code on this host. */
const SAFE_CONFIG = [
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
  'core.symlinks=true',
  'core.autocrlf=false',
  'credential.helper=',
  'init.defaultBranch=master',
  'advice.detachedHead=false',
  'gc.auto=0',
  'maintenance.auto=false',
  'submodule.recurse=false',
].flatMap((c) => ['-c', c]);

/** ssh for git: no user config, no host keys of kiln's own user, no prompts (BuildKit's choice on unknown hosts). */
const SSH_COMMAND = 'ssh -F /dev/null -o IdentityFile=/dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR';

interface Run {
  cwd?: string;
  /** Allow file:// (only for our own local repository). */
  allowFile?: boolean;
  home: string;
}

function gitEnv(opts: GitRunOptions, run: Run): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: run.home,
    LANG: 'C',
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_NO_REPLACE_OBJECTS: '1',
    GIT_ALLOW_PROTOCOL: run.allowFile ? `${REMOTE_PROTOCOLS}:file` : REMOTE_PROTOCOLS,
    GIT_SSH_COMMAND: SSH_COMMAND,
  };
  // A proxy the host is configured with applies to git as it does to ADD <url>.
  for (const k of ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'all_proxy', 'ALL_PROXY']) {
    if (process.env[k] !== undefined) env[k] = process.env[k];
  }
  if (opts.sshAuthSock !== undefined) env.SSH_AUTH_SOCK = opts.sshAuthSock;
  if (opts.httpAuth !== undefined) {
    env.GIT_CONFIG_COUNT = '1';
    env.GIT_CONFIG_KEY_0 = `http.${opts.httpAuth.scope}.extraheader`;
    env.GIT_CONFIG_VALUE_0 = `Authorization: ${opts.httpAuth.header}`;
  }
  return env;
}

const MAX_OUTPUT = 1 << 20;

/** Runs git with the safe settings; resolves to its stdout, rejects with its redacted stderr. */
async function git(args: string[], opts: GitRunOptions, run: Run): Promise<string> {
  opts.signal?.throwIfAborted();
  // git runs with umask 022 (as BuildKit's runWithStandardUmask), whatever kiln's own is, so file
  // modes in the checkout are 0644/0755 as in the repository.
  const child = spawn('/bin/sh', ['-c', 'umask 022 && exec git "$@"', 'git', ...SAFE_CONFIG, ...args], {
    cwd: run.cwd ?? run.home,
    env: gitEnv(opts, run),
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so a timeout or cancel also ends the helpers git starts (remote-http, ssh).
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    if (stdout.length < MAX_OUTPUT) stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-MAX_OUTPUT);
  });
  let why: string | undefined;
  const kill = (reason: string) => {
    why ??= reason;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  };
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const timer = setTimeout(() => kill(`timed out after ${Math.round(timeoutMs / 1000)}s`), timeoutMs);
  const onAbort = () => kill('cancelled');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    });
    if (why !== undefined) throw new GitError(`git ${args[0]} ${why}`);
    if (code === 127 && /exec: git: not found/.test(stderr)) throw new GitError('git is not installed on this host (ADD of a git repository runs it)');
    if (code !== 0) {
      const msg = stderr
        .trim()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .slice(-6)
        .join('\n');
      throw new GitError(redactCredentials(msg || `git ${args[0]} exited with code ${code}`));
    }
    return stdout;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** A scratch HOME for git commands that need no repository. */
async function withHome<T>(tmpDir: string, fn: (home: string) => Promise<T>): Promise<T> {
  await fsp.mkdir(tmpDir, { recursive: true });
  const home = await fsp.mkdtemp(path.join(tmpDir, 'git-home-'));
  try {
    return await fn(home);
  } finally {
    await fsp.rm(home, { recursive: true, force: true });
  }
}

/**
 * Resolves the ref to a commit on the remote with `git ls-remote` (no fetch), choosing among the
 * refs it lists as BuildKit does: an exact "refs/..." name, then a branch, then a tag (an annotated
 * tag's commit). The checksum (hex, a prefix of the commit or tag object sha; --checksum and/or
 * ?checksum=) is verified here.
 */
export async function resolveGit(src: GitRef, flagChecksum: string | undefined, tmpDir: string, opts: GitRunOptions = {}): Promise<ResolvedGit> {
  if (src.invalid !== undefined) throw new GitError(src.invalid);
  const checksum = gitChecksum(flagChecksum, src);
  const r = await resolveRef(src, tmpDir, opts);
  verifyGitChecksum(r, checksum);
  return r;
}

/**
 * The checksum a git source must match: ADD --checksum and a ?checksum= in the URL, which must
 * agree (one may be a prefix of the other; the longer says more). Hex only.
 */
export function gitChecksum(flagChecksum: string | undefined, src: GitRef): string | undefined {
  if (flagChecksum !== undefined && src.checksum !== undefined) {
    const [a, b] = [flagChecksum.toLowerCase(), src.checksum.toLowerCase()];
    if (!a.startsWith(b) && !b.startsWith(a)) throw new GitError(`checksum conflicts: --checksum=${flagChecksum} and ${src.checksum} in the URL`);
  }
  const checksum = [flagChecksum, src.checksum].filter((c): c is string => c !== undefined).sort((a, b) => b.length - a.length)[0];
  if (checksum !== undefined && !/^[0-9a-fA-F]+$/.test(checksum)) throw new GitError(`invalid checksum ${checksum} for Git URL, expected hex commit hash`);
  return checksum;
}

/** BuildKit's check: the checksum is a prefix of the commit sha, or of an annotated tag's object sha. */
export function verifyGitChecksum(r: ResolvedGit, checksum: string | undefined): void {
  const want = checksum?.toLowerCase();
  if (want === undefined || r.commit.startsWith(want) || (r.tagObject ?? '').startsWith(want)) return;
  const got = r.tagObject !== undefined ? `${r.tagObject} or ${r.commit}` : r.commit;
  throw new GitError(`expected checksum to match ${checksum}, got ${got}`);
}

/** The ref on the remote, without any checksum check. */
export async function resolveRef(src: GitRef, tmpDir: string, opts: GitRunOptions = {}): Promise<ResolvedGit> {
  const shown = redactCredentials(src.remote);
  if (src.invalid !== undefined) throw new GitError(src.invalid);
  const badRef = invalidGitRef(src.ref);
  if (badRef !== undefined) throw new GitError(`invalid git ref ${JSON.stringify(src.ref)}: ${badRef}`);
  if (isCommitSha(src.ref)) return { commit: src.ref, ref: src.ref };
  return withHome(tmpDir, async (home) => {
    let ref = src.ref;
    if (ref === '') {
      let out: string;
      try {
        out = await git(['ls-remote', '--symref', src.remote, 'HEAD'], opts, { home });
      } catch (err) {
        throw new GitError(`error fetching default branch for repository ${shown}: ${(err as Error).message}`);
      }
      const m = /^ref: refs\/heads\/(\S+)\tHEAD$/m.exec(out);
      if (!m) throw new GitError(`could not find default branch for repository: ${shown}`);
      ref = m[1]!;
    }
    let out: string;
    try {
      out = await git(['ls-remote', src.remote, ref, `${ref}^{}`], opts, { home });
    } catch (err) {
      throw new GitError(`failed to fetch remote ${shown}: ${(err as Error).message}`);
    }
    const short = (p: string) => (ref.startsWith(p) ? ref.slice(p.length) : ref);
    const exact = 'refs/' + short('refs/');
    const head = 'refs/heads/' + short('refs/heads/');
    const tag = 'refs/tags/' + short('refs/tags/');
    let exactSha: string | undefined, headSha: string | undefined, tagSha: string | undefined, peeled: string | undefined;
    for (const line of out.split('\n')) {
      const [sha, name] = line.split('\t');
      if (sha === undefined || name === undefined) continue;
      if (name === head) headSha = sha;
      else if (name === tag) tagSha = sha;
      else if (name === `${tag}^{}`) peeled = sha;
      else if (name === exact) exactSha = sha;
    }
    let resolved: ResolvedGit | undefined;
    // git checkout prefers a branch when a name is ambiguous.
    if (exactSha !== undefined) resolved = { commit: exactSha, ref: exact };
    else if (headSha !== undefined) resolved = { commit: headSha, ref: head };
    else if (tagSha !== undefined) resolved = peeled !== undefined ? { commit: peeled, ref: tag, tagObject: tagSha } : { commit: tagSha, ref: tag };
    if (resolved === undefined) throw new GitError(`repository ${shown} does not contain ref ${ref}`);
    if (!isCommitSha(resolved.commit)) throw new GitError(`invalid commit sha ${JSON.stringify(resolved.commit)}`);
    return resolved;
  });
}

export interface Checkout {
  /** Host directory whose contents are what the ADD copies (the subdirectory, if one was named). */
  dir: string;
  cleanup(): Promise<void>;
}

/**
 * Fetches `resolved` and checks it out (submodules included) in a new directory under `tmpDir`.
 * With `keepGitDir` (and no subdirectory) the tree keeps a .git directory whose origin is the
 * remote with credentials redacted; otherwise there is no .git anywhere in it.
 */
export async function checkoutGit(src: GitRef, resolved: ResolvedGit, keepGitDir: boolean, tmpDir: string, opts: GitRunOptions = {}): Promise<Checkout> {
  const shown = redactCredentials(src.remote);
  const subdir = cleanSubdir(src.subdir);
  await fsp.mkdir(tmpDir, { recursive: true });
  const work = await fsp.mkdtemp(path.join(tmpDir, 'git-'));
  const cleanup = () => fsp.rm(work, { recursive: true, force: true });
  try {
    const home = path.join(work, 'home');
    const bare = path.join(work, 'repo.git');
    const tree = path.join(work, 'tree');
    await fsp.mkdir(home, { mode: 0o700 });
    await fsp.mkdir(tree, { mode: 0o755 });
    const inBare = (args: string[], extra: Partial<Run> = {}) => git([`--git-dir=${bare}`, ...args], opts, { home, ...extra });

    await git(['init', '-q', '--bare', bare], opts, { home });
    // origin is the remote, so relative submodule URLs ("../lib.git") resolve against it.
    await inBare(['remote', 'add', 'origin', src.remote]);
    await fetchCommit(inBare, resolved, shown);

    const keep = keepGitDir && subdir === '';
    if (keep) {
      const inTree = (args: string[], extra: Partial<Run> = {}) => git(['-C', tree, ...args], opts, { home, cwd: tree, ...extra });
      await inTree(['init', '-q']);
      // Our own bare repository is the one thing fetched over file:// (never a local-clone shortcut).
      await inTree(['remote', 'add', 'origin', `file://${bare}`]);
      let pull: string;
      if (resolved.ref === resolved.commit) {
        pull = 'refs/kiln/commit';
        await inBare(['update-ref', pull, resolved.commit]);
      } else {
        pull = `${resolved.ref}:${resolved.ref}`;
      }
      await inTree(['fetch', '-q', '-u', '--depth=1', 'origin', pull], { allowFile: true });
      await inTree(['checkout', '-q', 'FETCH_HEAD']);
      await inTree(['remote', 'set-url', 'origin', shown]);
      await inTree(['reflog', 'expire', '--all', '--expire=now']);
      await fsp.rm(path.join(tree, '.git', 'FETCH_HEAD'), { force: true });
      await submodules((args) => inTree(args), shown);
    } else {
      const inWork = (args: string[]) => git([`--git-dir=${bare}`, `--work-tree=${tree}`, ...args], opts, { home, cwd: tree });
      try {
        await inWork(['checkout', '-q', '-f', resolved.commit, '--', '.']);
      } catch (err) {
        throw new GitError(`failed to checkout remote ${shown}: ${(err as Error).message}`);
      }
      await submodules(inWork, shown);
      // A submodule's work tree has a ".git" file pointing into the bare repository, a host path of
      // a directory that is about to go: nothing of git belongs in the layer without --keep-git-dir.
      if (await fsp.lstat(path.join(tree, '.gitmodules')).catch(() => undefined)) await removeGitLinks(tree);
    }

    let dir = tree;
    if (subdir !== '') {
      for (const c of subdir.split('/')) {
        dir = path.join(dir, c);
        const st = await fsp.lstat(dir).catch(() => undefined);
        if (st === undefined) throw new GitError(`subdirectory ${subdir} not found in ${shown}`);
        if (!st.isDirectory()) throw new GitError(`subdirectory ${subdir} of ${shown} is not a directory${st.isSymbolicLink() ? ' (it is a symlink)' : ''}`);
      }
    }
    return { dir, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

async function fetchCommit(inBare: (args: string[]) => Promise<string>, resolved: ResolvedGit, shown: string): Promise<void> {
  const fetch = async (args: string[]) => {
    try {
      await inBare(['fetch', '-q', ...args]);
    } catch (err) {
      throw new GitError(`failed to fetch remote ${shown}: ${(err as Error).message}`);
    }
  };
  const have = async (sha: string) => {
    try {
      await inBare(['cat-file', '-e', `${sha}^{commit}`]);
      return true;
    } catch {
      return false;
    }
  };
  if (resolved.ref === resolved.commit) {
    // By sha: servers with protocol v2 (and allowReachableSHA1InWant) give it directly; otherwise
    // fetch every branch and tag and look for it.
    try {
      await fetch(['--depth=1', 'origin', resolved.commit]);
    } catch {
      await fetch(['origin', '+refs/heads/*:refs/remotes/origin/*', '+refs/tags/*:refs/tags/*']);
    }
    if (!(await have(resolved.commit))) throw new GitError(`commit ${resolved.commit} not found in ${shown}`);
    return;
  }
  await fetch(['--depth=1', '--no-tags', 'origin', `+${resolved.ref}:${resolved.ref}`]);
  const got = (await inBare(['rev-parse', `${resolved.ref}^{commit}`])).trim();
  if (got === resolved.commit) return;
  // The ref moved between resolving and fetching: the cache key names the earlier commit, so that
  // is the one to check out, if the remote still has it.
  try {
    await fetch(['--depth=1', 'origin', resolved.commit]);
  } catch {
    // handled below
  }
  if (!(await have(resolved.commit))) {
    throw new GitError(
      `fetched ref ${resolved.ref} (${got}) does not match expected commit ${resolved.commit} and that commit cannot be fetched from ${shown}`,
    );
  }
  await inBare(['update-ref', '--no-deref', resolved.ref, resolved.commit]);
}

async function submodules(run: (args: string[]) => Promise<string>, shown: string): Promise<void> {
  try {
    await run(['submodule', 'update', '-q', '--init', '--recursive', '--depth=1']);
  } catch (err) {
    throw new GitError(`failed to update submodules for ${shown}: ${(err as Error).message}`);
  }
}

/** Removes ".git" files (submodule links) below `dir`, without following symlinks. */
async function removeGitLinks(dir: string): Promise<void> {
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.name === '.git' && !e.isDirectory()) await fsp.rm(p, { force: true });
    else if (e.isDirectory()) await removeGitLinks(p);
  }
}
