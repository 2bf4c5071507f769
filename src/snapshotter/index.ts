// The snapshotter room's public surface.
export type {
  ApplyResult,
  CleanupReport,
  Compression,
  DiffOptions,
  DiffResult,
  EmptyDiff,
  LayerBlob,
  Mount,
  PrepareOptions,
  SnapshotInfo,
  SnapshotKind,
  Snapshotter,
  Usage,
} from './types.js';
export { createSnapshotter, overlaySupported, type DriverChoice } from './probe.js';
export { OverlaySnapshotter } from './overlay.js';
export { CopySnapshotter } from './copy.js';
export { SnapshotError } from './base.js';
export { mountAll, unmount, isMountPoint } from './mount.js';
export { applyLayer, LayerEntryError, type ApplyOptions } from './apply.js';
export { overlayChanges, treeChanges, writeLayer } from './diff.js';
export { compressBlob, decompressStages, detectCompression, compressionFromMediaType, layerMediaType, MEDIA_TYPES } from './compression.js';
