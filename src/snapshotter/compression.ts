// Layer compression: media types, magic-byte detection, and streaming (de)compressors.
// zstd comes from zstd-codec (WebAssembly). Its one-shot API aborts with OOM on large buffers, so only its
// streaming transforms are used, and every chunk handed to them is cut to at most ZSTD_CHUNK bytes.
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { compressFile } from '../workers/index.js';
import type { Compression } from './types.js';

const require = createRequire(import.meta.url);

export const MEDIA_TYPES = {
  oci: {
    none: 'application/vnd.oci.image.layer.v1.tar',
    gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
    zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  },
  docker: {
    none: 'application/vnd.docker.image.rootfs.diff.tar',
    gzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
    // Docker has no zstd media type of its own; the OCI one is what docker/moby accept.
    zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  },
} as const;

export function layerMediaType(compression: Compression, flavor: 'oci' | 'docker' = 'oci'): string {
  return MEDIA_TYPES[flavor][compression];
}

/** The compression a layer media type announces, or undefined when it does not say. */
export function compressionFromMediaType(mediaType: string | undefined): Compression | undefined {
  if (!mediaType) return undefined;
  if (/[+.]gzip$/.test(mediaType)) return 'gzip';
  if (/\+zstd$/.test(mediaType)) return 'zstd';
  if (/(\.|\/)(v1\.)?tar$/.test(mediaType) || mediaType.endsWith('.diff.tar')) return 'none';
  return undefined;
}

/** Detects compression from the first bytes of a blob (at least 4 are needed for zstd). */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

export const ZSTD_CHUNK = 1 << 20;

/** Cuts chunks into pieces of at most `max` bytes (zstd-codec's wasm heap cannot take big ones). */
export class Rechunk extends Transform {
  constructor(private readonly max: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    for (let off = 0; off < chunk.length; off += this.max) this.push(chunk.subarray(off, off + this.max));
    cb();
  }
}

interface ZstdStreams {
  ZstdCompressTransform: new (level?: number) => Transform;
  ZstdDecompressTransform: new () => Transform;
}

let zstdStreams: Promise<ZstdStreams> | undefined;
function loadZstd(): Promise<ZstdStreams> {
  zstdStreams ??= new Promise((resolve, reject) => {
    try {
      const mod = require('zstd-codec/lib/zstd-stream.js') as { run(f: (s: ZstdStreams) => void): void };
      mod.run((s) => resolve(s));
    } catch (err) {
      reject(err);
    }
  });
  return zstdStreams;
}

/** Stages that turn `compression`-compressed bytes into plain bytes (empty for 'none'). */
export async function decompressStages(compression: Compression): Promise<Transform[]> {
  switch (compression) {
    case 'gzip':
      return [zlib.createGunzip()];
    case 'zstd': {
      const z = await loadZstd();
      return [new Rechunk(ZSTD_CHUNK), new z.ZstdDecompressTransform(), new Rechunk(ZSTD_CHUNK)];
    }
    case 'none':
      return [];
  }
}

/** Stages that compress plain bytes (empty for 'none'). */
export async function compressStages(compression: Compression, level?: number): Promise<Transform[]> {
  switch (compression) {
    case 'gzip':
      // A 1 MiB output buffer per call rather than zlib's 16 KiB: a 1 MiB batch of a layer is one round
      // trip to the thread pool. deflate's output does not depend on it.
      return [zlib.createGzip({ level: level ?? 6, chunkSize: 1 << 20 })];
    case 'zstd': {
      const z = await loadZstd();
      return [new Rechunk(ZSTD_CHUNK), new z.ZstdCompressTransform(level ?? 3)];
    }
    case 'none':
      return [];
  }
}

/** Passes bytes through while hashing and counting them. */
export class HashTap extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  /** Only valid once the stream has ended. */
  digest(): string {
    return `sha256:${this.hash.digest('hex')}`;
  }
}

/**
 * Compresses file `src` into file `dest`, returning the blob's digest and size. It is the CPU-heavy
 * part of exporting a layer, so it runs in the worker pool, off the event loop (the worker uses the
 * same stages as compressStages: gzip from zlib, zstd from zstd-codec's stream fed 1 MiB at a time).
 */
export async function compressBlob(src: string, dest: string, compression: Compression, level?: number): Promise<{ digest: string; size: number }> {
  return compressFile(src, dest, compression, level);
}
