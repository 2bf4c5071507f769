// COPY and ADD: the file operation runs on the mounted destination; sources come from the context,
// an earlier stage, or an image, each mounted read-only for the duration.

import { copy, type CopySource, type CopySummary, type GitSourceOptions } from '../../fileop/index.js';
import { dropFromClone, type IncrementalCopy } from '../incremental-copy.js';
import type { CopyStep } from '../../frontend/types.js';
import { mountView, withActive } from '../mounted.js';
import type { OpContext } from './types.js';

export async function copyStep(
  step: CopyStep,
  ctx: OpContext,
  parent: string | undefined,
  name: string,
  incremental?: IncrementalCopy,
  git?: GitSourceOptions,
): Promise<CopySummary> {
  let summary!: CopySummary;
  // Incremental: start from the previous result's changes and take out what may have changed.
  // Directories keep the times of their making, as in a full copy (where the copy creates them or
  // writes into them); the copy sets again the times of those it takes from a source.
  const beforeMount = incremental
    ? async (key: string) => dropFromClone(await ctx.snapshotter.cloneChanges!(incremental.from, key, { directoryTimes: 'now' }), incremental.drop)
    : undefined;
  await withActive(
    ctx.snapshotter,
    ctx.layout.tmp,
    parent,
    name,
    async (destRoot, scope) => {
      let source: CopySource | undefined;
      if (step.sources.length > 0) {
        if (step.from.kind === 'context') {
          const c = ctx.context(step.from.name);
          source = { kind: 'context', dir: c.dir, entries: await c.entries() };
        } else {
          const snap = await ctx.sourceSnapshot(step.from);
          source = { kind: 'rootfs', dir: await mountView(scope, ctx.snapshotter, ctx.layout.tmp, snap) };
        }
      }
      summary = await copy({
        spec: { ...step, location: step.location },
        source,
        destRoot,
        ...(incremental ? { reuse: incremental.reuse } : {}),
        ...(git ? { git } : {}),
      });
    },
    beforeMount,
  );
  return summary;
}
