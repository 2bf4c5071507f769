// The outputs of a multi-platform build: one image per platform under an OCI image index (kiln's
// store, a push, an OCI layout), or one directory per platform (local, tar), as BuildKit's exporters
// write them. The docker form is refused: `docker load` (Docker 20.10's store) cannot take an index.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { CacheConfig } from '../cache/cache-manifest.js';
import { epochDate } from '../frontend/index.js';
import { indexArchive, writeFileAtomic, type StoredIndex } from '../image/exporter/archive.js';
import { exportLocal, exportTar } from '../image/exporter/filesystem.js';
import { storeImage, type StoredImage } from '../image/exporter/manifest.js';
import { familiarString, parseReference } from '../image/reference.js';
import { formatPlatform, MediaType, normalizePlatform, type Descriptor, type Index, type Platform } from '../oci/index.js';
import type { Compression } from '../snapshotter/index.js';
import { assemble, normalise, type ExportDeps, type ExportOutput, type ExportResult } from './export.js';
import { Recompressor } from './image-output.js';
import { mountView, uniqueKey, withScope } from './mounted.js';
import type { ProgressTracker } from './progress.js';
import type { SolveResult } from './solver.js';

export interface PlatformResult {
  platform: Platform;
  result: SolveResult;
}

/** BuildKit's words, so scripts that look for them find them. */
export const MULTI_PLATFORM_DOCKER_ERROR = 'docker exporter does not currently support exporting manifest lists';

/**
 * Why these outputs cannot take a multi-platform result, or undefined. Checked before anything is
 * built, so a build that can only fail at the end does not run first.
 */
export function refuseMultiPlatform(outputs: readonly ExportOutput[], platforms: readonly Platform[]): string | undefined {
  if (!outputs.some((o) => o.type === 'docker')) return undefined;
  return (
    `${MULTI_PLATFORM_DOCKER_ERROR} (--platform ${platforms.map(formatPlatform).join(',')}): ` +
    'docker load takes one platform; build one --platform for type=docker/--load, or use type=oci or --push for all of them'
  );
}

/** The directory of a platform in a local or tar export: "linux_amd64", "linux_arm_v7". */
export function platformDir(p: Platform): string {
  return formatPlatform(p).replaceAll('/', '_');
}

/** The platform fields of an index entry, as BuildKit writes them. */
function indexPlatform(p: Platform): Platform {
  const n = normalizePlatform(p);
  return n.variant ? { architecture: n.architecture, os: n.os, variant: n.variant } : { architecture: n.architecture, os: n.os };
}

export async function exportPlatforms(
  results: PlatformResult[],
  outputs: ExportOutput[],
  labels: Record<string, string>,
  deps: ExportDeps,
  progress: ProgressTracker,
  /** Inline cache (--cache-to type=inline): each platform's image carries its own records. */
  inlineCache?: (result: SolveResult) => Promise<CacheConfig>,
): Promise<ExportResult & { platforms: string[] }> {
  const refused = refuseMultiPlatform(
    outputs,
    results.map((r) => r.platform),
  );
  if (refused) throw new Error(refused);

  const indexes = new Map<Compression, Promise<StoredIndex>>();
  const indexFor = (c: Compression) => {
    let p = indexes.get(c);
    if (!p) indexes.set(c, (p = storeIndex(results, c, labels, deps, inlineCache)));
    return p;
  };

  const primary: StoredIndex = await progress.step('exporting layers', () => indexFor(compressionOf(outputs)));
  const pushed: Record<string, string> = {};
  const allNames: string[] = [];
  // SOURCE_DATE_EPOCH: the same for every platform (it is a build argument).
  const epoch = results[0]!.result.graph.sourceDateEpoch;
  const created = epoch !== undefined ? epochDate(epoch) : undefined;
  for (const out of outputs) {
    await progress.step(describe(out), async (v) => {
      switch (out.type) {
        case 'image': {
          const idx = await indexFor(out.compression ?? 'gzip');
          const names = out.names.map(normalise);
          allNames.push(...names);
          const size = idx.images.reduce((s, i) => s + i.layers.reduce((n, l) => n + l.size, 0), 0);
          // An index has no single config: the record keeps the index digest there, as `kiln load` does.
          const created = results[0]!.result.started.toISOString();
          await deps.images.put(names.map((name) => ({ name, manifest: idx.index, config: idx.index.digest, size, created })));
          if (out.push) {
            for (const name of names) {
              const r = await deps.registry.push(name, idx.index, deps.store);
              pushed[name] = r.digest;
              v.log('stdout', `pushed ${name}@${r.digest}\n`);
            }
          }
          break;
        }
        case 'oci': {
          const idx = await indexFor(out.compression ?? 'gzip');
          const names = out.names.map((n) => ({ full: normalise(n), familiar: familiarString(parseReference(n)) }));
          await writeFileAtomic(out.dest, indexArchive(deps.store, idx, { names, created }));
          break;
        }
        case 'local':
          for (const { platform, result } of results)
            await exportFilesystem(result, deps, (rootfs) => exportLocal(rootfs, path.join(out.dest, platformDir(platform)), { epoch }));
          break;
        case 'tar':
          await exportTarPlatforms(results, out.dest, deps, epoch);
          break;
        case 'docker':
          throw new Error(MULTI_PLATFORM_DOCKER_ERROR); // refused above; kept for the type checker
      }
    });
  }
  const digest = primary.index.digest;
  return { configDigest: digest, manifestDigest: digest, names: allNames, pushed, platforms: results.map((r) => formatPlatform(r.platform)) };
}

