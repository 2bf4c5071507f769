// A multi-platform build: the graph is translated and solved once per target platform, side by
// side. Steps identical across platforms (a FROM --platform=$BUILDPLATFORM stage before it reads
// TARGETARCH) have the same key and so run once: the solver makes each snapshot once per process.

import type { CacheConfig } from '../cache/cache-manifest.js';
import type { Platform } from '../frontend/types.js';
import type { PlatformResult } from './export-platforms.js';
import { ProgressTracker, type VertexHandle } from './progress.js';
import type { SolveRequest, Solver } from './solver.js';

export async function solvePlatforms(
  solver: Solver,
  req: Omit<SolveRequest, 'platform' | 'prefixPlatform' | 'baseImages'>,
  platforms: readonly Platform[],
  progress: ProgressTracker,
  callerSignal?: AbortSignal,
): Promise<PlatformResult[]> {
  // One platform failing stops the others, as one failing stage stops a build.
  const cancel = new AbortController();
  const onAbort = () => cancel.abort(callerSignal!.reason);
  if (callerSignal?.aborted) cancel.abort(callerSignal.reason);
  callerSignal?.addEventListener('abort', onAbort, { once: true });
  const shared = new SharedVertices(progress);
  // One set of base images for all platforms: the build machine's base of a FROM
  // --platform=$BUILDPLATFORM stage is resolved once, not once per target.
  const baseImages = solver.baseImages(platforms[0]!, req.pull, cancel.signal);
  try {
    const runs = platforms.map((platform) =>
      solver.solve({ ...req, platform, prefixPlatform: true, baseImages }, shared, cancel.signal).then(
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

/**
 * The platforms' progress as one build's: a vertex of the same name that several platforms are in at
 * the same time (loading the Dockerfile, a base's metadata, a step they share, which one runs and the
 * others wait for) is shown once, as BuildKit shows one vertex for one digest. It ends when every
 * platform is done with it: failed if one failed, else done if one ran it, else cached. Loading the
 * Dockerfile or a base (internal and FROM vertices) is shown once even when the platforms come to it
 * one after the other: a later one appears only if it logs or fails.
 */
class SharedVertices extends ProgressTracker {
  private readonly open = new Map<
    string,
    { handle: VertexHandle; members: number; ended: number; outcome: 'cached' | 'done' | 'error'; reason?: string; error?: unknown }
  >();
  private readonly finished = new Set<string>();

  constructor(private readonly inner: ProgressTracker) {
    super(() => undefined);
  }

  override message(level: 'info' | 'warning', text: string): void {
    this.inner.message(level, text);
  }

  override start(name: string): VertexHandle {
    if (!this.open.has(name) && this.finished.has(name) && LOADING.test(name)) return this.late(name);
    let v = this.open.get(name);
    if (!v) {
      v = { handle: this.inner.start(name), members: 0, ended: 0, outcome: 'cached' };
      this.open.set(name, v);
    }
    const vertex = v;
    vertex.members++;
    let ended = false;
    const end = (outcome: 'cached' | 'done' | 'error', reason?: string, error?: unknown) => {
      if (ended) return;
      ended = true;
      vertex.ended++;
      const rank = { cached: 0, done: 1, error: 2 } as const;
      if (rank[outcome] > rank[vertex.outcome]) Object.assign(vertex, { outcome, reason, error });
      if (vertex.ended < vertex.members) return;
      if (this.open.get(name) === vertex) this.open.delete(name);
      if (vertex.outcome !== 'error') this.finished.add(name);
      if (vertex.outcome === 'error') vertex.handle.fail(vertex.error);
      else if (vertex.outcome === 'done') vertex.handle.done(vertex.reason);
      else vertex.handle.cached();
    };
    return {
      id: vertex.handle.id,
      log: (stream, data) => vertex.handle.log(stream, data),
      cached: () => end('cached'),
      done: (reason) => end('done', reason),
      fail: (err) => end('error', undefined, err),
    };
  }

  /** A vertex announced only once it has something to say (a log line, a failure). */
  private late(name: string): VertexHandle {
    let handle: VertexHandle | undefined;
    const shown = () => (handle ??= this.inner.start(name));
    return {
      get id() {
        return shown().id;
      },
      log: (stream, data) => shown().log(stream, data),
      cached: () => handle?.cached(),
      done: (reason) => handle?.done(reason),
      fail: (err) => shown().fail(err),
    };
  }
}

/** Vertices that load what a build starts from, rather than run a step. */
const LOADING = /^\[(?:[^\] ]+ )?internal\] |^\[[^\]]*\] FROM /;

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
