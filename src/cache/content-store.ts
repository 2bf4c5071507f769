// The content store: immutable blobs named by digest, laid out like containerd's
// (`<root>/blobs/sha256/<hex>`). Writes go to a private temporary file under `<root>/ingest/`, are
// hashed while written, checked against the expected digest and size, fsynced and then renamed into
// place. A blob therefore appears under its digest name whole or not at all: a process killed
// mid-write leaves only a temporary file, which cleanupIngest() removes later.

import { createReadStream } from 'node:fs';
import { processAlive } from '../fsutil/process.js';
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { type Descriptor, type Digest, Sha256Hasher, digestFromHex, digestHex, parseDigest } from '../oci/index.js';

export interface ContentInfo {
  digest: Digest;
  size: number;
  /** Modification time of the blob file: when it was ingested. */
  createdAt: Date;
}

/** What a caller knows of a blob before writing it; size is optional but bounds the write. */
export interface ExpectedContent {
  digest: Digest;
  size?: number;
  mediaType?: string;
  annotations?: Record<string, string>;
}

export type ContentSource = AsyncIterable<Uint8Array> | Uint8Array | string;

export class ContentNotFoundError extends Error {
  constructor(
    readonly digest: Digest,
    readonly root: string,
  ) {
    super(`content ${digest} not found in content store ${root}`);
    this.name = 'ContentNotFoundError';
  }
}

export class ContentMismatchError extends Error {
  constructor(
    readonly expected: { digest: Digest; size?: number },
    readonly actual: { digest?: Digest; size: number },
    detail: string,
  ) {
    super(detail);
    this.name = 'ContentMismatchError';
  }
}

const DEFAULT_MEDIA_TYPE = 'application/octet-stream';
/** Temporary ingest files older than this are presumed abandoned even if their PID is alive. */
const DEFAULT_STALE_MS = 24 * 60 * 60 * 1000;

