// Copies one source entry (recursively for directories) to a target path, with `cp -a` semantics as
// BuildKit's copier has them:
//  - symlinks inside the copy stay symlinks (only the top-level source was followed, by the caller);
//  - files sharing an inode in the source share one in the target (hard links kept within one copy);
//  - mode (setuid/setgid/sticky included), times and xattrs come from the source; the owner from
//    --chown, else the source (stage/image) or 0:0 (context);
//  - --chmod replaces the mode of every copied file and directory;
//  - an existing directory is merged into; metadata of the top-level target directory is left as it
//    was (BuildKit copies directory *contents* into it); an existing non-directory where a directory
//    goes, or a directory where a file goes, is an error.
// Targets are built from a resolved directory plus names read from the source, and nothing at a
// target is followed: a symlink found there is replaced (file) or refused (directory).
//
// The copy runs on the calling thread with synchronous system calls, in slices of a few
// milliseconds between which it yields to the event loop (so progress, and in the daemon other
// builds, keep moving). A COPY of a large context is thousands of small files, and per file it is a
// dozen calls of a microsecond or two each: through libuv's thread pool every one of them cost a
// round trip that dwarfed the call. Targets are created first and cleared only when they exist
// (O_EXCL/EEXIST), so an empty destination costs no lstat per entry. A directory's own metadata is
// applied after all its children, so their creation cannot change its times.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MatchInfo, PatternMatcher } from '../context/patterns.js';
import { lstatOrUndefinedSync } from '../fsutil/stat.js';
import { applyMetaSync, clearForFileSync, copyXattrsSync, devNumbers, makeNode } from './meta.js';
import type { ChmodFn, Owner } from './owner.js';
import type { SourceView } from './source.js';
import type { CopySummary } from './types.js';
import { runSliced, SliceClock } from '../util/slices.js';

export interface TreeOptions {
  chown?: Owner;
  chmod?: ChmodFn;
  exclude?: PatternMatcher;
  /** How to show a host target in errors (rootfs-absolute). */
  show: (host: string) => string;
  /** See CopyOp.reuse. */
  reuse?: (srcRel: string, target: string) => 'file' | 'other' | undefined;
}

/** How long the copier works on the calling thread before it lets the event loop run. */
const SLICE_MS = 8;

/**
 * What the copy's generator hands its driver: undefined when a slice is over (the driver lets the
 * event loop run), or a promise to wait for (the rare step that has no synchronous form).
 */
type Pause = Promise<unknown> | undefined;

/** Copy with O_EXCL (never onto or through something already there), cloning extents where the file system can. */
const COPY_FLAGS = fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE;

function isExists(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EEXIST';
}

export class TreeCopier {
  /** Source inode -> the target its first copy went to (hard links). */
  private readonly inodes = new Map<string, string>();
  private readonly clock = new SliceClock(SLICE_MS);

  constructor(
    private readonly view: SourceView,
    private readonly opts: TreeOptions,
    private readonly summary: CopySummary,
  ) {}

