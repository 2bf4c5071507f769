// A multi-platform build: the graph is translated and solved once per target platform, side by
// side. Steps identical across platforms (a FROM --platform=$BUILDPLATFORM stage before it reads
// TARGETARCH) have the same key and so run once: the solver makes each snapshot once per process.

import type { CacheConfig } from '../cache/cache-manifest.js';
import type { Platform } from '../frontend/types.js';
import type { PlatformResult } from './export-platforms.js';
import type { ProgressTracker } from './progress.js';
import type { SolveRequest, Solver } from './solver.js';

export async function solvePlatforms(
  solver: Solver,
  req: Omit<SolveRequest, 'platform' | 'prefixPlatform'>,
  platforms: readonly Platform[],
  progress: ProgressTracker,
  callerSignal?: AbortSignal,
): Promise<PlatformResult[]> {
  // One platform failing stops the others, as one failing stage stops a build.
  const cancel = new AbortController();
  const onAbort = () => cancel.abort(callerSignal!.reason);
  if (callerSignal?.aborted) cancel.abort(callerSignal.reason);
  callerSignal?.addEventListener('abort', onAbort, { once: true });
  try {
    const runs = platforms.map((platform) =>
      solver.solve({ ...req, platform, prefixPlatform: true }, progress, cancel.signal).then(
        (result) => ({ platform, result }),
        (err: unknown) => {
          cancel.abort(err);
          throw err;
        },
      ),
    );
    const settled = await Promise.allSettled(runs);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      for (const s of settled) if (s.status === 'fulfilled') s.value.result.release();
      // The first failure is the one to report; the others were mostly cancelled because of it.
      throw firstCause(settled, cancel.signal) ?? failed.reason;
    }
    return settled.map((s) => (s as PromiseFulfilledResult<PlatformResult>).value);
  } finally {
    callerSignal?.removeEventListener('abort', onAbort);
  }
}

function firstCause(settled: PromiseSettledResult<unknown>[], signal: AbortSignal): unknown {
  if (signal.aborted && settled.some((s) => s.status === 'rejected' && s.reason === signal.reason)) return signal.reason;
  return undefined;
}

/** The cache records of several platforms' results as one cache (records are named by content). */
export function mergeCacheConfigs(configs: CacheConfig[]): CacheConfig {
  const records = new Map<string, CacheConfig['records'][number]>();
  const mounts = new Map<string, NonNullable<CacheConfig['cacheMounts']>[number]>();
  for (const c of configs) {
    for (const r of c.records) if (!records.has(r.snapshot)) records.set(r.snapshot, r);
    for (const m of c.cacheMounts ?? []) if (!mounts.has(m.id)) mounts.set(m.id, m);
  }
  return mounts.size ? { records: [...records.values()], cacheMounts: [...mounts.values()] } : { records: [...records.values()] };
}
