// kiln's exportable build cache, as an OCI image manifest any registry (or an OCI layout directory)
// stores: the manifest's config is a list of cache records, its layers are the records' layer blobs
// and the contents of cache mounts. Importing reads this config only; a layer is fetched when a step
// that needs it would otherwise run.
//
// A record names a step's snapshot by its cache key ("step-<key>") and the snapshot it applies on
// (the previous step's, or a base image layer chain's "layer-<chainID>"). Keys are built from
// content only (manifest digests, file checksums, definitions), so they mean the same on every machine.

import type { Descriptor } from '../oci/index.js';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.kiln.cache.config.v1+json';
/** Where the records sit inside an image config for inline cache (as BuildKit's moby.buildkit.cache.v0). */
export const INLINE_CACHE_KEY = 'kiln.cache.v1';

export interface CacheLayer {
  digest: string;
  size: number;
  mediaType: string;
  diffId: string;
}

export interface CacheRecord {
  snapshot: string;
  /** The snapshot this one applies on; absent for a step on scratch. */
  parent?: string;
  /** Absent when the step changed nothing. */
  layer?: CacheLayer;
  /** When the step was first built: history dates (and so image IDs) stay the same on import. */
  created: string;
}

export interface CacheMountExport {
  id: string;
  layer: Omit<CacheLayer, 'diffId'> & { diffId?: string };
}

export interface CacheConfig {
  records: CacheRecord[];
  cacheMounts?: CacheMountExport[];
}

const STEP_NAME = /^step-[0-9a-f]{64}$/;
const LAYER_NAME = /^layer-[0-9a-f]{64}$/;

/** Checks an imported config: names must be kiln's, digests valid; anything else is refused. */
export function parseCacheConfig(value: unknown, source: string): CacheConfig {
  const fail = (why: string): never => {
    throw new Error(`cache ${source}: ${why}`);
  };
  if (!value || typeof value !== 'object' || !Array.isArray((value as CacheConfig).records)) fail('not a kiln cache (no records)');
  const cfg = value as CacheConfig;
  const digest = /^sha256:[0-9a-f]{64}$/;
  for (const r of cfg.records) {
    if (typeof r.snapshot !== 'string' || !STEP_NAME.test(r.snapshot)) fail(`bad record name ${JSON.stringify(r.snapshot)}`);
    if (r.parent !== undefined && (typeof r.parent !== 'string' || !(STEP_NAME.test(r.parent) || LAYER_NAME.test(r.parent))))
      fail(`bad parent ${JSON.stringify(r.parent)}`);
    if (r.layer && (!digest.test(r.layer.digest) || !digest.test(r.layer.diffId) || !Number.isSafeInteger(r.layer.size))) fail(`bad layer in ${r.snapshot}`);
    if (typeof r.created !== 'string') fail(`bad date in ${r.snapshot}`);
  }
  for (const m of cfg.cacheMounts ?? []) {
    if (typeof m.id !== 'string' || !digest.test(m.layer?.digest ?? '')) fail('bad cache mount entry');
  }
  return cfg;
}

export function layerDescriptor(l: Omit<CacheLayer, 'diffId'>): Descriptor {
  return { mediaType: l.mediaType, digest: l.digest as Descriptor['digest'], size: l.size };
}
