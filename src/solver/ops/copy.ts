// COPY and ADD: the file operation runs on the mounted destination; sources come from the context,
// an earlier stage, or an image, each mounted read-only for the duration.

import * as path from 'node:path';
import { copy, type CopySource, type CopySummary, type GitSourceOptions } from '../../fileop/index.js';
import type { CopyStep } from '../../frontend/types.js';
import { redactCredentials } from '../../frontend/urls.js';
import { gitKeyDefinition, gitSources, withGitOptions } from '../git-sources.js';
import { dropFromClone, planIncrementalCopy, type IncrementalCopy } from '../incremental-copy.js';
import { definitionOf, stableStringify } from '../keys.js';
import { mountView, withActive } from '../mounted.js';
import { describeFrom, type Op, type OpContext } from './types.js';

/**
 * COPY/ADD's key: its definition, the key of what it reads (the content of its context sources, a
 * stage's key, an image's digest) and, for ADD of a git repository, the commit each ref resolves
 * to now. Made incrementally from its previous result when the cache's history allows.
 */
export const copyOp: Op<CopyStep> = {
  async cacheInputs(step, k) {
    const git = gitSources(step);
    let def = definitionOf(step);
    // For a miss explanation: "git https://host/r.git#main changed" when the branch moved.
    const gitCommits: Record<string, string> = {};
    if (git.size > 0) {
      // ADD of a git repository: the key names the commit the ref resolves to now.
      const resolved = await k.resolveGit(step);
      def = gitKeyDefinition(def, git, resolved);
      for (const [u, r] of resolved) gitCommits[`git ${redactCredentials(u)}`] = r.commit;
    }
    const files: Record<string, string> = {};
    const from = await k.sourceKey(step.from, step.sources, { parents: step.parents, exclude: step.exclude }, files);
    const { env, ...rest } = def;
    // The definition is kept on disk to explain a later miss: ADD URLs' credentials redacted.
    const inputs = {
      env,
      buildArgs: [],
      definition: redactCredentials(stableStringify(rest)),
      sources: { [describeFrom(step.from)]: from, ...gitCommits },
    };
    // From the context, a miss can name the files: "COPY: src/app.js changed".
    return { material: { ...def, from }, inputs: step.from.kind === 'context' ? { ...inputs, files } : inputs };
  },

  async exec(step, x) {
    const incremental = x.history
      ? await planIncrementalCopy(
          step,
          x.history.previous,
          x.history.current,
          step.from.kind === 'context' ? await x.op.context(step.from.name).entries() : [],
          x.op.snapshotter,
          x.copyManifests,
        )
      : undefined;
    const git = gitSources(step);
    // As BuildKit's git vertex shows: what each ref resolved to.
    for (const r of x.git.resolved?.values() ?? []) x.log(`${r.commit}\t${r.ref}\n`);
    const run = (opts?: GitSourceOptions) => copyStep(step, x.op, x.parent, x.name, incremental, opts);
    const summary = git.size > 0 ? await withGitOptions(x.git.context, git.values(), x.git.resolved, run) : await run();
    if (incremental) x.log(`reused ${summary.reused} unchanged files of the previous result, copied ${summary.files}\n`);
    await x.copyManifests.save(x.name, summary.written);
  },
};

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
          const dir = (await fileLayer(ctx, snap, step)) ?? (await mountView(scope, ctx.snapshotter, ctx.layout.tmp, snap));
          source = { kind: 'rootfs', dir };
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

/**
 * For a COPY --from whose sources are plain paths of regular files, all shown from one layer of the
 * source snapshot: that layer's directory, to copy from without mounting the snapshot (a view, a
 * mount and an unmount: most of what a one-file COPY --from costs). A file's own entry in that
 * layer is what the mount would show. Not with --parents, whose directories may come from higher
 * layers; anything else (a wildcard, a directory, a link on the way, a driver that cannot tell)
 * mounts as before.
 */
async function fileLayer(ctx: OpContext, snapshot: string | undefined, step: CopyStep): Promise<string | undefined> {
  if (snapshot === undefined || step.parents || step.sources.length === 0) return undefined;
  let layer: string | undefined;
  for (const raw of step.sources) {
    if (/[*?[\\]/.test(raw) || raw.endsWith('/')) return undefined;
    const found = await ctx.snapshotter.layerOfFile(snapshot, path.posix.normalize(`/${raw}`));
    if (found === undefined || (layer !== undefined && found !== layer)) return undefined;
    layer = found;
  }
  return layer;
}
