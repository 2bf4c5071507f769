// The client side of the build API. Embedded mode runs the server in this process; a remote mode
// (HTTP to a kiln daemon) will implement the same interface.

import { BuildServer } from '../server/server.js';
import type { BuildRequest, BuildResult, ProgressEvent } from '../server/api.js';
import type { DiskUsage, ImageRecord, PruneOptions, PruneReport, RunImageOptions } from '../server/server.js';

export interface KilnClient {
  build(req: BuildRequest, onProgress?: (event: ProgressEvent) => void, signal?: AbortSignal): Promise<BuildResult>;
  listImages(): Promise<ImageRecord[]>;
  loadImages(source: string, tag?: string): Promise<ImageRecord[]>;
  runImage(name: string, opts: RunImageOptions): Promise<number>;
  /** Disk usage of the root by record (`kiln du`). */
  diskUsage(): Promise<DiskUsage>;
  /** Removes build cache (`kiln prune`). */
  prune(opts: PruneOptions): Promise<PruneReport>;
  close(): Promise<void>;
}

/** In-process server on a kiln root (default: --root, KILN_ROOT, or the per-user default). */
export function embeddedClient(opts: { root?: string } = {}): KilnClient {
  const server = new BuildServer({ root: opts.root });
  return {
    build: (req, onProgress, signal) => server.build(req, onProgress, signal),
    listImages: () => server.listImages(),
    loadImages: (source, tag) => server.loadImages(source, tag),
    runImage: (name, opts) => server.runImage(name, opts),
    diskUsage: () => server.diskUsage(),
    prune: (opts) => server.prune(opts),
    close: () => server.close(),
  };
}

export type { BuildRequest, BuildResult, ImageRecord, ProgressEvent };
export type { CacheRecord, DiskUsage, PruneOptions, PruneReport, RecordType, UsageTotals } from '../server/server.js';
export { parseDuration, parsePruneFilters, parseSize } from '../server/server.js';
export type { BuildErrorInfo, BuildGraph, CacheFrom, CacheTo, ContextSpec, LintFinding, OutputSpec, LayerCompression, Platform } from '../server/api.js';
export { BuildFailure, familiarName, familiarString, formatReference, hostPlatform, parsePlatform, parseReference } from '../server/api.js';
