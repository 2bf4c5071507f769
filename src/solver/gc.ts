// Garbage collection on a kiln root: find every record with its size (`kiln du`), remove what a
// prune plan picks (`kiln prune`), and the daemon's automatic policy (maybeCollect). The policy
// itself (which records, in which order) is the pure planPrune in cache/gc.ts.
//
// What lives on a root, and who keeps it alive (each listed by the module that owns its names:
// snapshots by the snapshotter, layer records by layers.ts, base layers by base-images.ts, cache
// mounts by cache-io.ts, blobs by the content store; this module only reads those lists):
//   images.json names -> manifests (or indexes) -> configs and layers      never pruned
//   step snapshots (build cache) + their layer records -> layer blobs
//   unpacked base image layers (snapshots re-unpacked from blobs when needed)
//   manifests/configs of pulled bases and of exported but unnamed images (no name points at them)
//   RUN --mount=type=cache directories
//   metadata (snapshot metadata, images.json, locks, runc state), tmp/ and the store's ingest/
// Every inode under the root is counted once, in the first record that reaches it, so the sum of
// the records is the disk the root uses (`du -x`).
//
// Removal order, so a prune killed at any point leaves a root the next build can use:
//   1. layer record files of the records going (a step without its record recomputes it on export);
//   2. blobs nothing kept refers to any more: indexes, then manifests, then configs and layers, so no
//      stored manifest points at a missing blob;
//   3. snapshots, children before parents (the snapshotter refuses a parent anyway), each one's
//      metadata entry first and its files after (an orphan directory is swept when a root opens);
//      cache mounts are renamed into tmp/ first, then deleted, so none is ever half there.
// What a killed prune leaves is unreferenced blobs and directories that the next prune (or the next
// open of the root) removes.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { cacheSize, planPrune, summarize, type CacheRecord, type PruneFilter, type UsageTotals } from '../cache/gc.js';
import type { Digest, ImageConfig, Index, Manifest } from '../oci/index.js';
import type { SnapshotInfo } from '../snapshotter/index.js';
import { chainIds, isBaseLayerSnapshot, layerSnapshotName } from './base-images.js';
import { listCacheMounts } from './cache-io.js';
import { uniqueKey } from './mounted.js';
import { deferredSnapshot, listLayerRecords } from './layers.js';
import type { RootServices } from './root.js';

export { parseDuration, parsePruneFilters, parseSize, summarize, type CacheRecord, type RecordType, type UsageTotals } from '../cache/gc.js';

/** Snapshots running builds hold: a live set (read at every removal) or a function giving one. */
export type HeldSnapshots = ReadonlySet<string> | (() => Iterable<string>);

export interface DiskUsage {
  records: CacheRecord[];
  totals: UsageTotals;
  /** The size --keep-storage and the automatic policy compare with (all but named images' content). */
  cacheSize: number;
}

export interface PruneOptions {
  /** Also internal records (unpacked base images, pulled manifests) and cache shared with named images. */
  all?: boolean;
  /** Keep this many bytes of build cache, the most recently used (0 or absent: no limit). */
  keepStorage?: number;
  /** Only records unused for at least this long (ms). */
  unusedForMs?: number;
  /** For tests: the clock. */
  now?: Date;
}

export interface PruneReport {
  /** The records removed, in the order they went. */
  deleted: CacheRecord[];
  /** Bytes freed: the removed records' sizes. */
  reclaimed: number;
}

/** The daemon's automatic collection (daemon.json: gc-enabled, gc-keep-storage). */
export interface GcPolicy {
  enabled: boolean;
  /** Build cache above this many bytes is pruned, least recently used first (0: no automatic GC). */
  keepStorage: number;
}

/** Unreferenced blobs younger than this are left alone while builds run: one may be writing them. */
const BLOB_GRACE_MS = 10 * 60 * 1000;
/** Largest blob read to see whether it is a manifest or an index. */
const MAX_DOCUMENT_BYTES = 4 << 20;