/** Each platform's image (layers, config, manifest) and the index over them, in the store. */
async function storeIndex(
  results: PlatformResult[],
  compression: Compression,
  labels: Record<string, string>,
  deps: ExportDeps,
  inlineCache?: (result: SolveResult) => Promise<CacheConfig>,
): Promise<StoredIndex> {
  // Platforms one after the other: each assembly already computes its layers side by side. An
  // uncompressed base layer (a kiln-built base kept in the store) is compressed as in export.ts.
  const images: StoredImage[] = [];
  const recompress = new Recompressor(deps.store, deps.layout.tmp);
  for (const { result } of results) {
    const a = await assemble(result, compression, labels, deps.snapshotter, recompress, await inlineCache?.(result));
    images.push(await storeImage(deps.store, a.config, a.layers, 'oci'));
  }
  const manifests: Descriptor[] = images.map((img, i) => ({
    mediaType: img.manifest.mediaType,
    digest: img.manifest.digest,
    size: img.manifest.size,
    platform: indexPlatform(results[i]!.platform),
  }));
  const index: Index = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
  const desc = await deps.store.ingest(undefined, JSON.stringify(index), MediaType.ociIndex);
  return { index: { mediaType: MediaType.ociIndex, digest: desc.digest, size: desc.size }, images };
}

async function exportFilesystem(result: SolveResult, deps: ExportDeps, write: (rootfs: string) => Promise<void>): Promise<void> {
  const snapshot = await result.target.snapshot();
  await withScope(async (scope) => write(await mountView(scope, deps.snapshotter, deps.layout.tmp, snapshot)));
}

/** One tarball holding each platform's filesystem under its directory, as BuildKit's tar exporter. */
async function exportTarPlatforms(results: PlatformResult[], dest: string, deps: ExportDeps, epoch: number | undefined): Promise<void> {
  // The platforms' filesystems are copied side by side into a staging directory (reflinks where the
  // file system has them), then archived in one pass.
  const staging = path.join(deps.layout.tmp, uniqueKey('tar-platforms'));
  await fsp.mkdir(staging, { recursive: true, mode: 0o755 });
  try {
    for (const { platform, result } of results)
      await exportFilesystem(result, deps, (rootfs) => exportLocal(rootfs, path.join(staging, platformDir(platform)), { epoch }));
    await exportTar(staging, dest, { epoch });
  } finally {
    await fsp.rm(staging, { recursive: true, force: true });
  }
}

function compressionOf(outputs: ExportOutput[]): Compression {
  for (const o of outputs) if ('compression' in o && o.compression) return o.compression;
  return 'gzip';
}

function describe(out: ExportOutput): string {
  switch (out.type) {
    case 'image':
      return `exporting manifest list to image${out.names.length ? ` ${out.names.join(', ')}` : ''}${out.push ? ' (push)' : ''}`;
    case 'oci':
      return `exporting to oci image format ${out.dest} (image index)`;
    case 'local':
      return `copying files to ${out.dest} (one directory per platform)`;
    case 'tar':
      return `sending tarball to ${out.dest} (one directory per platform)`;
    case 'docker':
      return 'exporting to docker image format';
  }
}
