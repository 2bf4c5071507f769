// --cache-to and --cache-from: the build cache leaves one kiln root as an OCI layout directory, a
// registry manifest or metadata inside a pushed image (inline), and seeds another root (a fresh CI
// worker) so its build runs no step it can take from there. Importing reads records only; a layer
// blob is fetched when a step that needs it would otherwise run.

import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import {
  CACHE_CONFIG_MEDIA_TYPE,
  INLINE_CACHE_KEY,
  layerDescriptor,
  parseCacheConfig,
  type CacheConfig,
  type CacheMountExport,
  type CacheRecord,
} from '../cache/cache-manifest.js';
import type { ContentStore } from '../cache/content-store.js';
import { epochDate } from '../frontend/index.js';
import { resolveInRoot } from '../fsutil/rootpath.js';
import type { RegistryClient } from '../image/registry/index.js';
import { digestHex, MediaType, parseDigest, type Descriptor, type Index, type Manifest } from '../oci/index.js';
import { applyLayer, compressionFromMediaType, treeChanges, writeLayer, type Snapshotter } from '../snapshotter/index.js';
import type { LayerRecords } from './layers.js';
import { commitActive, uniqueKey } from './mounted.js';
import type { RootLayout } from './state-root.js';
import { replaceFile } from '../util/atomic-file.js';

export type CacheFrom = { type: 'local'; src: string } | { type: 'registry'; ref: string };
export type CacheTo = { type: 'local'; dest: string; mode: 'min' | 'max' } | { type: 'registry'; ref: string; mode: 'min' | 'max' } | { type: 'inline' };

/** The label a snapshot made from imported cache carries: when the step was first built. */
export const CREATED_LABEL = 'kiln.created';

export interface CacheDeps {
  layout: RootLayout;
  store: ContentStore;
  snapshotter: Snapshotter;
  registry: RegistryClient;
  layers: LayerRecords;
}

/** Where an imported record's blobs come from. */
interface BlobSource {
  describe: string;
  fetch(desc: Descriptor): Promise<void>;
}

export class CacheImport {
  private readonly records = new Map<string, { record: CacheRecord; source: BlobSource }>();
  private readonly mounts = new Map<string, { mount: CacheMountExport; source: BlobSource }>();

  private constructor(private readonly deps: CacheDeps) {}

  static async load(sources: CacheFrom[], deps: CacheDeps, signal?: AbortSignal): Promise<CacheImport> {
    const imp = new CacheImport(deps);
    for (const src of sources) {
      const { config, source } = src.type === 'local' ? await readLocal(src.src, deps.store) : await readRegistry(src.ref, deps, signal);
      for (const record of config.records) if (!imp.records.has(record.snapshot)) imp.records.set(record.snapshot, { record, source });
      for (const mount of config.cacheMounts ?? []) if (!imp.mounts.has(mount.id)) imp.mounts.set(mount.id, { mount, source });
    }
    return imp;
  }

  get size(): number {
    return this.records.size;
  }

  /**
   * Makes snapshot `name` from the imported cache on top of `parent`, if a record for it exists and
   * was made on the same parent. Returns false when the step must run instead.
   */
  async materialize(name: string, parent: string | undefined): Promise<boolean> {
    const hit = this.records.get(name);
    if (!hit || hit.record.parent !== parent) return false;
    const { record, source } = hit;
    const { snapshotter, store, layers } = this.deps;
    const key = uniqueKey('import');
    await snapshotter.prepare(key, parent);
    await commitActive(
      snapshotter,
      key,
      name,
      async () => {
        if (!record.layer) return;
        const desc = layerDescriptor(record.layer);
        await source.fetch(desc);
        const applied = await snapshotter.applyLayer(key, await store.readStream(desc.digest), desc.mediaType);
        if (applied.diffID !== record.layer.diffId) {
          throw new Error(`cache ${source.describe}: layer ${desc.digest} of ${name} unpacks to ${applied.diffID}, the record says ${record.layer.diffId}`);
        }
      },
      { labels: { [CREATED_LABEL]: record.created } },
    );
    // Exports reuse the imported blob rather than diffing again (same digest, same image).
    if (record.layer) {
      const compression = compressionFromMediaType(record.layer.mediaType);
      if (compression)
        await layers.remember(name, compression, { empty: false, descriptor: layerDescriptor(record.layer), diffId: parseDigest(record.layer.diffId) });
    } else {
      for (const c of ['gzip', 'zstd', 'none'] as const) await layers.remember(name, c, { empty: true });
    }
    return true;
  }

  /** Fills a cache mount's directory from the imported cache the first time a RUN uses it. */
  async seedCacheMount(id: string, dir: string): Promise<void> {
    const hit = this.mounts.get(id);
    if (!hit) return;
    this.mounts.delete(id); // once per build
    const desc = layerDescriptor(hit.mount.layer);
    await hit.source.fetch(desc);
    await applyLayer(await this.deps.store.readStream(desc.digest), { target: dir, whiteouts: 'delete', mediaType: desc.mediaType });
  }
}

async function readLocal(dir: string, store: ContentStore): Promise<{ config: CacheConfig; source: BlobSource }> {
  const blob = async (digest: string) => resolveInRoot(dir, `blobs/sha256/${digestHex(parseDigest(digest, `cache ${dir}`))}`);
  let index: Index;
  try {
    index = JSON.parse(await fsp.readFile(path.join(dir, 'index.json'), 'utf8')) as Index;
  } catch (err) {
    throw new Error(`cache ${dir}: not a kiln cache directory (${(err as Error).message})`);
  }
  const top = index.manifests?.[0];
  if (!top) throw new Error(`cache ${dir}: index.json lists no manifest`);
  const manifest = JSON.parse(await fsp.readFile(await blob(top.digest), 'utf8')) as Manifest;
  const config = parseCacheConfig(JSON.parse(await fsp.readFile(await blob(manifest.config.digest), 'utf8')), dir);
  return {
    config,
    source: {
      describe: dir,
      fetch: async (desc) => {
        await store.ingest(desc, createReadStream(await blob(desc.digest)));
      },
    },
  };
}

