// The solver room's face to the server: opening a root, solving, exporting, and the types they take.
export { openRoot, type RootServices, type OpenRootOptions } from './root.js';
export { RootBusyError } from './root-lock.js';
export { cacheConfigFor, exportResult, primaryLayerOptions, type ExportOutput, type ExportResult } from './export.js';
export { exportPlatforms, refuseMultiPlatform, type PlatformResult } from './export-platforms.js';
export { mergeCacheConfigs, solvePlatforms } from './solve-platforms.js';
export { writeCache, type CacheFrom, type CacheTo } from './cache-io.js';
export { planBuild } from './plan.js';
export { contextUsage } from './context-usage.js';
export { prepareNamedContexts, type NamedContext, type NamedContextInput } from './named-contexts.js';
export type { SolveResult } from './solver.js';
export { ProgressTracker, type ProgressEvent, type ProgressSink } from './progress.js';
export { defaultRoot } from './state-root.js';
export { socketAgent, type SshAgent, type SshAgents } from './ssh-agent.js';
export type { Compression } from '../snapshotter/index.js';
export type { ImageRecord } from '../image/store.js';
export type { RegistryConfig } from '../image/registry/index.js';
export {
  describeImages,
  findImage,
  ImageLookupError,
  loadImages,
  runImage,
  saveImages,
  untagImage,
  type RunImageOptions,
  type StoredImageInfo,
} from './images.js';
// Pure helpers and types the layers above need (names, platforms, progress), passed up along the arrows.
export { buildErrorInfo, type BuildErrorInfo } from './errors.js';
export { ENTITLEMENTS, type Entitlement } from './ops/types.js';
export type { ContextEntry, ContextSource } from '../context/index.js';
export { directoryContext, listedContext, walkContext } from '../context/index.js';
// What a daemon's client does on its own side with what comes back: unpack a directory export, --load.
export { extractTar as extractArchive } from '../fileop/index.js';
export { loadIntoDocker } from '../image/exporter/docker-load.js';
export { parsePlatform } from '../frontend/platform.js';
export type { BuildGraph, LintFinding, NamedContextBinding, Platform } from '../frontend/types.js';
export { hostPlatform } from '../oci/index.js';
export { familiarName, familiarString, formatReference, parseReference } from '../image/reference.js';
