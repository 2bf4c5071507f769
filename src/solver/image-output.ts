// The options image, docker and oci outputs share, as BuildKit's image writer applies them
// (exporter/containerimage/writer.go, opts.go): layer compression and level, force-compression,
// media types, annotations. Defaults are those of current BuildKit (compatibility version 30, the
// default since v0.31): gzip, OCI media types for all three exporters.

import { createReadStream, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ContentStore } from '../cache/content-store.js';
import { placeAnnotations, unknownAnnotationPlatforms, type AnnotationSpec, type PlacedAnnotations } from '../image/annotations.js';
import { layerCompression, parseDigest, type Descriptor, type Platform } from '../oci/index.js';
import { compressBlob, decompressStages, layerMediaType, type Compression } from '../snapshotter/index.js';
import { uniqueKey } from './mounted.js';

/** The image options of one output, as the request gives them (all optional). */
export interface ImageExportOptions {
  compression?: Compression;
  level?: number;
  force?: boolean;
  /** undefined: the default (OCI). */
  ociTypes?: boolean;
  /** undefined: the default (OCI artifact attestation manifests). */
  ociArtifact?: boolean;
  annotations?: AnnotationSpec[];
}

export interface ResolvedImageOptions {
  compression: Compression;
  level?: number;
  force: boolean;
  /** Uncompressed layers only hashed, their blobs made when read (an image kept in kiln's store). */
  deferLayers?: boolean;
  types: 'oci' | 'docker';
  ociArtifact: boolean;
  annotations: AnnotationSpec[];
}

/**
 * The zstd level kiln compresses with for compression-level N. BuildKit hands N to klauspost/compress,
 * whose EncoderLevelFromZstd knows four speeds (below 3: fastest, below 6: default, below 10:
 * better, else best), roughly zstd's levels 1, 3, 7 and 11; kiln uses the same four steps. The last
 * is 9, not 11: zstd-codec's WebAssembly heap cannot hold the tables of levels 10 and above.
 */
export function effectiveZstdLevel(level: number): number {
  if (level < 3) return 1;
  if (level < 6) return 3;
  if (level < 10) return 7;
  return 9;
}

export function resolveImageOptions(o: ImageExportOptions): ResolvedImageOptions {
  const compression = o.compression ?? 'gzip';
  const level = o.level === undefined || compression === 'none' ? undefined : compression === 'zstd' ? effectiveZstdLevel(o.level) : o.level;
  return {
    compression,
    ...(level !== undefined ? { level } : {}),
    force: o.force ?? false,
    types: o.ociTypes === false ? 'docker' : 'oci',
    ociArtifact: o.ociArtifact ?? true,
    annotations: o.annotations ?? [],
  };
}

/** The key under which two outputs can share an assembled image (same layers, same documents). */
export function layersKey(o: ResolvedImageOptions): string {
  return `${o.compression}/${o.level ?? ''}/${o.force}`;
}

export class ImageOutputError extends Error {}

/**
 * BuildKit's checks of an image output, made before the build runs so a bad combination fails at
 * once (BuildKit makes them at export; the messages are its own).
 */
export function checkImageOutput(o: ImageExportOptions, ctx: { attest: boolean }): void {
  const types = o.ociTypes === false ? 'docker' : 'oci';
  const annotations = o.annotations ?? [];
  if (types === 'docker' && annotations.some((a) => a.type !== 'manifest')) throw new ImageOutputError('cannot export annotations with "oci-mediatypes=false"');
  if (types === 'docker' && ctx.attest) throw new ImageOutputError('cannot export attestations with "oci-mediatypes=false"');
  // A single-platform image without attestations is a manifest alone: there is no index to annotate.
  if (!ctx.attest && annotations.some((a) => a.type === 'index' || a.type === 'index-descriptor')) {
    throw new ImageOutputError('index annotations not supported for single platform export');
  }
}

/**
 * The annotations of each place for an image of `platform`. A platform-specific annotation for a
 * platform the build did not produce is refused (BuildKit: "no platform ... found in source"); this
 * is known only once the image is assembled (FROM --platform can make it other than the request's).
 */
export function annotationsFor(o: ResolvedImageOptions, platform: Platform): PlacedAnnotations {
  const unknown = unknownAnnotationPlatforms(o.annotations, [platform]);
  if (unknown.length) throw new ImageOutputError(`invalid annotation: no platform ${unknown[0]} found in source`);
  return placeAnnotations(o.annotations, platform);
}

/**
 * force-compression: base image layers exist in the compression they were pulled in; BuildKit
 * exports them as they are unless forced, and then converts the ones whose compression differs
 * (a gzip layer stays as it is under compression=gzip, whatever the level). The diff ID is the
 * same: only the compression changes. One conversion per blob and target in this process.
 */
export class Recompressor {
  private readonly done = new Map<string, Promise<Descriptor>>();

  constructor(
    private readonly store: ContentStore,
    private readonly tmp: string,
  ) {}

  convert(layer: Descriptor, to: Compression, level?: number): Promise<Descriptor> {
    const from = layerCompression(layer.mediaType);
    if (from === undefined) throw new Error(`cannot recompress layer ${layer.digest}: unknown media type ${layer.mediaType}`);
    if (from === to) return Promise.resolve(layer);
    const key = `${layer.digest}/${to}/${level ?? ''}`;
    let p = this.done.get(key);
    if (!p) {
      p = this.doConvert(layer, from, to, level);
      this.done.set(key, p);
      p.catch(() => this.done.delete(key));
    }
    return p;
  }

  private async doConvert(layer: Descriptor, from: Compression, to: Compression, level?: number): Promise<Descriptor> {
    await fsp.mkdir(this.tmp, { recursive: true });
    const plain = path.join(this.tmp, uniqueKey('recompress-tar'));
    const packed = path.join(this.tmp, uniqueKey('recompress-blob'));
    try {
      await pipeline([await this.store.readStream(layer.digest), ...(await decompressStages(from)), createWriteStream(plain)]);
      const file = to === 'none' ? plain : packed;
      const expected = to === 'none' ? undefined : await compressBlob(plain, packed, to, level);
      return await this.store.ingest(
        expected ? { digest: parseDigest(expected.digest), size: expected.size } : undefined,
        createReadStream(file),
        layerMediaType(to),
      );
    } catch (err) {
      (err as Error).message = `converting base layer ${layer.digest} to ${to}: ${(err as Error).message}`;
      throw err;
    } finally {
      await fsp.rm(plain, { force: true });
      await fsp.rm(packed, { force: true });
    }
  }
}