/** How a record goes away. */
interface Entry {
  record: CacheRecord;
  snapshot?: string;
  layerFiles: string[];
  /** Every blob the record refers to (kept alive while it stays, deleted with it if nothing else refers). */
  refs: Digest[];
  cacheDir?: string;
}

interface Inventory {
  entries: Entry[];
  /** Blobs named images reach: never deleted. */
  imageBlobs: Set<Digest>;
  blobKinds: Map<Digest, 'index' | 'manifest'>;
  /** Deferred blobs by the snapshot they are made from: made before it is removed. */
  deferredBy: Map<string, Digest[]>;
}

// ---- the walker: allocated bytes, each inode once, never across a mount ---------------------------

class Walker {
  private readonly seen = new Set<string>();
  /** Paths whose sizes came from the cache: the final sweep leaves them alone. */
  readonly claimed = new Set<string>();

  constructor(readonly dev: bigint) {}

  /** Bytes allocated by the tree at `p` not already counted; 0 for a missing path or another mount. */
  async walk(p: string): Promise<number> {
    let st;
    try {
      st = await fsp.lstat(p, { bigint: true });
    } catch {
      return 0; // removed meanwhile
    }
    if (st.dev !== this.dev) return 0; // a mount point (a running step's rootfs): not ours to count
    const id = `${st.dev}:${st.ino}`;
    if (this.seen.has(id)) return 0;
    this.seen.add(id);
    let size = Number(st.blocks) * 512;
    if (st.isDirectory() && !this.claimed.has(p)) {
      let names: string[] = [];
      try {
        names = await fsp.readdir(p);
      } catch {
        // vanished or unreadable: count what we saw
      }
      for (const n of names) size += await this.walk(path.join(p, n));
    }
    return size;
  }
}

/** Sizes of committed snapshots, which never change: one walk each per process, not one per du. */
const snapshotSizes = new WeakMap<RootServices, Map<string, { stamp: string; size: number }>>();

async function snapshotSize(s: RootServices, w: Walker, info: SnapshotInfo, dir: string): Promise<number> {
  if (info.kind !== 'committed') return w.walk(dir);
  let cache = snapshotSizes.get(s);
  if (!cache) snapshotSizes.set(s, (cache = new Map()));
  // The directory's mtime moves when overlay adds a flattened lower chain beside fs/.
  const st = await fsp.stat(dir).catch(() => undefined);
  if (!st) return 0;
  const stamp = `${dir}@${st.mtimeMs}`;
  const known = cache.get(info.key);
  if (known && known.stamp === stamp) {
    w.claimed.add(dir);
    await w.walk(dir); // claims the directory inode itself; its contents are skipped
    return known.size;
  }
  const size = await w.walk(dir);
  cache.set(info.key, { stamp, size });
  return size;
}

// ---- finding the records -----------------------------------------------------------------------

function heldNames(held: HeldSnapshots | undefined): Set<string> {
  if (!held) return new Set();
  return new Set(typeof held === 'function' ? held() : held);
}

/** What the solver's builds in progress hold (`Solver.held()`). */
export function solverHeld(s: RootServices): HeldSnapshots {
  return () => s.solver.held();
}

