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

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
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
}

export class TreeCopier {
  private readonly inodes = new Map<string, string>();

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
    const st = await this.view.lstat(srcRel);
    if (st === undefined) throw new Error(`source ${srcRel || '/'} disappeared during the copy`);
    const info = this.excluded(excludeRel, st.isDirectory(), parentInfo);
    if (info === 'skip') return;

    if (st.isDirectory()) {
      const existing = await lstatOrUndefined(target);
      let created = false;
      if (existing === undefined) {
        await fsp.mkdir(target, { mode: 0o700 });
        created = true;
        this.summary.directories++;
      } else if (!existing.isDirectory()) {
        throw new Error(`cannot copy to non-directory: ${this.opts.show(target)}`);
      }
      for (const name of await this.view.readdir(srcRel)) {
        const childRel = srcRel === '' ? name : `${srcRel}/${name}`;
        const childExclude = excludeRel === '' ? name : `${excludeRel}/${name}`;
        await this.copy(childRel, path.join(target, name), false, this.opts.exclude ? childExclude : '', info);
      }
      if (created || !top) await this.meta(srcRel, st, target);
      return;
    }

    await clearForFile(target, this.opts.show(target));
    if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1 ? this.inodes.get(key) : undefined;
      if (first !== undefined) {
        await fsp.link(first, target);
        this.summary.hardlinks++;
      } else {
        await fsp.copyFile(this.view.host(srcRel), target, fs.constants.COPYFILE_EXCL);
        if (st.nlink > 1) this.inodes.set(key, target);
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
