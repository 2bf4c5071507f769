// WORKDIR makes its directory, as BuildKit does, owned by the current USER when one is set.

import type { WorkdirStep } from '../../frontend/types.js';
import { lookupUser } from '../../fsutil/rootfs-users.js';
import { mkdirAllInRoot } from '../../fsutil/rootpath.js';
import { definitionOf, stableStringify } from '../keys.js';
import { commitActive, uniqueKey, withActive } from '../mounted.js';
import type { Op, OpContext } from './types.js';

/** WORKDIR's key is its definition alone (the path, the user). */
export const workdirOp: Op<WorkdirStep> = {
  async cacheInputs(step) {
    const def = definitionOf(step);
    return { material: def, inputs: { env: [], buildArgs: [], definition: stableStringify(def) } };
  },
  exec: (step, x) => workdirStep(step, x.op, x.parent, x.name),
};

export async function workdirStep(step: WorkdirStep, ctx: OpContext, parent: string | undefined, name: string): Promise<void> {
  // A directory that is there already: nothing to make (mkdir -p changes nothing), so the step's
  // snapshot is an empty one on its parent, made without a mount (two mount(8) runs less); the
  // snapshotter answers from the layers, or says it is unsure and the mount decides. Not under a
  // USER: that one is looked up in the image's files (and an unknown one fails the step) either way.
  if (parent !== undefined && !step.user && (await ctx.snapshotter.isDirectory(parent, step.path))) {
    const key = uniqueKey('active');
    await ctx.snapshotter.prepare(key, parent);
    await commitActive(ctx.snapshotter, key, name, async () => undefined);
    return;
  }
  await makeWorkdir(step, ctx, parent, name);
}

async function makeWorkdir(step: WorkdirStep, ctx: OpContext, parent: string | undefined, name: string): Promise<void> {
  await withActive(ctx.snapshotter, ctx.layout.tmp, parent, name, async (rootfs) => {
    const owner = step.user ? await lookupUser(rootfs, step.user) : undefined;
    await mkdirAllInRoot(rootfs, step.path, 0o755, owner && { uid: owner.uid, gid: owner.gid });
  });
}