async function readJSONIfSmall<T>(s: RootServices, digest: Digest, size: number): Promise<T | undefined> {
  if (size > MAX_DOCUMENT_BYTES) return undefined;
  try {
    // A look at the first bytes first: layers (gzip, zstd, tar) are never read whole.
    const fh = await fsp.open(s.store.blobPath(digest), 'r');
    try {
      const head = Buffer.alloc(Math.min(size, 64));
      await fh.read(head, 0, head.length, 0);
      if (head.toString('utf8').trimStart()[0] !== '{') return undefined;
    } finally {
      await fh.close();
    }
    return JSON.parse((await s.store.readBuffer(digest)).toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

type Doc = { kind: 'index'; children: Digest[] } | { kind: 'manifest'; config: Digest; layers: Digest[] };

function asDocument(json: unknown): Doc | undefined {
  const j = json as Partial<Index & Manifest> | undefined;
  if (!j || typeof j !== 'object') return undefined;
  if (Array.isArray(j.manifests)) return { kind: 'index', children: j.manifests.map((m) => m.digest).filter((d): d is Digest => typeof d === 'string') };
  if (j.config && typeof j.config.digest === 'string' && Array.isArray(j.layers)) {
    return { kind: 'manifest', config: j.config.digest, layers: j.layers.map((l) => l.digest).filter((d): d is Digest => typeof d === 'string') };
  }
  return undefined;
}

function newRecord(id: string, type: CacheRecord['type'], description: string, fields: Partial<CacheRecord> = {}): CacheRecord {
  return { id, type, description, size: 0, parents: [], shared: false, inUse: false, reclaimable: true, mutable: false, usageCount: 0, ...fields };
}

async function inventory(s: RootServices, held: HeldSnapshots | undefined, now: Date): Promise<Inventory> {
  const { layout } = s;
  await fsp.mkdir(layout.root, { recursive: true });
  const w = new Walker((await fsp.lstat(layout.root, { bigint: true })).dev);
  const entries: Entry[] = [];
  const blobKinds = new Map<Digest, 'index' | 'manifest'>();

  // Content: every blob, and the documents among them.
  const blobs = new Map((await s.store.list()).map((b) => [b.digest, b]));
  const deferredBy = new Map<string, Digest[]>();
  for (const b of blobs.values()) {
    const snapshot = b.deferred && deferredSnapshot(b.deferred.source);
    if (snapshot) deferredBy.set(snapshot, [...(deferredBy.get(snapshot) ?? []), b.digest]);
  }
  const docs = new Map<Digest, Doc>();
  const documentOf = async (d: Digest): Promise<Doc | undefined> => {
    if (docs.has(d)) return docs.get(d);
    const b = blobs.get(d);
    const doc = b ? asDocument(await readJSONIfSmall(s, d, b.size)) : undefined;
    if (doc) {
      docs.set(d, doc);
      blobKinds.set(d, doc.kind);
    }
    return doc;
  };
  const reach = async (root: Digest, out: Set<Digest>): Promise<void> => {
    if (out.has(root)) return;
    out.add(root);
    const doc = await documentOf(root);
    if (doc?.kind === 'index') for (const c of doc.children) await reach(c, out);
    if (doc?.kind === 'manifest') for (const d of [doc.config, ...doc.layers]) out.add(d);
  };

  // 1. Named images: their content is what the image store keeps, never build cache.
  const imageBlobs = new Set<Digest>();
  const byManifest = new Map<Digest, string[]>();
  for (const img of await s.images.list()) {
    const names = byManifest.get(img.manifest.digest) ?? [];
    names.push(img.name);
    byManifest.set(img.manifest.digest, names);
  }
  for (const [manifest, names] of byManifest) {
    const reached = new Set<Digest>();
    await reach(manifest, reached);
    for (const d of reached) imageBlobs.add(d);
    const rec = newRecord(`image-${manifest.slice(7, 19)}`, 'image', `image ${names.join(', ')}`, { reclaimable: false });
    for (const d of reached) if (blobs.has(d)) rec.size += await w.walk(s.store.blobPath(d));
    entries.push({ record: rec, layerFiles: [], refs: [...reached] });
  }

  // 2. Layer records, by snapshot.
  const { bySnapshot: recordFiles, stray: strayFiles } = await listLayerRecords(layout);
  const layerBlobs = new Set<Digest>();
  for (const list of recordFiles.values()) for (const f of list) if (f.digest) layerBlobs.add(f.digest);

  // 3. Snapshots. Held ones, live transient ones (active, views) and everything under them are in use.
  const snapshots = await s.snapshotter.list();
  const known = new Map(snapshots.map((i) => [i.key, i]));
  const inUse = new Set<string>();
  const mark = (key: string | undefined): void => {
    for (let k = key; k !== undefined && !inUse.has(k); k = known.get(k)?.parent) inUse.add(k);
  };
  for (const k of heldNames(held)) mark(k);
  for (const i of snapshots) if (i.kind !== 'committed') mark(i.key);
  const building = inUse.size > 0;
  // When a snapshot or anything built on it was last used: a base image is as recent as its builds.
  const childrenOf = new Map<string, string[]>();
  for (const i of snapshots) if (i.parent) childrenOf.set(i.parent, [...(childrenOf.get(i.parent) ?? []), i.key]);
  const recent = new Map<string, number>();
  const recentUse = (key: string): number => {
    const memo = recent.get(key);
    if (memo !== undefined) return memo;
    recent.set(key, 0); // guards against a cycle in corrupt metadata
    const i = known.get(key);
    let t = i ? Date.parse(i.lastUsed ?? i.created) || 0 : 0;
    for (const c of childrenOf.get(key) ?? []) t = Math.max(t, recentUse(c));
    recent.set(key, t);
    return t;
  };

  // Which records refer to each layer blob: an unnamed export's manifest stands on those steps.
  const referrers = new Map<Digest, string[]>();
  const refer = (d: Digest, id: string) => referrers.set(d, [...(referrers.get(d) ?? []), id]);
  const snapshotEntries: Entry[] = [];
  for (const info of snapshots) {
    let dir: string;
    try {
      dir = await s.snapshotter.location(info.key);
    } catch {
      continue; // removed meanwhile
    }
    const isBase = isBaseLayerSnapshot(info.key);
    const transient = info.kind !== 'committed';
    const rec = newRecord(
      info.key,
      isBase ? 'internal' : 'regular',
      transient
        ? `${info.kind} snapshot (a running build's)`
        : isBase
          ? `unpacked base image layer ${info.key.slice(6, 18)}`
          : (info.labels['kiln.description'] ?? 'build step'),
      {
        parents: info.parent ? [info.parent] : [],
        inUse: inUse.has(info.key),
        reclaimable: !transient,
        mutable: info.kind === 'active',
        createdAt: info.created,
        ...(info.lastUsed ? { lastUsedAt: info.lastUsed } : {}),
        usageCount: info.usageCount ?? 0,
      },
    );
    rec.size = await snapshotSize(s, w, info, dir);
    const files = recordFiles.get(info.key) ?? [];
    recordFiles.delete(info.key);
    const refs: Digest[] = [];
    for (const f of files) {
      rec.size += await w.walk(f.file);
      if (!f.digest) continue;
      refs.push(f.digest);
      refer(f.digest, rec.id);
      if (imageBlobs.has(f.digest)) rec.shared = true;
      else if (blobs.has(f.digest)) rec.size += await w.walk(s.store.blobPath(f.digest));
    }
    const entry: Entry = { record: rec, snapshot: info.key, layerFiles: files.map((f) => f.file), refs };
    snapshotEntries.push(entry);
    entries.push(entry);
  }
  // Records of snapshots that are gone (a prune killed between its steps, or a record written late).
  for (const [snapshot, files] of recordFiles) {
    // biome-ignore lint/complexity/useMathMinMax: Dates, not numbers: Math.max would give a number
    const last = files.reduce((t, f) => (f.mtime > t ? f.mtime : t), new Date(0));
    const rec = newRecord(`record-${snapshot}`, 'regular', `layer record of removed snapshot ${snapshot}`, { createdAt: last.toISOString() });
    const refs: Digest[] = [];
    for (const f of files) {
      rec.size += await w.walk(f.file);
      if (!f.digest) continue;
      refs.push(f.digest);
      refer(f.digest, rec.id);
      if (!imageBlobs.has(f.digest) && blobs.has(f.digest)) rec.size += await w.walk(s.store.blobPath(f.digest));
    }
    entries.push({ record: rec, layerFiles: files.map((f) => f.file), refs });
  }

  // 4. Manifests no name points at: pulled bases (internal) and exported but unnamed images (build
  // cache: they refer to steps' layers). Indexes first, so a manifest an index lists joins its group.
  const claimed = new Set<Digest>([...imageBlobs, ...layerBlobs]);
  const loose = [...blobs.keys()].filter((d) => !claimed.has(d));
  for (const d of loose) await documentOf(d);
  const listed = new Set<Digest>();
  for (const d of loose) {
    const doc = docs.get(d);
    if (doc?.kind === 'index') for (const c of doc.children) listed.add(c);
  }
  const groups: { root: Digest; group: Set<Digest>; manifests: Extract<Doc, { kind: 'manifest' }>[]; exported: boolean }[] = [];
  for (const root of loose.filter((d) => docs.has(d) && !listed.has(d))) {
    const group = new Set<Digest>();
    await reach(root, group);
    const manifests = [...group].map((d) => docs.get(d)).filter((doc): doc is Extract<Doc, { kind: 'manifest' }> => doc?.kind === 'manifest');
    groups.push({ root, group, manifests, exported: manifests.some((m) => m.layers.some((l) => layerBlobs.has(l))) });
  }
  // Pulled bases first: a base layer an export also lists is the base's to count, not the export's
  // (removing the export would not free it).
  groups.sort((a, b) => Number(a.exported) - Number(b.exported) || (a.root < b.root ? -1 : 1));
  for (const { root, group, manifests, exported } of groups) {
    let used = blobs.get(root)!.createdAt.getTime();
    // A pulled base is as recently used as its unpacked layers and what was built on them; an
    // export's age is its own (the steps it stands on carry theirs).
    for (const m of exported ? [] : manifests) {
      const config = blobs.get(m.config) ? await readJSONIfSmall<ImageConfig>(s, m.config, blobs.get(m.config)!.size) : undefined;
      const diffIds = config?.rootfs?.diff_ids;
      if (!Array.isArray(diffIds)) continue;
      for (const c of chainIds(diffIds)) used = Math.max(used, recentUse(layerSnapshotName(c)));
    }
    const kind = docs.get(root)!.kind;
    // An exported manifest goes before the steps whose layers it lists: it refers to their blobs,
    // so their removal frees those only once it is gone (and its age counts as their use).
    const parents = new Set<string>();
    for (const m of manifests) for (const l of m.layers) for (const id of referrers.get(l) ?? []) parents.add(id);
    const rec = newRecord(
      `${exported ? 'export' : 'pulled'}-${root.slice(7, 19)}`,
      exported ? 'regular' : 'internal',
      exported ? `unnamed exported image ${root}` : `pulled image ${kind} ${root}`,
      { createdAt: new Date(used).toISOString(), parents: [...parents].sort() },
    );
    for (const d of group) if (!claimed.has(d) && blobs.has(d)) rec.size += await w.walk(s.store.blobPath(d));
    for (const d of group) claimed.add(d);
    // An export in progress writes its manifest before naming it: the steps it stands on are held
    // then. A pull writes manifests before anything is unpacked from them: recent ones wait.
    if (exported) rec.inUse = rec.parents.some((p) => inUse.has(p));
    else if (building && now.getTime() - blobs.get(root)!.createdAt.getTime() < BLOB_GRACE_MS) rec.inUse = true;
    entries.push({ record: rec, layerFiles: [], refs: [...group] });
  }

  // 5. Blobs nothing refers to (left by a killed prune, or being written by a build right now).
  for (const d of loose) {
    if (claimed.has(d)) continue;
    const b = blobs.get(d)!;
    const young = now.getTime() - b.createdAt.getTime() < BLOB_GRACE_MS;
    const rec = newRecord(`blob-${d.slice(7, 19)}`, 'regular', `unreferenced blob ${d}`, {
      createdAt: b.createdAt.toISOString(),
      inUse: building && young,
    });
    rec.size = await w.walk(s.store.blobPath(d));
    entries.push({ record: rec, layerFiles: [], refs: [d] });
  }

  // 6. Cache mounts: last used when a RUN last mounted one (the directory's times).
  for (const { name, dir } of await listCacheMounts(layout)) {
    const st = await fsp.stat(dir).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const rec = newRecord(`cachemount-${name.slice(0, 12)}`, 'exec.cachemount', `cache mount ${name}`, {
      createdAt: new Date(Math.max(st.mtimeMs, st.atimeMs)).toISOString(),
      // A cache mount is shared by every build naming its id; while one runs, leave them all be.
      inUse: building,
    });
    rec.size = await w.walk(dir);
    entries.push({ record: rec, layerFiles: [], refs: [], cacheDir: dir });
  }

  // 7. Temporary files: a running build's, or a killed one's (removed when the root is next opened).
  const tmp = newRecord('tmp', 'tmp', 'temporary files (cleared when the root is opened)', { reclaimable: false });
  tmp.size += await w.walk(layout.tmp);
  tmp.size += await w.walk(s.store.ingestDir);
  for (const f of strayFiles) tmp.size += await w.walk(f);
  // Orphan snapshot directories (none a snapshot's, and the walker counts an inode once anyway):
  // swept by the snapshotter's cleanup() when the root is opened.
  for (const dir of await s.snapshotter.strayDirs()) tmp.size += await w.walk(dir);
  entries.push({ record: tmp, layerFiles: [], refs: [] });

  // 8. Everything else: the directories themselves, snapshot metadata, images.json, locks, runc state.
  const meta = newRecord('metadata', 'metadata', 'metadata (snapshot and image records, locks, container state)', { reclaimable: false });
  meta.size = await w.walk(layout.root);
  entries.push({ record: meta, layerFiles: [], refs: [] });

  return { entries, imageBlobs, blobKinds, deferredBy };
}

// ---- the three entry points --------------------------------------------------------------------

/** Serialises collections on one root: two prunes planning from one inventory would race. */
const running = new WeakMap<RootServices, Promise<unknown>>();

function serial<T>(s: RootServices, fn: () => Promise<T>): Promise<T> {
  const prev = running.get(s) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  running.set(
    s,
    next.catch(() => undefined),
  );
  return next;
}

/** Every record on the root with its size, and the totals. */
export async function diskUsage(s: RootServices, held: HeldSnapshots = solverHeld(s), now: Date = new Date()): Promise<DiskUsage> {
  const inv = await inventory(s, held, now);
  const records = inv.entries.map((e) => e.record);
  return { records, totals: summarize(records), cacheSize: cacheSize(records) };
}

/** Removes build cache as `docker builder prune` would (see cache/gc.ts for which records). */
export function prune(s: RootServices, opts: PruneOptions = {}, held: HeldSnapshots = solverHeld(s)): Promise<PruneReport> {
  return serial(s, () => pruneNow(s, opts, held));
}

/**
 * The automatic policy: when the build cache is above `policy.keepStorage`, prunes it down to that
 * size, least recently used first, everything but what `held` holds (and named images) eligible.
 * Resolves undefined when there was nothing to do.
 */
export function maybeCollect(s: RootServices, held: HeldSnapshots, policy: GcPolicy, now: Date = new Date()): Promise<PruneReport | undefined> {
  if (!policy.enabled || policy.keepStorage <= 0) return Promise.resolve(undefined);
  return serial(s, async () => {
    const report = await pruneNow(s, { all: true, keepStorage: policy.keepStorage, now }, held);
    return report.deleted.length ? report : undefined;
  });
}

async function pruneNow(s: RootServices, opts: PruneOptions, held: HeldSnapshots): Promise<PruneReport> {
  const now = opts.now ?? new Date();
  const inv = await inventory(s, held, now);
  const filter: PruneFilter = {
    all: opts.all ?? false,
    keepStorage: opts.keepStorage ?? 0,
    ...(opts.unusedForMs !== undefined ? { unusedForMs: opts.unusedForMs } : {}),
  };
  const plan = planPrune(
    inv.entries.map((e) => e.record),
    filter,
    now,
  );
  const byId = new Map(inv.entries.map((e) => [e.record.id, e]));
  const isHeld = (name: string) => heldNames(held).has(name);

  // A snapshot a build picked up since the inventory stays, and so does every record under it.
  const going: Entry[] = [];
  const skipped = new Set<string>();
  for (const r of plan) {
    const e = byId.get(r.id)!;
    if (e.snapshot && isHeld(e.snapshot)) {
      for (let k: string | undefined = e.snapshot; k; k = byId.get(k)?.record.parents[0]) skipped.add(k);
    }
  }
  for (const r of plan) if (!skipped.has(r.id)) going.push(byId.get(r.id)!);

  // 1. Records.
  for (const e of going) {
    for (const f of e.layerFiles) await fsp.rm(f, { force: true });
    if (e.snapshot) forgetLayers(s, e.snapshot);
  }

  // 2. Blobs nothing kept refers to: documents first, so no manifest points at a missing blob.
  const goingIds = new Set(going.map((e) => e.record.id));
  const kept = new Set<Digest>(inv.imageBlobs);
  for (const e of inv.entries) if (!goingIds.has(e.record.id)) for (const d of e.refs) kept.add(d);
  const doomed = new Set<Digest>();
  for (const e of going) for (const d of e.refs) if (!kept.has(d)) doomed.add(d);
  const rank = (d: Digest) => (inv.blobKinds.get(d) === 'index' ? 0 : inv.blobKinds.get(d) === 'manifest' ? 1 : 2);
  for (const d of [...doomed].sort((a, b) => rank(a) - rank(b))) {
    // A build that took up one of these steps since may be exporting it right now (and a diff
    // recomputed from the snapshot yields the very same digest): its blobs stay.
    const current = heldNames(held);
    if (going.some((e) => e.snapshot && current.has(e.snapshot) && e.refs.includes(d))) continue;
    await s.store.delete(d);
  }

  // 3. Snapshots, children first (the plan's order), and cache mounts.
  const deleted: CacheRecord[] = [];
  for (const e of going) {
    if (e.snapshot) {
      // Checked and removed in one turn of the event loop: the removal queues in the snapshotter
      // before any lookup a build starts after this check.
      if (isHeld(e.snapshot)) continue;
      // Blobs deferred to it that stay (a named image's layers) are made first; one that cannot be
      // made keeps the snapshot.
      if (!(await materializeAll(s, inv.deferredBy.get(e.snapshot) ?? []))) continue;
      if (isHeld(e.snapshot)) continue;
      try {
        await s.snapshotter.remove(e.snapshot);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'in-use' || code === 'not-found') continue; // a build made a child meanwhile, or it is gone
        throw err;
      }
    } else if (e.cacheDir) {
      // A build that started since may have mounted it: cache mounts wait for a quiet moment.
      if (heldNames(held).size > 0) continue;
      await fsp.mkdir(s.layout.tmp, { recursive: true });
      const doomedDir = path.join(s.layout.tmp, uniqueKey('gc-cachemount'));
      try {
        await fsp.rename(e.cacheDir, doomedDir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      await fsp.rm(doomedDir, { recursive: true, force: true });
    }
    deleted.push(e.record);
  }
  return { deleted, reclaimed: deleted.reduce((n, r) => n + r.size, 0) };
}

/** Makes deferred blobs still there (a removed one is fine); false when one could not be made. */
async function materializeAll(s: RootServices, digests: readonly Digest[]): Promise<boolean> {
  for (const d of digests) {
    try {
      await s.store.materialize(d);
    } catch (err) {
      process.emitWarning(`prune: keeping a build step whose layer ${d} could not be written: ${(err as Error).message}`, 'KilnGc');
      return false;
    }
  }
  return true;
}

/** Drops the solver's memory of a snapshot's layers, so a rebuild diffs it anew. */
function forgetLayers(s: RootServices, snapshot: string): void {
  s.solver.layers.forget(snapshot);
}
