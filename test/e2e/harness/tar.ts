// Reading tar archives for the differential harness, with tar-stream and node's zlib only.
//
// The harness judges kiln's output, so it must not share code with kiln: nothing here imports from
// src/. Archives in the tests are small (busybox) to medium (Debian, ~100 MB), so whole blobs are
// held in memory; that keeps the layer logic simple (whiteouts need two passes over a layer).
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';

/** A tar header as tar-stream parses it, plus the PAX records it saw (xattrs live there). */
export interface TarHeader extends Omit<tarStream.Header, 'pax'> {
  pax?: Record<string, string> | null;
}

export interface TarEntry {
  header: TarHeader;
  body: Buffer;
}

/** Every entry of a tar archive (a file path or an in-memory buffer), bodies read in full. */
export async function readTar(source: string | Buffer, what: string): Promise<TarEntry[]> {
  const extract = tarStream.extract();
  const input = typeof source === 'string' ? createReadStream(source) : Readable.from([source]);
  input.on('error', (e: Error) => extract.destroy(e));
  input.pipe(extract);
  const entries: TarEntry[] = [];
  try {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      entries.push({ header: entry.header as unknown as TarHeader, body: Buffer.concat(chunks) });
    }
  } catch (e) {
    throw new Error(`${what}: not a readable tar archive: ${(e as Error).message}`);
  }
  return entries;
}

export type Compression = 'gzip' | 'zstd' | 'none';

/** What the first bytes say the blob is; layers must agree with their media type. */
export function sniffCompression(buf: Buffer): Compression {
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) return 'gzip';
  if (buf.length >= 4 && buf.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/** The uncompressed bytes of a layer blob. zstd goes through the zstd tool (node 20 has no zstd). */
export function decompress(buf: Buffer, what: string): Buffer {
  switch (sniffCompression(buf)) {
    case 'gzip':
      try {
        return gunzipSync(buf);
      } catch (e) {
        throw new Error(`${what}: corrupt gzip: ${(e as Error).message}`);
      }
    case 'zstd': {
      const r = spawnSync('zstd', ['-dc'], { input: buf, maxBuffer: 4 << 30 });
      if (r.error) throw new Error(`${what}: cannot run zstd to decompress: ${r.error.message}`);
      if (r.status !== 0) throw new Error(`${what}: corrupt zstd: ${r.stderr.toString().trim()}`);
      return r.stdout;
    }
    case 'none':
      return buf;
  }
}
