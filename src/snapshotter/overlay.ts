// The overlayfs driver: each snapshot has fs/ (its upper dir, and later a lower dir of its children) and
// work/ (overlay's work dir). Committed parents are stacked as lowerdirs, nearest first.
//
// Deep chains: mount options are shortened to relative paths at mount time (see mount.ts), which
// carries a few hundred layers. Past overlayfs's 500-lower limit, or when even relative options overflow
// a page, the bottom of the chain is flattened once into <snapshot>/flat of the topmost flattened
// parent (committed snapshots never change, so the copy stays valid until that snapshot is removed).
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from './apply.js';
import { BaseSnapshotter, SnapshotError, treeUsage, type Resolved } from './base.js';
import { overlayChanges, writeLayer } from './diff.js';
import { cloneTree, type CloneOptions } from './clone.js';
import { getXattrSync, OVERLAY_OPAQUE } from './fsops.js';
import { compactOverlayOptions, OVERLAY_MAX_LOWERS } from './mount.js';
import { tarReadable } from '../util/tar-writer.js';
import type { ApplyResult, DiffOptions, DiffResult, Mount, SnapshotKind, Usage } from './types.js';

/**
 * Features pinned off whenever the kernel knows them, so an upper dir stays a plain change set:
 * redirect_dir and metacopy would leave renames and metadata-only copy-ups that a layer cannot express,
 * and index would tie lower dirs to one upper.
 */
function pinnedOptions(): string[] {
  const params = '/sys/module/overlay/parameters';
  return ['index', 'redirect_dir', 'metacopy'].filter((p) => existsSync(path.join(params, p))).map((p) => `${p}=off`);
}

export class OverlaySnapshotter extends BaseSnapshotter {
  readonly driver = 'overlay' as const;
  private readonly pinned = pinnedOptions();
  private readonly flattening = new Map<string, Promise<string>>();
  /** Most lowers one overlay mount may stack (the kernel's OVL_MAX_STACK). */
  maxLowers = OVERLAY_MAX_LOWERS;

  protected async initDir(dir: string, kind: SnapshotKind, _parentDirs: string[]): Promise<void> {
    await fsp.mkdir(path.join(dir, 'fs'), { mode: 0o755 });
    if (kind === 'active') await fsp.mkdir(path.join(dir, 'work'), { mode: 0o700 });
  }

