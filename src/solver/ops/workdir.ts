// WORKDIR makes its directory, as BuildKit does, owned by the current USER when one is set.

import type { WorkdirStep } from '../../frontend/types.js';
import { lookupUser } from '../../fsutil/rootfs-users.js';
import { mkdirAllInRoot } from '../../fsutil/rootpath.js';
import { definitionOf, stableStringify } from '../keys.js';
import { withActive } from '../mounted.js';
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
  await withActive(ctx.snapshotter, ctx.layout.tmp, parent, name, async (rootfs) => {
    const owner = step.user ? await lookupUser(rootfs, step.user) : undefined;
    await mkdirAllInRoot(rootfs, step.path, 0o755, owner && { uid: owner.uid, gid: owner.gid });
  });
}
