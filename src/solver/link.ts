// COPY --link / ADD --link, with BuildKit's meaning: the copy is made on an empty filesystem (its
// own snapshot, its own layer), and the stage goes on from that layer merged onto what was below.
//
// Keys. The linked snapshot's key covers what the copy reads and how (sources' content, dest,
// flags) and nothing of the stage below it: change the base and the copy is still cached, its layer
// blob the very same. The merged result is keyed by the parent's key and the linked key, so every
// later step depends on both, as after BuildKit's MergeOp.
//
// Merge. Overlay semantics, as MergeOp's: the layer's files replace the base's, its directories
// merge with the base's (the layer's directory metadata wins), a directory of the layer replaces a
// base file or symlink at the same path (never followed: the layer was made without seeing it), and
// there are no whiteouts (a layer made on nothing deletes nothing). On overlay the merged snapshot is
// the parent plus the layer's tree hard-linked as its changes (no byte copied, as the incremental
// COPY does); elsewhere the layer is applied as a tar onto a copy of the parent. Either way the
// filesystem is what an image consumer gets from the base's layers followed by this layer.
//
// Export. The stage's history points at the linked snapshot, so the image carries the linked layer's
// blob unchanged: the same digest on every base, which is what makes the image rebased rather
// than rebuilt.
//
// Scheduling (solver.ts). A stage's linked copies start with the stage, beside the steps before
// them, since they need nothing of them; the merge is made only when something needs the files.

import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Snapshotter } from '../snapshotter/index.js';
import type { StepInputs } from './explain.js';
import { cacheKey, stableStringify } from './keys.js';
import { commitActive, uniqueKey } from './mounted.js';

/** What a linked step's inputs record as its parent: always the same, nothing. */
export const LINK_PARENT = 'nothing (--link)';

type Inputs = Omit<StepInputs, 'key' | 'parentKey' | 'parent' | 'instruction'>;

/**
 * The key of a linked COPY's own snapshot. `material` is what the step's key would cover as a plain
 * COPY; the parts that describe the stage rather than the copy (its ENV, USER and WORKDIR: the
 * destination is already absolute, and names are refused with --link) are left out, as BuildKit's
 * file op on scratch has none of them. `inputs` comes back in the same shape, for explaining a miss.
 */
export function linkKey(material: unknown, inputs: Inputs): { key: string; inputs: Inputs } {
  const { env: _env, user: _user, workdir: _workdir, ...copy } = material as Record<string, unknown>;
  // The recorded text has credentials in ADD URLs redacted already.
  const definition = JSON.parse(inputs.definition) as Record<string, unknown>;
  delete definition.user;
  delete definition.workdir;
  return { key: cacheKey('', { link: copy }), inputs: { ...inputs, env: [], buildArgs: [], definition: stableStringify(definition) } };
}

/** The key of the stage's filesystem after a linked copy: what was below it, and the copy. */
export function mergedKey(parentKey: string, linkKey: string): string {
  return cacheKey(parentKey, { merge: linkKey });
}

/**
 * Commits `name`: committed snapshot `parent` (undefined: scratch) with the linked snapshot `layer`
 * merged on top. If another build committed `name` meanwhile, that one is kept (same key, same
 * content).
 */
export async function mergeLink(snapshotter: Snapshotter, tmpDir: string, parent: string | undefined, layer: string, name: string): Promise<void> {
  const key = uniqueKey('merge');
  await snapshotter.prepare(key, parent);
  await commitActive(snapshotter, key, name, async () => {
    if (snapshotter.cloneChanges) {
      // The linked snapshot has no parent: its changes are its whole tree, with no whiteouts.
      await snapshotter.cloneChanges(layer, key);
    } else {
      await applyAsLayer(snapshotter, tmpDir, layer, key);
    }
  });
}

/** The copying driver: the linked snapshot as an uncompressed layer, applied onto the active copy. */
async function applyAsLayer(snapshotter: Snapshotter, tmpDir: string, layer: string, key: string): Promise<void> {
  await fsp.mkdir(tmpDir, { recursive: true });
  const dest = path.join(tmpDir, uniqueKey('link-layer'));
  try {
    const diff = await snapshotter.diff(layer, { dest, compression: 'none' });
    if (!diff.empty) await snapshotter.applyLayer(key, createReadStream(dest), diff.mediaType);
  } finally {
    await fsp.rm(dest, { force: true });
  }
}
