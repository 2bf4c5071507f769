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
// Entries are copied concurrently (a bounded number of file-system operations in flight; a directory
// never holds a slot while its children are copied), since a COPY of a large tree is dominated by
// per-file system calls that Node runs on its thread pool. A directory's own metadata is applied
// after all its children, so their creation cannot change its times.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import PQueue from 'p-queue';
import type { MatchInfo, PatternMatcher } from '../context/patterns.js';
import { applyMeta, clearForFile, copyXattrs, devNumbers, makeNode } from './meta.js';
import { lstatOrUndefined } from '../fsutil/stat.js';
import type { ChmodFn, Owner } from './owner.js';
import type { SourceView } from './source.js';
import type { CopySummary } from './types.js';

export interface TreeOptions {
  chown?: Owner;
  chmod?: ChmodFn;
  exclude?: PatternMatcher;
  /** How to show a host target in errors (rootfs-absolute). */
  show: (host: string) => string;
  /** See CopyOp.reuse. */
  reuse?: (srcRel: string) => boolean;
}

/** File-system operations in flight at once during one copy. */
const CONCURRENCY = 32;

export class TreeCopier {
  /** Source inode -> the target its first copy went to, once that copy is done (hard links). */
  private readonly inodes = new Map<string, Promise<string>>();
  private readonly slots = new PQueue({ concurrency: CONCURRENCY });

  constructor(
    private readonly view: SourceView,
    private readonly opts: TreeOptions,
    private readonly summary: CopySummary,
  ) {}

  private ownerOf(st: fs.Stats): Owner {
    if (this.opts.chown) return this.opts.chown;
    return this.view.preserveOwner ? { uid: st.uid, gid: st.gid } : { uid: 0, gid: 0 };
  }

  private async meta(srcRel: string, st: fs.Stats, target: string): Promise<void> {
    const owner = this.ownerOf(st);
    const isLink = st.isSymbolicLink();
    const mode = this.opts.chmod !== undefined && !isLink ? this.opts.chmod(st.mode & 0o7777, st.isDirectory()) : st.mode & 0o7777;
    if (!isLink) await copyXattrs(this.view.host(srcRel), target);
    await applyMeta(target, isLink, { ...owner, mode, atime: st.atime, mtime: st.mtime });
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
    const st = await this.slot(() => this.view.lstat(srcRel));
    if (st === undefined) throw new Error(`source ${srcRel || '/'} disappeared during the copy`);
    const info = this.excluded(excludeRel, st.isDirectory(), parentInfo);
    if (info === 'skip') return;

    if (st.isDirectory()) {
      const created = await this.slot(async () => {
        const existing = await lstatOrUndefined(target);
        if (existing === undefined) {
          await fsp.mkdir(target, { mode: 0o700 });
          this.summary.directories++;
          return true;
        }
        if (!existing.isDirectory()) throw new Error(`cannot copy to non-directory: ${this.opts.show(target)}`);
        return false;
      });
      const names = await this.slot(() => this.view.readdir(srcRel));
      // All children, concurrently; every one is waited for (no work may go on after a failure is
      // reported), then the first failure in name order is the one reported.
      const results = await Promise.allSettled(
        names.map((name) => {
          const childRel = srcRel === '' ? name : `${srcRel}/${name}`;
          const childExclude = excludeRel === '' ? name : `${excludeRel}/${name}`;
          return this.copy(childRel, path.join(target, name), false, this.opts.exclude ? childExclude : '', info);
        }),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (created || !top) await this.slot(() => this.meta(srcRel, st, target));
      this.summary.written.push({ src: srcRel, target: this.opts.show(target), type: 'dir' });
      return;
    }

    // An incremental copy: this entry's earlier copy is in place already (a hard link into the
    // previous result, which nothing writes through), so there is nothing to do.
    if (this.opts.reuse?.(srcRel)) {
      const there = await this.slot(() => lstatOrUndefined(target));
      if (there !== undefined && !there.isDirectory()) {
        this.summary.reused++;
        this.summary.written.push({ src: srcRel, target: this.opts.show(target), type: st.isFile() ? 'file' : 'other' });
        return;
      }
    }

    // A file that shares its inode with one copied before becomes a link to that copy. The first
    // of them claims the inode before it copies, so the others wait for it instead of copying too.
    let claim: { resolve: (t: string) => void; reject: (e: unknown) => void } | undefined;
    let first: Promise<string> | undefined;
    if (st.isFile() && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      first = this.inodes.get(key);
      if (!first) {
        const p = new Promise<string>((resolve, reject) => (claim = { resolve, reject }));
        p.catch(() => undefined); // a failed first copy is reported by itself
        this.inodes.set(key, p);
      }
    }
    const linkTo = first ? await first : undefined;
    try {
      await this.slot(() => this.copyEntry(srcRel, st, target, linkTo));
      this.summary.written.push({ src: srcRel, target: this.opts.show(target), type: st.isFile() ? 'file' : 'other' });
      claim?.resolve(target);
    } catch (err) {
      claim?.reject(err);
      throw err;
    }
  }

  private slot<T>(fn: () => Promise<T>): Promise<T> {
    return this.slots.add(fn) as Promise<T>;
  }

  /** One non-directory entry: created at `target` (as a hard link to `linkTo` when given), then its metadata. */
  private async copyEntry(srcRel: string, st: fs.Stats, target: string, linkTo: string | undefined): Promise<void> {
    await clearForFile(target, this.opts.show(target));
    if (st.isFile()) {
      if (linkTo !== undefined) {
        await fsp.link(linkTo, target);
        this.summary.hardlinks++;
      } else {
        await fsp.copyFile(this.view.host(srcRel), target, fs.constants.COPYFILE_EXCL);
        this.summary.files++;
        this.summary.bytes += st.size;
      }
    } else if (st.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(this.view.host(srcRel)), target);
      this.summary.symlinks++;
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const { major, minor } = devNumbers(st.rdev);
      await makeNode(target, st.isCharacterDevice() ? 'char' : 'block', major, minor);
    } else if (st.isFIFO()) {
      await makeNode(target, 'fifo');
    } else {
      // Sockets cannot be copied (BuildKit refuses them too).
      throw new Error(`cannot copy ${srcRel}: unsupported file type (socket)`);
    }
    await this.meta(srcRel, st, target);
  }

  /**
   * Creates `target` as a directory carrying the metadata of the source directory `srcRel` (for
   * --parents), unless it exists already as a directory.
   */
  async ensureDirLike(srcRel: string, target: string): Promise<void> {
    const existing = await lstatOrUndefined(target);
    if (existing?.isDirectory()) return;
    if (existing !== undefined) throw new Error(`cannot copy to non-directory: ${this.opts.show(target)}`);
    const st = await this.view.lstat(srcRel);
    if (!st?.isDirectory()) throw new Error(`${srcRel} is not a directory`);
    await fsp.mkdir(target, { mode: 0o700 });
    this.summary.directories++;
    await this.meta(srcRel, st, target);
  }
}
