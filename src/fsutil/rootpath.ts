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

// The walk is written once, over a question asked of each path it meets ("is this a link, and to
// what?", relative to the root, "" being the root), so the file-system forms here and the views of
// other rooms (a .dockerignore-filtered context, an in-memory index of one) cannot drift apart.
function* walk(unsafePath: string, followFinal: boolean, where: string): Generator<string, string, string | undefined> {
  if (unsafePath.includes('\0')) throw new RootPathError(`path contains a NUL byte: ${JSON.stringify(unsafePath)}`, where, unsafePath);
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
    const candidate = [...resolved, comp].join('/');
    const isFinal = pending.every((c) => c === '.' || c === '');
    const target = !isFinal || followFinal ? yield candidate : undefined;
    if (target !== undefined) {
      if (++links > MAX_LINKS) throw new RootPathError(`too many levels of symbolic links resolving ${unsafePath} in ${where}`, where, unsafePath);
      if (target.startsWith('/')) resolved.length = 0;
      for (const c of splitPath(target).reverse()) pending.push(c);
      continue;
    }
    resolved.push(comp);
  }
  return resolved.join('/');
}

function splitPath(p: string): string[] {
  return p.split('/').filter((c) => c !== '');
}

/** Says whether `rel` (relative to the root) is a symlink: its target if so, else undefined. */
export type LinkLookup = (rel: string) => string | undefined;
export type AsyncLinkLookup = (rel: string) => Promise<string | undefined>;

/**
 * The resolution walk over any view of a tree: returns the resolved path relative to the root ("" for
 * the root). `where` names the tree in errors.
 */
export function resolveRelative(unsafePath: string, readLink: LinkLookup, opts: ResolveOptions & { where?: string } = {}): string {
  const gen = walk(unsafePath, opts.followFinal ?? true, opts.where ?? 'the root');
  let next = gen.next();
  while (!next.done) next = gen.next(readLink(next.value));
  return next.value;
}

export async function resolveRelativeAsync(unsafePath: string, readLink: AsyncLinkLookup, opts: ResolveOptions & { where?: string } = {}): Promise<string> {
  const gen = walk(unsafePath, opts.followFinal ?? true, opts.where ?? 'the root');
  let next = gen.next();
  while (!next.done) next = gen.next(await readLink(next.value));
  return next.value;
}

/**
 * Resolves `unsafePath` (absolute, or relative to "/") as if `root` were "/", following symlinks but
 * never leaving root. Components that do not exist are taken as written. Returns a host path under root.
 */
export async function resolveInRoot(root: string, unsafePath: string, opts: ResolveOptions = {}): Promise<string> {
  const abs = path.resolve(root);
  const rel = await resolveRelativeAsync(
    unsafePath,
    async (r) => ((await lstatOrUndefined(path.join(abs, r)))?.isSymbolicLink() ? fsp.readlink(path.join(abs, r)) : undefined),
    { ...opts, where: abs },
  );
  return path.join(abs, rel);
}

export function resolveInRootSync(root: string, unsafePath: string, opts: ResolveOptions = {}): string {
  const abs = path.resolve(root);
  const rel = resolveRelative(unsafePath, (r) => (lstatOrUndefinedSync(path.join(abs, r))?.isSymbolicLink() ? fs.readlinkSync(path.join(abs, r)) : undefined), {
    ...opts,
    where: abs,
  });
  return path.join(abs, rel);
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
export async function mkdirAllInRoot(root: string, unsafePath: string, mode = 0o755, owner?: { uid: number; gid: number }): Promise<string> {
  const absRoot = path.resolve(root);
  let current = '/';
  let hostPath = absRoot;
  for (const comp of splitPath(unsafePath)) {
    current = path.posix.join(current, comp);
    hostPath = await resolveInRoot(absRoot, current);
    const st = await lstatOrUndefined(hostPath);
    if (st === undefined) {
      // A dangling symlink (`x -> /missing/dir`) resolves to a path whose parents may not exist
      // either: like BuildKit's MkdirAll on fs.RootPath, make them too (inside root).
      const parent = path.dirname(hostPath);
      if (parent !== absRoot && (await lstatOrUndefined(parent)) === undefined) {
        await mkdirAllInRoot(absRoot, '/' + path.relative(absRoot, parent), mode, owner);
      }
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
