// The copying driver, for roots where overlayfs cannot serve (e.g. a root that is itself on overlayfs):
// each snapshot's fs/ is a full copy of its parent's tree, mounted with a bind. Naive on purpose:
// slower and bigger, but it asks nothing of the file system beyond what `cp -a` needs.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { applyLayer } from './apply.js';
import { BaseSnapshotter, treeUsage, type Resolved } from './base.js';
import { treeChanges, writeLayer } from './diff.js';
import { run } from './fsops.js';
import type { ApplyResult, DiffOptions, DiffResult, Mount, SnapshotKind, Usage } from './types.js';

export class CopySnapshotter extends BaseSnapshotter {
  readonly driver = 'copy' as const;

  protected async initDir(dir: string, _kind: SnapshotKind, parentDirs: string[]): Promise<void> {
    const fs = path.join(dir, 'fs');
    await fsp.mkdir(fs, { mode: 0o755 });
    // cp -a keeps modes, owners, times, xattrs, hard links, devices; reflinks where the fs has them.
    if (parentDirs.length > 0) await run('cp', ['-a', '--reflink=auto', '--', `${parentDirs[0]}/.`, `${fs}/`]);
  }

  protected mountsFor(r: Resolved): Mount[] {
    const ro = r.rec.kind === 'view';
    return [{ type: 'bind', source: path.join(r.dir, 'fs'), options: [ro ? 'ro' : 'rw', 'rbind'] }];
  }

  protected applyInto(r: Resolved, layer: Readable, mediaType?: string): Promise<ApplyResult> {
    return applyLayer(layer, { target: path.join(r.dir, 'fs'), whiteouts: 'delete', mediaType });
  }

  protected diffOf(r: Resolved, opts: DiffOptions): Promise<DiffResult> {
    return writeLayer(treeChanges(path.join(r.dir, 'fs'), r.parentDirs[0]), opts);
  }

  protected usageOf(r: Resolved): Promise<Usage> {
    return treeUsage(path.join(r.dir, 'fs'));
  }
}
