// The client side of the build API: one interface, two implementations. Embedded mode runs the
// server in this process (embedded.ts); remote.ts talks HTTP to a kiln daemon; connect.ts chooses.

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

export type { BuildRequest, BuildResult, ImageRecord, ProgressEvent };
export type { SshForward } from '../server/api.js';
export type { CacheRecord, DiskUsage, PruneOptions, PruneReport, RecordType, UsageTotals } from '../server/server.js';

export type {
  Entitlement,
  BuildErrorInfo,
  BuildGraph,
  CacheFrom,
  CacheTo,
  ContextSpec,
  LintFinding,
  NamedContextSpec,
  OutputSpec,
  LayerCompression,
  Platform,
} from '../server/api.js';
export {
  BuildFailure,
  ENTITLEMENTS,
  CacheSpecError,
  familiarName,
  familiarString,
  formatReference,
  hostPlatform,
  parseCacheFrom,
  parseCacheTo,
  parseDuration,
  parsePlatform,
  parsePruneFilters,
  parseReference,
  parseSize,
  splitCsv,
} from '../server/api.js';
export { parseSourceDateEpoch, SOURCE_DATE_EPOCH } from '../server/api.js';
// Image output options, annotations and attestations (kiln build -o/--annotation/--provenance).
export type { AnnotationSpec, ImageOutputOptions, ProvenanceRequest } from '../server/api.js';
export { AnnotationError, parseAnnotationAttr, parseAnnotationFlag } from '../server/api.js';
