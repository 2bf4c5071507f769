// The solver room's face to the server: opening a root, solving, exporting, and the types they take.
export { openRoot, type RootServices, type OpenRootOptions } from './root.js';
export { cacheConfigFor, exportResult, type ExportOutput, type ExportResult } from './export.js';
export { writeCache, type CacheFrom, type CacheTo } from './cache-io.js';
export { planBuild } from './plan.js';
export type { SolveResult } from './solver.js';
export { ProgressTracker, type ProgressEvent, type ProgressSink } from './progress.js';
export { defaultRoot } from './state-root.js';
export type { Compression } from '../snapshotter/index.js';
export type { ImageRecord } from '../image/store.js';
export type { RegistryConfig } from '../image/registry/index.js';
export { loadImages, runImage, type RunImageOptions } from './images.js';
// Pure helpers and types the layers above need (names, platforms, progress), passed up along the arrows.
export { buildErrorInfo, type BuildErrorInfo } from './errors.js';
export type { ContextSource } from '../context/index.js';
export { directoryContext, preparedContext } from '../context/index.js';
export { parsePlatform } from '../frontend/platform.js';
export type { BuildGraph, LintFinding, Platform } from '../frontend/types.js';
export { hostPlatform } from '../oci/index.js';
export { familiarName, familiarString, formatReference, parseReference } from '../image/reference.js';