  protected async mountsFor(r: Resolved): Promise<Mount[]> {
    const upper = path.join(r.dir, 'fs');
    if (r.rec.kind === 'view') {
      if (r.parentDirs.length === 0) return [{ type: 'bind', source: upper, options: ['ro', 'rbind'] }];
      if (r.parentDirs.length === 1) return [{ type: 'bind', source: r.parentDirs[0]!, options: ['ro', 'rbind'] }];
      const lowers = await this.fitLowers(r.parentDirs, this.pinned);
      // overlayfs wants two lowers when there is no upper; a fully flattened chain is one dir: bind it
      if (lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, options: ['ro', 'rbind'] }];
      return [{ type: 'overlay', source: 'overlay', options: [...this.pinned, `lowerdir=${lowers.join(':')}`] }];
    }
    if (r.parentDirs.length === 0) return [{ type: 'bind', source: upper, options: ['rw', 'rbind'] }];
    const fixed = [...this.pinned, `workdir=${path.join(r.dir, 'work')}`, `upperdir=${upper}`];
    const lowers = await this.fitLowers(r.parentDirs, fixed);
    return [{ type: 'overlay', source: 'overlay', options: [...fixed, `lowerdir=${lowers.join(':')}`] }];
  }

  /**
   * Reads the layers top down, as overlayfs merges them, one path element at a time: the topmost
   * layer that has the element decides (a whiteout hides it, anything but a real directory is not
   * one here), and an opaque directory hides the layers below it for what is inside. Symbolic links
   * are never followed: an element that is one makes the answer "unsure" (false).
   */
  override async isDirectory(key: string, dir: string): Promise<boolean> {
    return (await this.lookUp(key, dir))?.type === 'dir';
  }

  override async layerOfFile(key: string, file: string): Promise<string | undefined> {
    const found = await this.lookUp(key, file);
    return found?.type === 'file' ? found.layer : undefined;
  }

  /**
   * Which layer of committed snapshot `key` overlayfs would take `p` from, read top down as it
   * merges them: the first layer holding a path element decides it (whiteouts, opaque directories);
   * a symbolic link, a whiteout or anything but a directory on the way ends the walk (unsure).
   */
  private async lookUp(key: string, p: string): Promise<{ type: 'dir' | 'file'; layer: string } | undefined> {
    const r = await this.resolve(key);
    if (r.rec.kind !== 'committed') return undefined;
    const elements = p.split('/').filter((e) => e !== '');
    if (!p.startsWith('/') || elements.some((e) => e === '.' || e === '..')) return undefined;
    let layers = [path.join(r.dir, 'fs'), ...r.parentDirs];
    for (let i = 0; i < elements.length; i++) {
      const rel = elements.slice(0, i + 1).join('/');
      const last = i === elements.length - 1;
      let found = -1;
      for (let j = 0; j < layers.length; j++) {
        const st = await fsp.lstat(path.join(layers[j]!, rel)).catch(() => undefined);
        if (!st) continue;
        if (last && st.isFile()) return { type: 'file', layer: layers[j]! };
        // A whiteout, a file on the way, a symbolic link: nothing this walk can vouch for.
        if (!st.isDirectory()) return undefined;
        found = j;
        break;
      }
      if (found < 0) return undefined;
      const opaque = getXattrSync(path.join(layers[found]!, rel), OVERLAY_OPAQUE)?.toString() === 'y';
      layers = opaque ? [layers[found]!] : layers.slice(found);
    }
    return { type: 'dir', layer: layers[0]! };
  }

  private fits(fixed: string[], lowers: string[]): boolean {
    if (lowers.length > this.maxLowers) return false;
    try {
      compactOverlayOptions([...fixed, `lowerdir=${lowers.join(':')}`]);
      return true;
    } catch {
      return false;
    }
  }

  /** The chain as mountable lowers: as is if it fits, else its top part plus one flattened dir. */
  private async fitLowers(parentDirs: string[], fixed: string[]): Promise<string[]> {
    if (this.fits(fixed, parentDirs)) return parentDirs;
    let keep = Math.min(parentDirs.length - 1, this.maxLowers - 1);
    const flatOf = (i: number) => path.join(path.dirname(parentDirs[i]!), 'flat');
    while (keep > 0 && !this.fits(fixed, [...parentDirs.slice(0, keep), flatOf(keep)])) keep--;
    return [...parentDirs.slice(0, keep), await this.flatten(parentDirs.slice(keep))];
  }

  /** Merges layer dirs (top first) into one plain tree beside the topmost, built once and cached. */
  private flatten(layers: string[]): Promise<string> {
    const dest = path.join(path.dirname(layers[0]!), 'flat');
    let p = this.flattening.get(dest);
    if (!p) {
      p = (async () => {
        if (existsSync(dest)) return dest;
        const tmp = `${dest}.tmp-${process.pid}`;
        await fsp.rm(tmp, { recursive: true, force: true });
        await fsp.mkdir(tmp, { mode: 0o755 });
        // Each layer's own changes, replayed bottom-up with whiteouts as deletions.
        for (const layer of [...layers].reverse()) {
          await applyLayer(tarReadable(overlayChanges(layer)), { target: tmp, whiteouts: 'delete' });
        }
        await fsp.rename(tmp, dest);
        return dest;
      })().finally(() => this.flattening.delete(dest));
      this.flattening.set(dest, p);
    }
    return p;
  }

  async cloneChanges(from: string, key: string, opts: CloneOptions = {}): Promise<string> {
    const src = path.join(await this.location(from), 'fs');
    const info = await this.stat(key);
    if (info.kind !== 'active') throw new SnapshotError(key, 'changes can only be cloned into an active snapshot');
    const dest = path.join(await this.location(key), 'fs');
    if ((await fsp.readdir(dest)).length > 0) throw new SnapshotError(key, 'cloning changes needs an empty snapshot');
    await cloneTree(src, dest, opts);
    return dest;
  }

  protected applyInto(r: Resolved, layer: Readable, mediaType?: string): Promise<ApplyResult> {
    return applyLayer(layer, { target: path.join(r.dir, 'fs'), whiteouts: 'overlay', lowers: r.parentDirs, mediaType });
  }

  protected diffOf(r: Resolved, opts: DiffOptions): Promise<DiffResult> {
    return writeLayer(overlayChanges(path.join(r.dir, 'fs'), r.parentDirs), opts);
  }

  protected usageOf(r: Resolved): Promise<Usage> {
    return treeUsage(path.join(r.dir, 'fs'));
  }
}
