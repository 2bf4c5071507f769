// An incremental COPY: when a COPY from the context runs again at the same place in the Dockerfile,
// on the same parent and with the same options, and only some of its sources changed, the new
// result starts as the previous one (its changes hard-linked, no byte copied) and only what is not
// provably unchanged is taken out and copied again. The result is the same as a full copy: the
// new snapshot sits on the same parent, and what was taken out shows the parent's version again,
// exactly as if it had never been copied.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { ContextEntry } from '../context/walk.js';
import type { WrittenEntry } from '../fileop/index.js';
import type { CopyStep } from '../frontend/types.js';
import { resolveInRoot } from '../fsutil/rootpath.js';
import type { Snapshotter } from '../snapshotter/index.js';
import type { StepInputs } from './explain.js';
import { snapshotExists } from './mounted.js';
import { replaceFile } from '../util/atomic-file.js';

export interface IncrementalCopy {
  /** The previous result's snapshot, to clone. */
  from: string;
  /** Targets (rootfs-absolute) to take out of the clone before copying. */
  drop: WrittenEntry[];
  /** Whether the earlier copy of a source to a target stands in the clone, and as what (CopyOp.reuse). */
  reuse: (srcRel: string, target: string) => 'file' | 'other' | undefined;
  reused: number;
}

/** What each COPY result wrote where, kept so the next run at its place can be incremental. */
export class CopyManifests {
  constructor(private readonly dir: string) {}

  private file(snapshot: string): string {
    return path.join(this.dir, `${snapshot}.json`);
  }

  async load(snapshot: string): Promise<WrittenEntry[] | undefined> {
    try {
      return JSON.parse(await fsp.readFile(this.file(snapshot), 'utf8')) as WrittenEntry[];
    } catch {
      return undefined;
    }
  }

  async save(snapshot: string, written: WrittenEntry[]): Promise<void> {
    await replaceFile(this.file(snapshot), JSON.stringify(written), { mkdir: true });
  }
}

/** Whether this COPY can start from its previous result, and how; undefined for a full copy. */
export async function planIncrementalCopy(
  step: CopyStep,
  prev: StepInputs | undefined,
  cur: StepInputs,
  entries: readonly ContextEntry[],
  snapshotter: Snapshotter,
  manifests: CopyManifests,
): Promise<IncrementalCopy | undefined> {
  if (step.instruction !== 'COPY' || step.from.kind !== 'context' || step.urls.length || step.inline.length) return undefined;
  if (!prev?.files || !cur.files || !snapshotter.cloneChanges) return undefined;
  // Same parent and same options: the same source lands on the same target as before.
  if (prev.key === cur.key || prev.parentKey !== cur.parentKey || prev.definition !== cur.definition || prev.instruction !== cur.instruction) return undefined;
  const from = `step-${prev.key}`;
  if (!(await snapshotExists(snapshotter, from))) return undefined;
  const written = await manifests.load(from);
  if (!written) return undefined;
  // Two sources written to one target (COPY a b /x without a trailing slash, or wildcard matches
  // sharing a name): the later one won, and taking out a changed earlier one would take the later
  // one's result with it. Copy those in full.
  const targets = new Set<string>();
  for (const w of written) {
    if (w.type === 'dir') continue;
    if (targets.has(w.target)) return undefined;
    targets.add(w.target);
  }
  // Hard links between sources are recreated within one copy only: copy those in full.
  const byPath = new Map(entries.map((e) => [e.path, e]));
  if (Object.keys(cur.files).some((p) => byPath.get(p)?.hardlinkTo !== undefined)) return undefined;

  const prevFiles = prev.files;
  const curFiles = cur.files;
  const unchanged = (src: string) => src in curFiles && prevFiles[src] === curFiles[src];
  // A directory still there as a directory stays (the copy applies its metadata again); anything
  // else not proven unchanged is taken out and, if it is still a source, copied anew.
  const drop = written.filter((w) => !unchanged(w.src) && !(w.type === 'dir' && byPath.get(w.src)?.type === 'dir'));
  // What the clone keeps: every earlier non-directory whose source is unchanged, at its target
  // (one source per target, checked above), so the copy need not look.
  const kept = new Map<string, 'file' | 'other'>();
  for (const w of written) if (w.type !== 'dir' && unchanged(w.src)) kept.set(`${w.src}\0${w.target}`, w.type);
  if (kept.size === 0) return undefined;
  return { from, drop, reuse: (src, target) => kept.get(`${src}\0${target}`), reused: kept.size };
}

/** Takes `drop` out of a cloned change directory: files and links first, then emptied directories. */
export async function dropFromClone(upper: string, drop: WrittenEntry[]): Promise<void> {
  const at = (target: string) => resolveInRoot(upper, target, { followFinal: false });
  for (const w of drop.filter((d) => d.type !== 'dir')) await fsp.rm(await at(w.target), { force: true });
  const dirs = drop.filter((d) => d.type === 'dir').sort((a, b) => b.target.length - a.target.length);
  for (const w of dirs) {
    await fsp.rmdir(await at(w.target)).catch((err: NodeJS.ErrnoException) => {
      // Still holding entries that stay: then it stays too (its metadata is applied again).
      if (err.code !== 'ENOTEMPTY' && err.code !== 'ENOENT') throw err;
    });
  }
}