  private ownerOf(st: fs.Stats): Owner {
    if (this.opts.chown) return this.opts.chown;
    return this.view.preserveOwner ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 };
  }

  private meta(srcRel: string, st: fs.Stats, target: string): void {
    const owner = this.ownerOf(st);
    const isLink = st.isSymbolicLink();
    const mode = this.opts.chmod !== undefined && !isLink ? this.opts.chmod(st.mode & 0o7777, st.isDirectory()) : st.mode & 0o7777;
    applyMetaSync(target, isLink, { ...owner, mode, atime: st.atime, mtime: st.mtime });
    // After the owner: chown drops security.capability, so xattrs set before it would lose a
    // binary's file capabilities (fsutil's copier also sets them after copyFileInfo). Setting an
    // xattr changes only the ctime, not the times just applied.
    if (!isLink) copyXattrsSync(this.view.host(srcRel), target);
  }

  /**
   * Is `excludeRel` (the entry's path relative to what the user named) excluded by --exclude?
   * Returns the match info for children, or 'skip'.
   */
  private excluded(excludeRel: string, isDir: boolean, parent: MatchInfo | undefined): MatchInfo | undefined | 'skip' {
    const m = this.opts.exclude;
    if (!m || excludeRel === '') return parent;
    const r = m.match(excludeRel, parent);
    if (r.matched && !(isDir && m.mayIncludeBelow(excludeRel))) return 'skip';
    return r.info;
  }

  /**
   * Copies the entry at `srcRel` (not followed) to `target`. `top` marks the user-named source: a
   * directory's own metadata is then not applied to an existing target. `excludeRel` is the path
   * --exclude patterns are matched against ("" = never excluded).
   */
  async copy(srcRel: string, target: string, top: boolean, excludeRel = '', parentInfo?: MatchInfo): Promise<void> {
    await runSliced(this.entry(srcRel, target, top, excludeRel, parentInfo), this.clock);
  }

  /** True when this slice has run long enough: the caller yields (undefined) to let the event loop in. */
  private due(): boolean {
    return this.clock.due();
  }

  /** One entry and, for a directory, everything below it, in name order (the first failure stops the copy). */
  private *entry(srcRel: string, target: string, top: boolean, excludeRel: string, parentInfo: MatchInfo | undefined): Generator<Pause, void, unknown> {
    if (this.due()) yield undefined;
    // An incremental copy's reused entry: its earlier copy (a hard link into the previous result,
    // put there by the clone, which nothing writes through) is in place. The plan vouches for both
    // sides, so neither needs a stat: the source is the same non-directory as then (its per-path
    // digest, type included, is unchanged) and the clone kept that copy at this target.
    if (this.opts.reuse) {
      const shown = this.opts.show(target);
      const reused = this.opts.reuse(srcRel, shown);
      if (reused !== undefined) {
        if (this.excluded(excludeRel, false, parentInfo) === 'skip') return;
        this.summary.reused++;
        this.summary.written.push({ src: srcRel, target: shown, type: reused });
        return;
      }
    }
    const st = this.view.lstat(srcRel);
    if (st === undefined) throw new Error(`source ${srcRel || '/'} disappeared during the copy`);
    const info = this.excluded(excludeRel, st.isDirectory(), parentInfo);
    if (info === 'skip') return;

    if (st.isDirectory()) {
      let created = true;
      try {
        fs.mkdirSync(target, { mode: 0o700 });
        this.summary.directories++;
      } catch (err) {
        if (!isExists(err)) throw err;
        // Merge into a directory already there; anything else there (a link included) is refused.
        if (!lstatOrUndefinedSync(target)?.isDirectory()) throw new Error(`cannot copy to non-directory: ${this.opts.show(target)}`);
        created = false;
      }
      for (const name of this.view.readdir(srcRel)) {
        const childRel = srcRel === '' ? name : `${srcRel}/${name}`;
        const childExclude = excludeRel === '' ? name : `${excludeRel}/${name}`;
        yield* this.entry(childRel, path.join(target, name), false, this.opts.exclude ? childExclude : '', info);
      }
      if (created || !top) this.meta(srcRel, st, target);
      this.summary.written.push({ src: srcRel, target: this.opts.show(target), type: 'dir' });
      return;
    }

    // A file that shares its inode with one copied before becomes a link to that copy.
    const key = st.isFile() && st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
    const linkTo = key !== undefined ? this.inodes.get(key) : undefined;
    yield* this.nonDir(srcRel, st, target, linkTo);
    if (key !== undefined && linkTo === undefined) this.inodes.set(key, target);
    this.summary.written.push({ src: srcRel, target: this.opts.show(target), type: st.isFile() ? 'file' : 'other' });
  }

  /** `create` at `target`; when something is there already, that is cleared (never a directory) and `create` runs again. */
  private createOrReplace(target: string, create: () => void): void {
    try {
      create();
    } catch (err) {
      if (!isExists(err)) throw err;
      clearForFileSync(target, this.opts.show(target));
      create();
    }
  }

  /** One non-directory entry: created at `target` (as a hard link to `linkTo` when given), then its metadata. */
  private *nonDir(srcRel: string, st: fs.Stats, target: string, linkTo: string | undefined): Generator<Pause, void, unknown> {
    if (st.isFile()) {
      if (linkTo !== undefined) {
        this.createOrReplace(target, () => fs.linkSync(linkTo, target));
        this.summary.hardlinks++;
      } else {
        const src = this.view.host(srcRel);
        this.createOrReplace(target, () => fs.copyFileSync(src, target, COPY_FLAGS));
        this.summary.files++;
        this.summary.bytes += st.size;
      }
    } else if (st.isSymbolicLink()) {
      const linkTarget = fs.readlinkSync(this.view.host(srcRel));
      this.createOrReplace(target, () => fs.symlinkSync(linkTarget, target));
      this.summary.symlinks++;
    } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
      clearForFileSync(target, this.opts.show(target));
      if (st.isFIFO()) {
        yield makeNode(target, 'fifo');
      } else {
        const { major, minor } = devNumbers(st.rdev);
        yield makeNode(target, st.isCharacterDevice() ? 'char' : 'block', major, minor);
      }
    } else {
      // Sockets cannot be copied (BuildKit refuses them too).
      throw new Error(`cannot copy ${srcRel}: unsupported file type (socket)`);
    }
    this.meta(srcRel, st, target);
  }

  /**
   * Creates `target` as a directory carrying the metadata of the source directory `srcRel` (for
   * --parents), unless it exists already as a directory.
   */
  ensureDirLike(srcRel: string, target: string): void {
    const existing = lstatOrUndefinedSync(target);
    if (existing?.isDirectory()) return;
    if (existing !== undefined) throw new Error(`cannot copy to non-directory: ${this.opts.show(target)}`);
    const st = this.view.lstat(srcRel);
    if (!st?.isDirectory()) throw new Error(`${srcRel} is not a directory`);
    fs.mkdirSync(target, { mode: 0o700 });
    this.summary.directories++;
    this.meta(srcRel, st, target);
  }
}
