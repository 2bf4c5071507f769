// The overlayfs driver: each snapshot has fs/ (its upper dir, and later a lower dir of its children) and
// work/ (overlay's work dir). Committed parents are stacked as lowerdirs, nearest first.
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from './apply.js';
import { BaseSnapshotter, SnapshotError, treeUsage, type Resolved } from './base.js';
import { overlayChanges, writeLayer } from './diff.js';
import { OVERLAY_MAX_LOWERS } from './mount.js';
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

  protected async initDir(dir: string, kind: SnapshotKind, _parentDirs: string[]): Promise<void> {
    await fsp.mkdir(path.join(dir, 'fs'), { mode: 0o755 });
    if (kind === 'active') await fsp.mkdir(path.join(dir, 'work'), { mode: 0o700 });
  }

  protected mountsFor(r: Resolved): Mount[] {
    const upper = path.join(r.dir, 'fs');
    if (r.rec.kind === 'view') {
      if (r.parentDirs.length === 0) return [{ type: 'bind', source: upper, options: ['ro', 'rbind'] }];
      if (r.parentDirs.length === 1) return [{ type: 'bind', source: r.parentDirs[0]!, options: ['ro', 'rbind'] }];
      this.checkDepth(r, r.parentDirs.length);
      return [{ type: 'overlay', source: 'overlay', options: [...this.pinned, `lowerdir=${r.parentDirs.join(':')}`] }];
    }
    if (r.parentDirs.length === 0) return [{ type: 'bind', source: upper, options: ['rw', 'rbind'] }];
    this.checkDepth(r, r.parentDirs.length);
    return [
      {
        type: 'overlay',
        source: 'overlay',
        options: [
          ...this.pinned,
          `workdir=${path.join(r.dir, 'work')}`,
          `upperdir=${upper}`,
          `lowerdir=${r.parentDirs.join(':')}`,
        ],
      },
    ];
  }

  private checkDepth(r: Resolved, lowers: number): void {
    if (lowers > OVERLAY_MAX_LOWERS) {
      throw new SnapshotError(r.key, `chain of ${lowers} parents exceeds overlayfs's limit of ${OVERLAY_MAX_LOWERS} lower layers`);
    }
  }

  protected applyInto(r: Resolved, layer: Readable, mediaType?: string): Promise<ApplyResult> {
    return applyLayer(layer, { target: path.join(r.dir, 'fs'), whiteouts: 'overlay', lowers: r.parentDirs, mediaType });
  }

  protected diffOf(r: Resolved, opts: DiffOptions): Promise<DiffResult> {
    return writeLayer(overlayChanges(path.join(r.dir, 'fs')), opts);
  }

  protected usageOf(r: Resolved): Promise<Usage> {
    return treeUsage(path.join(r.dir, 'fs'));
  }
}