async function readRegistry(ref: string, deps: CacheDeps, signal?: AbortSignal): Promise<{ config: CacheConfig; source: BlobSource }> {
  const r = await deps.registry.resolve(ref, { signal });
  const raw = r.manifest.config.mediaType === CACHE_CONFIG_MEDIA_TYPE ? r.config : (r.config as unknown as Record<string, unknown>)[INLINE_CACHE_KEY];
  if (raw === undefined) throw new Error(`cache ${ref}: neither a kiln cache manifest nor an image with inline kiln cache`);
  return {
    config: parseCacheConfig(raw, ref),
    source: {
      describe: ref,
      fetch: async (desc) => {
        await deps.registry.fetchBlob(ref, desc, deps.store, { signal });
      },
    },
  };
}

/**
 * The records for the given step snapshots (in order), with their layers (computed if need be; with
 * `epoch`, the layers clamped to it and the records dated it, as an image with SOURCE_DATE_EPOCH
 * holds them).
 */
export async function cacheRecords(snapshots: string[], deps: CacheDeps, epoch?: number): Promise<CacheRecord[]> {
  const out: CacheRecord[] = [];
  const seen = new Set<string>();
  for (const name of snapshots) {
    // Steps run with --no-cache have unique names no other build asks for: not worth exporting.
    if (seen.has(name) || !/^step-[0-9a-f]{64}$/.test(name)) continue;
    seen.add(name);
    const info = await deps.snapshotter.stat(name);
    const rec = await deps.layers.get(name, 'gzip', epoch);
    // With an epoch the records ride in a reproducible image: dated the epoch, as its history is.
    const created = epoch !== undefined ? epochDate(epoch) : (info.labels[CREATED_LABEL] ?? info.created);
    const record: CacheRecord = { snapshot: name, created };
    if (info.parent !== undefined) record.parent = info.parent;
    if (!rec.empty) {
      record.layer = { digest: rec.descriptor.digest, size: rec.descriptor.size, mediaType: rec.descriptor.mediaType, diffId: rec.diffId };
    }
    out.push(record);
  }
  return out;
}

/** Cache mounts' current contents as layers in the content store. */
export async function cacheMountLayers(ids: string[], deps: CacheDeps): Promise<CacheMountExport[]> {
  const out: CacheMountExport[] = [];
  for (const id of [...new Set(ids)].sort()) {
    const dir = cacheMountDir(deps.layout, id);
    if (!(await fsp.stat(dir).catch(() => undefined))) continue;
    const dest = path.join(deps.layout.tmp, uniqueKey('cachemount'));
    try {
      const blob = await writeLayer(treeChanges(dir, undefined), { dest, compression: 'gzip' });
      if (blob.empty) continue;
      const desc = await deps.store.ingest({ digest: parseDigest(blob.digest), size: blob.size }, createReadStream(dest), blob.mediaType);
      out.push({ id, layer: { digest: desc.digest, size: desc.size, mediaType: desc.mediaType, diffId: blob.diffID } });
    } finally {
      await fsp.rm(dest, { force: true });
    }
  }
  return out;
}

export function cacheMountDir(layout: RootLayout, id: string): string {
  return path.join(layout.cacheMounts, createHash('sha256').update(id).digest('hex'));
}

/** Every cache mount's directory (named by cacheMountDir), and that name. */
export async function listCacheMounts(layout: RootLayout): Promise<{ name: string; dir: string }[]> {
  const names = await fsp.readdir(layout.cacheMounts).catch(() => [] as string[]);
  return names.map((name) => ({ name, dir: path.join(layout.cacheMounts, name) }));
}

/** Writes the cache to a local directory (an OCI layout) or pushes it to a registry. */
export async function writeCache(to: Exclude<CacheTo, { type: 'inline' }>, config: CacheConfig, deps: CacheDeps, signal?: AbortSignal): Promise<void> {
  const { store } = deps;
  const configDesc = await store.ingest(undefined, JSON.stringify(config), CACHE_CONFIG_MEDIA_TYPE);
  const layers: Descriptor[] = [];
  const seen = new Set<string>();
  for (const l of [...config.records.flatMap((r) => (r.layer ? [r.layer] : [])), ...(config.cacheMounts ?? []).map((m) => m.layer)]) {
    if (seen.has(l.digest)) continue;
    seen.add(l.digest);
    layers.push(layerDescriptor(l));
  }
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: configDesc.mediaType, digest: configDesc.digest, size: configDesc.size },
    layers,
  };
  const manifestDesc = await store.ingest(undefined, JSON.stringify(manifest), MediaType.ociManifest);
  if (to.type === 'registry') {
    await deps.registry.push(to.ref, manifestDesc, store, { signal });
    return;
  }
  const blobs = path.join(to.dest, 'blobs', 'sha256');
  await fsp.mkdir(blobs, { recursive: true });
  for (const d of [configDesc, manifestDesc, ...layers]) {
    const file = path.join(blobs, digestHex(d.digest));
    if (await fsp.stat(file).catch(() => undefined)) continue; // blobs accumulate, as in BuildKit's local cache
    await replaceFile(file, await store.readBuffer(d.digest));
  }
  await fsp.writeFile(path.join(to.dest, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const index: Index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [{ ...manifestDesc, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }],
  };
  await replaceFile(path.join(to.dest, 'index.json'), JSON.stringify(index));
}
