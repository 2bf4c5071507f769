// A read-only view of a COPY source root. Every lookup stays inside the root; for the build context
// only the entries the .dockerignore walk lets through exist, so an ignored file is as absent to
// COPY as it is in BuildKit (where it is never transferred).
//
// The lookups are synchronous: a copy asks thousands of them, each a single cheap system call, and
// a round trip through libuv's thread pool per call cost more than the call itself. The copier runs
// them in bounded slices between which it yields to the event loop (tree.ts).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { compareNames, walkContext } from '../context/walk.js';
import { resolveInRootSync, resolveRelative } from '../fsutil/rootpath.js';
import { lstatOrUndefinedSync } from '../fsutil/stat.js';
import type { CopySource } from './types.js';

export interface SourceView {
  /** Host directory of the root. */
  readonly root: string;
  /** True when copied entries keep their uid/gid (stage/image); false resets them to 0:0 (context). */
  readonly preserveOwner: boolean;
  /** lstat of a clean relative path ("" is the root); undefined when missing or invisible. */
  lstat(rel: string): fs.Stats | undefined;
  /** Visible names in a directory, byte-wise sorted. */
  readdir(rel: string): string[];
  /** Follows symlinks in every component (the last too) without leaving the root; returns a clean rel. */
  resolve(unsafe: string): string;
  /** True when the path exists on disk but the ignore rules hide it (for a helpful error). */
  hidden(rel: string): boolean;
  host(rel: string): string;
}

function toRel(root: string, hostPath: string): string {
  const rel = path.relative(root, hostPath);
  return rel === '' ? '' : rel.split(path.sep).join('/');
}

/** A stage or image rootfs: everything visible, paths resolved by the house resolver. */
class RootfsView implements SourceView {
  readonly preserveOwner = true;
  constructor(readonly root: string) {}
  host(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }
  lstat(rel: string): fs.Stats | undefined {
    return lstatOrUndefinedSync(this.host(rel));
  }
  readdir(rel: string): string[] {
    return fs.readdirSync(this.host(rel)).sort(compareNames);
  }
  resolve(unsafe: string): string {
    return toRel(this.root, resolveInRootSync(this.root, unsafe));
  }
  hidden(): boolean {
    return false;
  }
}

/**
 * The build context seen through the ignore filter. Path resolution cannot use resolveInRoot here:
 * that one sees the host directory, where an ignored symlink still exists and would be followed.
 * This walk is the same algorithm (lstat/readlink only, `..` clamped at the root, absolute targets
 * restart at the root) asking the filtered view at every step.
 */
class ContextView implements SourceView {
  readonly preserveOwner = false;
  private readonly visible: Set<string>;
  constructor(
    readonly root: string,
    paths: Iterable<string>,
  ) {
    this.visible = new Set(paths);
  }
  host(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }
  lstat(rel: string): fs.Stats | undefined {
    if (rel !== '' && !this.visible.has(rel)) return undefined;
    return lstatOrUndefinedSync(this.host(rel));
  }
  readdir(rel: string): string[] {
    const names = fs.readdirSync(this.host(rel));
    return names.filter((n) => this.visible.has(rel === '' ? n : `${rel}/${n}`)).sort(compareNames);
  }
  resolve(unsafe: string): string {
    return resolveRelative(unsafe, (rel) => (this.lstat(rel)?.isSymbolicLink() ? fs.readlinkSync(this.host(rel)) : undefined), {
      where: 'the build context',
    });
  }
  hidden(rel: string): boolean {
    return rel !== '' && !this.visible.has(rel) && lstatOrUndefinedSync(this.host(rel)) !== undefined;
  }
}

export async function openSource(src: CopySource): Promise<SourceView> {
  const root = path.resolve(src.dir);
  if (src.kind === 'rootfs') return new RootfsView(root);
  const entries = src.entries ?? (await walkContext(root, src.dockerfile ? { dockerfile: src.dockerfile } : {}));
  return new ContextView(
    root,
    entries.map((e) => e.path),
  );
}
