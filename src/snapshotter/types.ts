// The snapshotter's contract, shaped like containerd's: snapshots are named, form parent chains, and are
// either active (writable, from prepare), views (read-only, from view) or committed (immutable, usable as
// parents). Everything here is plain data so it can cross the daemon's API.
import type { Readable } from 'node:stream';

/** One mount, as containerd describes it: `mount -t type -o options source target`. */
export interface Mount {
  type: string; // 'overlay' | 'bind'
  source: string;
  options: string[];
}

export type SnapshotKind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  /** The key (active, view) or name (committed). */
  key: string;
  kind: SnapshotKind;
  /** Name of the committed parent snapshot, if any. */
  parent?: string;
  labels: Record<string, string>;
  created: string; // ISO 8601
  updated: string; // ISO 8601
  /** When a build last reused it (touch); absent if never reused since it was made. */
  lastUsed?: string; // ISO 8601
  /** How many times touch() recorded a reuse. */
  usageCount?: number;
}

/** Disk use of the snapshot's own layer (overlay: its upper dir; copy: its whole tree). */
export interface Usage {
  size: number; // bytes allocated
  inodes: number;
}

export type Compression = 'gzip' | 'zstd' | 'none';

export interface ApplyResult {
  /** sha256 of the uncompressed tar, "sha256:<hex>": compare with the image config's diff_ids. */
  diffID: string;
  /** Size of the uncompressed tar in bytes. */
  size: number;
  /** Number of tar entries processed. */
  entries: number;
}

export interface DiffOptions {
  /** Where the (compressed) blob is written; the caller owns the file afterwards. Absent: the
   * blob is only hashed (digest, diffID, size) and nothing is written; uncompressed layers only. */
  dest?: string;
  compression?: Compression; // default 'gzip'
  /** Media type family for the result; default 'oci'. */
  flavor?: 'oci' | 'docker';
  /** zlib level for gzip (default 6) or zstd level (default 3). */
  level?: number;
  /** SOURCE_DATE_EPOCH (seconds): file times newer than it are written as it (BuildKit's
   * rewrite-timestamp); older ones are kept. */
  clampMtime?: number;
}

/** A layer produced by diff. `path` is `DiffOptions.dest` (absent when only hashed). */
export interface LayerBlob {
  empty: false;
  mediaType: string;
  /** Digest and size of the blob as written (compressed). */
  digest: string;
  size: number;
  /** Digest and size of the uncompressed tar. */
  diffID: string;
  uncompressedSize: number;
  path?: string;
}

/** Nothing changed: no layer; the exporter writes an `empty_layer: true` history entry instead. */
export interface EmptyDiff {
  empty: true;
}

export type DiffResult = LayerBlob | EmptyDiff;

export interface CleanupReport {
  /** Active snapshots and views whose owning process is gone (killed build), now removed. */
  removedSnapshots: string[];
  /** Snapshot directories with no metadata (crash between mkdir and metadata write, or mid-remove). */
  removedDirs: string[];
}

export interface PrepareOptions {
  labels?: Record<string, string>;
}

export interface Snapshotter {
  readonly root: string;
  readonly driver: 'overlay' | 'copy';

  /** Creates an active (writable) snapshot on top of committed `parent`; returns how to mount it. */
  prepare(key: string, parent?: string, opts?: PrepareOptions): Promise<Mount[]>;
  /** Creates a read-only view of committed `parent`. */
  view(key: string, parent?: string, opts?: PrepareOptions): Promise<Mount[]>;
  /** The mounts of an active snapshot or view. */
  mounts(key: string): Promise<Mount[]>;
  /**
   * Whether `dir` (absolute and clean) is a directory in committed snapshot `key`'s tree, known
   * without mounting it: true only when certain; false also when unsure (a symbolic link on the
   * way, a driver that cannot tell), so a caller then looks through a mount.
   */
  isDirectory(key: string, dir: string): Promise<boolean>;
  /**
   * The layer directory of committed snapshot `key` whose entry the mounted snapshot shows at
   * `file` (absolute, no `.`/`..`), when that entry is a regular file reached through plain
   * directories (no symbolic link, no whiteout on the way, opaque directories honoured): read from
   * there, the file is what a mount of the snapshot would show, without mounting it. Undefined when
   * it is anything else or the driver cannot tell (then mount).
   */
  layerOfFile(key: string, file: string): Promise<string | undefined>;
  /** Turns active snapshot `key` into committed snapshot `name` (immutable, a possible parent). */
  commit(name: string, key: string, opts?: PrepareOptions): Promise<void>;
  /** Removes a snapshot; refused while it is the parent of another. */
  remove(key: string): Promise<void>;
  stat(key: string): Promise<SnapshotInfo>;
  list(): Promise<SnapshotInfo[]>;
  usage(key: string): Promise<Usage>;
  /**
   * Records that a build reused `key` now (last-used time and count), for garbage collection's
   * least-recently-used order. `at` backdates the record (tests, imports). Kept in memory for a
   * moment (list and stat see it at once); flush() writes it.
   */
  touch(key: string, at?: Date): Promise<void>;
  /** Writes the reuse records touch() kept in memory. Called before the root is released. */
  flush(): Promise<void>;
  /**
   * The directory holding everything the snapshot keeps on disk (its files, overlay's work dir, a
   * flattened lower chain), for disk accounting only: never write into it.
   */
  location(key: string): Promise<string>;
  /**
   * Overlay only: fills the (unmounted, empty) active snapshot `key` with the changes of committed
   * snapshot `from`, files as hard links (committed snapshots never change, and a later write to
   * the active one through overlay replaces an entry instead of writing into it). What `from` adds
   * is then there without copying a byte; the caller removes what must not be. Returns the active
   * snapshot's change directory (its overlay upper dir) for that. `opts.directoryTimes` (clone.ts):
   * whether directories keep `from`'s times or the times of their making.
   */
  cloneChanges?(from: string, key: string, opts?: { directoryTimes?: 'kept' | 'now' }): Promise<string>;
  /** Removes what a killed process left behind: stale active snapshots/views and orphaned dirs. */
  cleanup(): Promise<CleanupReport>;
  /** Snapshot directories no metadata entry names (what cleanup() removes when the root is opened next). */
  strayDirs(): Promise<string[]>;

  /**
   * Applies a layer blob (gzip, zstd or plain tar; detected by magic bytes, `mediaType` is a hint)
   * into active snapshot `key`, which must not be mounted while this runs.
   */
  applyLayer(key: string, layer: Readable, mediaType?: string): Promise<ApplyResult>;
  /** Writes the changes of snapshot `key` (committed or active, unmounted) against its parent as a layer. */
  diff(key: string, opts: DiffOptions): Promise<DiffResult>;
}