export class ContentStore {
  readonly root: string;
  private readonly blobDir: string;
  /** Where writes in progress live (a killed one's files are removed by cleanupIngest). */
  readonly ingestDir: string;
  private ready?: Promise<void>;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.blobDir = path.join(this.root, 'blobs', 'sha256');
    this.ingestDir = path.join(this.root, 'ingest');
  }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      await fsp.mkdir(this.blobDir, { recursive: true });
      await fsp.mkdir(this.ingestDir, { recursive: true });
    })();
    return this.ready;
  }

  /** The file of a blob. The digest is validated first, so the path never leaves the store. */
  blobPath(digest: Digest | string): string {
    return path.join(this.blobDir, digestHex(parseDigest(digest, `content store ${this.root}`)));
  }

  async has(digest: Digest): Promise<boolean> {
    return (await this.info(digest)) !== undefined;
  }

  async info(digest: Digest): Promise<ContentInfo | undefined> {
    try {
      const st = await fsp.stat(this.blobPath(digest));
      return st.isFile() ? { digest, size: st.size, createdAt: st.mtime } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Opens a blob for reading; rejects with ContentNotFoundError if it is absent. */
  async readStream(digest: Digest, opts: { start?: number; end?: number } = {}): Promise<Readable> {
    const p = this.blobPath(digest);
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(p, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ContentNotFoundError(digest, this.root);
      throw err;
    }
    // Opening first means a missing blob is an error here, not an 'error' event later.
    return createReadStream(p, { fd: fh, start: opts.start, end: opts.end, autoClose: true });
  }

  async readBuffer(digest: Digest): Promise<Buffer> {
    try {
      return await fsp.readFile(this.blobPath(digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ContentNotFoundError(digest, this.root);
      throw err;
    }
  }

  async readJSON<T>(digest: Digest): Promise<T> {
    const buf = await this.readBuffer(digest);
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch (err) {
      throw new Error(`content ${digest} in ${this.root} is not valid JSON: ${(err as Error).message}`);
    }
  }

  /**
   * Writes a blob. With `expected`, the content must hash to expected.digest (and have expected.size
   * bytes when given: the write stops as soon as it grows past it); if that blob is already present
   * the source is not read (a Readable source is destroyed) and the existing blob is kept. Without
   * `expected`, the digest is whatever the content hashes to. Concurrent ingests of one digest are
   * safe: each writes its own temporary file and the renames replace like with like.
   */
  async ingest(expected: ExpectedContent | Descriptor | undefined, source: ContentSource, mediaType?: string): Promise<Descriptor> {
    // A file stream opens its file at once: if that fails while this store is still getting ready
    // (or decides not to read it), the error must have a listener. Reading the stream reports its
    // errors through the iterator as before.
    (source as { on?: (event: 'error', fn: () => void) => void }).on?.('error', () => undefined);
    try {
      return await this.write(expected, source, mediaType);
    } catch (err) {
      // A stream refused before it was read (a bad digest, the store gone) is closed.
      destroySource(source);
      throw err;
    }
  }

  private async write(expected: ExpectedContent | Descriptor | undefined, source: ContentSource, mediaType?: string): Promise<Descriptor> {
    await this.init();
    const mt = mediaType ?? expected?.mediaType ?? DEFAULT_MEDIA_TYPE;
    if (!expected && typeof source !== 'object') source = Buffer.from(source, 'utf8');
    if (!expected && source instanceof Uint8Array) {
      // Content in memory (a config, a manifest) is hashed first: a rebuild writes the same JSON
      // again, and finding the blob present spares a temporary file, two fsyncs and a rename.
      const h = new Sha256Hasher();
      h.update(source);
      expected = { digest: h.digest(), size: source.length };
    }
    if (expected) {
      parseDigest(expected.digest, 'ingest');
      if (expected.size !== undefined && (!Number.isSafeInteger(expected.size) || expected.size < 0)) {
        throw new Error(`ingest ${expected.digest}: invalid expected size ${expected.size}`);
      }
      const have = await this.info(expected.digest);
      if (have) {
        destroySource(source);
        if (expected.size !== undefined && have.size !== expected.size) {
          throw new ContentMismatchError(
            expected,
            { digest: expected.digest, size: have.size },
            `ingest ${expected.digest}: stored blob has ${have.size} bytes, expected ${expected.size}`,
          );
        }
        return descriptor(expected.digest, have.size, mt, expected.annotations);
      }
    }

    const tmp = path.join(this.ingestDir, `${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
    const hasher = new Sha256Hasher();
    const fh = await fsp.open(tmp, 'wx', 0o644);
    let renamed = false;
    try {
      try {
        for await (const chunk of chunks(source)) {
          hasher.update(chunk);
          if (expected?.size !== undefined && hasher.size > expected.size) {
            throw new ContentMismatchError(
              expected,
              { size: hasher.size },
              `ingest ${expected.digest}: content is longer than the expected ${expected.size} bytes`,
            );
          }
          await writeAll(fh, chunk);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const digest = hasher.digest();
      const size = hasher.size;
      if (expected) {
        if (expected.size !== undefined && size !== expected.size) {
          throw new ContentMismatchError(expected, { digest, size }, `ingest ${expected.digest}: got ${size} bytes, expected ${expected.size}`);
        }
        if (digest !== expected.digest) {
          throw new ContentMismatchError(expected, { digest, size }, `ingest ${expected.digest}: content hashes to ${digest} (digest mismatch)`);
        }
      }
      await fsp.rename(tmp, this.blobPath(digest));
      renamed = true;
      await syncDir(this.blobDir);
      return descriptor(digest, size, mt, expected?.annotations);
    } finally {
      if (!renamed) await fsp.rm(tmp, { force: true });
    }
  }

  /**
   * Moves a file this process wrote, and hashed as it wrote it, into the store: a layer blob of
   * hundreds of megabytes is renamed into place rather than read, hashed and written a second time.
   * The caller vouches for the digest (never pass a file from elsewhere); the size is checked. The
   * file is gone afterwards, whether it was moved or the blob was already present.
   */
  async adopt(blob: { digest: Digest; size: number }, file: string, mediaType?: string): Promise<Descriptor> {
    await this.init();
    parseDigest(blob.digest, 'adopt');
    const mt = mediaType ?? DEFAULT_MEDIA_TYPE;
    const have = await this.info(blob.digest);
    if (have && have.size === blob.size) {
      await fsp.rm(file, { force: true });
      return descriptor(blob.digest, have.size, mt);
    }
    const fh = await fsp.open(file, 'r+');
    try {
      const size = (await fh.stat()).size;
      if (size !== blob.size) throw new ContentMismatchError(blob, { size }, `adopt ${blob.digest}: ${file} has ${size} bytes, expected ${blob.size}`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fsp.rename(file, this.blobPath(blob.digest));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
      // Another file system: copy through ingest, which hashes what it writes.
      const d = await this.ingest(blob, createReadStream(file), mt);
      await fsp.rm(file, { force: true });
      return d;
    }
    await syncDir(this.blobDir);
    return descriptor(blob.digest, blob.size, mt);
  }

  /** Removes a blob; false if it was not there. */
  async delete(digest: Digest): Promise<boolean> {
    try {
      await fsp.unlink(this.blobPath(digest));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** Every blob in the store. Files whose names are not digests (strays) are ignored. */
  async list(): Promise<ContentInfo[]> {
    await this.init();
    const out: ContentInfo[] = [];
    for (const name of await fsp.readdir(this.blobDir)) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const digest = digestFromHex(name);
      const info = await this.info(digest);
      if (info) out.push(info);
    }
    return out.sort((a, b) => (a.digest < b.digest ? -1 : 1));
  }

  /**
   * Removes abandoned temporary files: those of processes that no longer exist, and any older than
   * `olderThanMs`. Returns how many were removed. Safe to run while this process ingests: its own
   * live files are younger than the age limit and belong to a live PID.
   */
  async cleanupIngest(olderThanMs: number = DEFAULT_STALE_MS): Promise<number> {
    await this.init();
    let removed = 0;
    const now = Date.now();
    for (const name of await fsp.readdir(this.ingestDir)) {
      const p = path.join(this.ingestDir, name);
      const pid = Number(/^(\d+)\./.exec(name)?.[1]);
      let stale = !(pid > 0) || !processAlive(pid);
      if (!stale) {
        try {
          stale = now - (await fsp.stat(p)).mtimeMs > olderThanMs;
        } catch {
          continue;
        }
      }
      if (stale) {
        await fsp.rm(p, { force: true, recursive: true });
        removed++;
      }
    }
    return removed;
  }
}

function descriptor(digest: Digest, size: number, mediaType: string, annotations?: Record<string, string>): Descriptor {
  const d: Descriptor = { mediaType, digest, size };
  if (annotations && Object.keys(annotations).length) d.annotations = annotations;
  return d;
}

async function* chunks(source: ContentSource): AsyncIterable<Uint8Array> {
  if (typeof source === 'string') yield Buffer.from(source, 'utf8');
  else if (source instanceof Uint8Array) yield source;
  else for await (const c of source) yield typeof c === 'string' ? Buffer.from(c) : c;
}

function destroySource(source: ContentSource): void {
  const s = source as { destroy?: () => void };
  if (typeof s.destroy === 'function') s.destroy();
}

async function writeAll(fh: fsp.FileHandle, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
    off += bytesWritten;
  }
}

/** fsync a directory so the rename itself survives a crash. */
async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
