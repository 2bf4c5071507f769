// The one place that turns a path from a Dockerfile, a context or an image into a host path inside a
// rootfs. Every room that writes into a rootfs goes through here.
//
// A path is resolved as if `root` were "/": symlinks are followed by reading them and re-resolving
// their target inside root, ".." never climbs above root, and absolute link targets restart at root.
// The kernel is never asked to follow a link on our behalf (we only lstat/readlink), so a hostile image
// with `etc -> /etc` or `x -> ../../..` cannot lead a write onto the host.
//
// Caveat shared with BuildKit's and Docker's equivalents: this is a check-then-use resolution. It is
// safe while nothing else mutates the tree concurrently, which holds because kiln only touches a
// rootfs when no container of that build runs in it.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { lstatOrUndefined, lstatOrUndefinedSync } from './stat.js';

/** Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS is 40; be generous but bounded). */
const MAX_LINKS = 255;

export interface ResolveOptions {
  /** Follow the last component when it is a symlink (default true). */
  followFinal?: boolean;
}

export class RootPathError extends Error {
  constructor(
    message: string,
    readonly root: string,
    readonly unsafePath: string,
  ) {
    super(message);
    this.name = 'RootPathError';
  }
}

type Lstat = (p: string) => fs.Stats | undefined;
type Readlink = (p: string) => string;

// The walk is written once over an abstract lstat/readlink so the sync and async forms cannot drift.
function* walk(root: string, unsafePath: string, followFinal: boolean): Generator<
  { op: 'lstat'; p: string } | { op: 'readlink'; p: string },
  string,
  unknown
> {
  if (unsafePath.includes('\0')) throw new RootPathError(`path contains a NUL byte: ${JSON.stringify(unsafePath)}`, root, unsafePath);
  const resolved: string[] = [];
  // Components still to walk, first at the end (so we can push a link target's components).
  const pending = splitPath(unsafePath).reverse();
  let links = 0;
  while (pending.length > 0) {
    const comp = pending.pop()!;
    if (comp === '.' || comp === '') continue;
    if (comp === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, comp);
    const isFinal = pending.every((c) => c === '.' || c === '');
    const st = (yield { op: 'lstat', p: candidate }) as fs.Stats | undefined;
    if (st?.isSymbolicLink() && (!isFinal || followFinal)) {
      if (++links > MAX_LINKS) throw new RootPathError(`too many levels of symbolic links resolving ${unsafePath} in ${root}`, root, unsafePath);
      const target = (yield { op: 'readlink', p: candidate }) as string;
      if (target.startsWith('/')) resolved.length = 0;
      for (const c of splitPath(target).reverse()) pending.push(c);
      continue;
    }
    resolved.push(comp);
  }
  return path.join(root, ...resolved);
}

function splitPath(p: string): string[] {
  return p.split('/').filter((c) => c !== '');
}

function drive(gen: ReturnType<typeof walk>, lstat: Lstat, readlink: Readlink): string {
  let next = gen.next();
  while (!next.done) {
    const req = next.value;
    next = gen.next(req.op === 'lstat' ? lstat(req.p) : readlink(req.p));
  }
  return next.value;
}

async function driveAsync(gen: ReturnType<typeof walk>): Promise<string> {
  let next = gen.next();
  while (!next.done) {
    const req = next.value;
    next = gen.next(req.op === 'lstat' ? await lstatOrUndefined(req.p) : await fsp.readlink(req.p));
  }
  return next.value;
}

/**
 * Resolves `unsafePath` (absolute, or relative to "/") as if `root` were "/", following symlinks but
 * never leaving root. Components that do not exist are taken as written. Returns a host path under root.
 */
export async function resolveInRoot(root: string, unsafePath: string, opts: ResolveOptions = {}): Promise<string> {
  return driveAsync(walk(path.resolve(root), unsafePath, opts.followFinal ?? true));
}

export function resolveInRootSync(root: string, unsafePath: string, opts: ResolveOptions = {}): string {
  return drive(walk(path.resolve(root), unsafePath, opts.followFinal ?? true), lstatOrUndefinedSync, (p) => fs.readlinkSync(p));
}

/** True when `hostPath` is `root` itself or lies below it (lexically). */
export function isInside(root: string, hostPath: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(hostPath));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * `mkdir -p` inside root. Each component is resolved inside root before it is created, so a symlinked
 * parent cannot redirect the creation onto the host. Directories it creates get `mode` (default 0755)
 * and `owner`; existing ones are left alone. Returns the host path of the final directory.
 */
export async function mkdirAllInRoot(
  root: string,
  unsafePath: string,
  mode = 0o755,
  owner?: { uid: number; gid: number },
): Promise<string> {
  const absRoot = path.resolve(root);
  let current = '/';
  let hostPath = absRoot;
  for (const comp of splitPath(unsafePath)) {
    current = path.posix.join(current, comp);
    hostPath = await resolveInRoot(absRoot, current);
    const st = await lstatOrUndefined(hostPath);
    if (st === undefined) {
      await fsp.mkdir(hostPath, { mode });
      // mkdir's mode is filtered by the umask; set it exactly, as a build must be reproducible.
      await fsp.chmod(hostPath, mode);
      if (owner) await fsp.chown(hostPath, owner.uid, owner.gid);
    } else if (!st.isDirectory()) {
      throw new RootPathError(`cannot create directory ${unsafePath}: ${current} exists and is not a directory`, absRoot, unsafePath);
    }
    // Continue from the resolved location so later components are relative to where we really are.
    current = '/' + path.relative(absRoot, hostPath);
  }
  return hostPath;
}
