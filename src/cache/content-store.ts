// The content store: immutable blobs named by digest, laid out like containerd's
// (`<root>/blobs/sha256/<hex>`). Writes go to a private temporary file under `<root>/ingest/`, are
// hashed while written, checked against the expected digest and size, fsynced and then renamed into
// place. A blob therefore appears under its digest name whole or not at all: a process killed
// mid-write leaves only a temporary file, which cleanupIngest() removes later.
//
// A blob may also be deferred: its digest and size are known and the store holds a note of how to
// make it (`<root>/deferred/sha256/<hex>`, an opaque source string for the maker the owner of the
// store registers) instead of its bytes. An uncompressed layer of an image that stays in kiln's own
// store is such a blob: its digest is needed for the image ID at once, its bytes only when the image
// is pushed, saved or loaded, as Docker's classic store keeps layers as snapshots and makes their
// tars on demand. Reading a deferred blob makes it (through the maker, verified like an ingest) and
// from then on it is an ordinary blob; `has` and `info` answer for it without making it.

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
  /** Modification time of the blob file: when it was ingested (or deferred). */
  createdAt: Date;
  /** Known by digest and size, its bytes made from `source` when first read (see the file's head). */
  deferred?: { source: string };
}

/**
 * Writes the bytes of a deferred blob, described by the `source` it was deferred with, to the new
 * file `dest`, and says what it wrote (the store checks it against the deferred digest and size).
 */
export type BlobMaker = (source: string, dest: string) => Promise<{ digest: Digest; size: number }>;

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
  private readonly deferDir: string;
  private ready?: Promise<void>;
  private maker?: BlobMaker;
  /** Deferred blobs being made by this process: one making per digest. */
  private readonly making = new Map<Digest, Promise<boolean>>();

  constructor(root: string) {
    this.root = path.resolve(root);
    this.blobDir = path.join(this.root, 'blobs', 'sha256');
    this.ingestDir = path.join(this.root, 'ingest');
    this.deferDir = path.join(this.root, 'deferred', 'sha256');
  }

  /** Registers what makes deferred blobs (the store's owner: it knows what their sources name). */
  setMaker(maker: BlobMaker): void {
    this.maker = maker;
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

  /** A blob's digest, size and age; a deferred blob's too (flagged), without making it. */
  async info(digest: Digest): Promise<ContentInfo | undefined> {
    try {
      const st = await fsp.stat(this.blobPath(digest));
      return st.isFile() ? { digest, size: st.size, createdAt: st.mtime } : undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const note = await this.deferral(digest);
    return note ? { digest, size: note.size, createdAt: note.createdAt, deferred: { source: note.source } } : undefined;
  }

  /** Opens a blob for reading (making it first if it is deferred); rejects with ContentNotFoundError if it is absent. */
  async readStream(digest: Digest, opts: { start?: number; end?: number } = {}): Promise<Readable> {
    const p = this.blobPath(digest);
    const fh = await this.whenPresent(digest, () => fsp.open(p, 'r'));
    // Opening first means a missing blob is an error here, not an 'error' event later.
    return createReadStream(p, { fd: fh, start: opts.start, end: opts.end, autoClose: true });
  }

  async readBuffer(digest: Digest): Promise<Buffer> {
    return this.whenPresent(digest, () => fsp.readFile(this.blobPath(digest)));
  }

  /** `read` of a blob's file; a deferred blob is made first, an absent one is ContentNotFoundError. */
  private async whenPresent<T>(digest: Digest, read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (!(await this.materialize(digest))) throw new ContentNotFoundError(digest, this.root);
    try {
      return await read();
    } catch (err) {
      // Made, then removed at once (a prune): as absent as it was.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ContentNotFoundError(digest, this.root);
      throw err;
    }
  }

  // ---- deferred blobs ----------------------------------------------------------------------------

  private deferralPath(digest: Digest | string): string {
    return path.join(this.deferDir, digestHex(parseDigest(digest, `content store ${this.root}`)));
  }

  /** The note of a deferred blob; undefined when there is none (or it is unreadable: a torn write). */
  private async deferral(digest: Digest): Promise<{ size: number; source: string; createdAt: Date } | undefined> {
    const file = this.deferralPath(digest);
    try {
      const [text, st] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
      const note = JSON.parse(text) as { size?: unknown; source?: unknown };
      if (!Number.isSafeInteger(note.size) || (note.size as number) < 0 || typeof note.source !== 'string') return undefined;
      return { size: note.size as number, source: note.source, createdAt: st.mtime };
    } catch {
      return undefined;
    }
  }

  /**
   * Records that blob `blob` can be made from `source` (by the registered maker) instead of storing
   * its bytes now. Nothing is done when the blob is present. The note is synced before this
   * resolves, so a record naming the digest never outlives it in a crash.
   */
  async defer(blob: { digest: Digest; size: number }, source: string, mediaType?: string): Promise<Descriptor> {
    await this.init();
    parseDigest(blob.digest, 'defer');
    if (!Number.isSafeInteger(blob.size) || blob.size < 0) throw new Error(`defer ${blob.digest}: invalid size ${blob.size}`);
    const mt = mediaType ?? DEFAULT_MEDIA_TYPE;
    // Present, or deferred already (from another source that makes the same bytes): either serves.
    const have = await this.info(blob.digest);
    if (have && have.size === blob.size) return descriptor(blob.digest, have.size, mt);
    await fsp.mkdir(this.deferDir, { recursive: true });
    const file = this.deferralPath(blob.digest);
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const fh = await fsp.open(tmp, 'wx', 0o644);
      try {
        await fh.writeFile(JSON.stringify({ size: blob.size, source }));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, file);
    } finally {
      await fsp.rm(tmp, { force: true });
    }
    await syncDir(this.deferDir);
    return descriptor(blob.digest, blob.size, mt);
  }

  /**
   * Makes a deferred blob an ordinary one: the maker writes it into an ingest file, which must have
   * the deferred digest and size, and is synced and renamed into place before the note goes.
   * Resolves true when the blob is present afterwards (made now, or already), false when it is
   * neither present nor deferred.
   */
  materialize(digest: Digest): Promise<boolean> {
    let p = this.making.get(digest);
    if (!p) {
      p = this.make(digest);
      this.making.set(digest, p);
      const done = () => this.making.delete(digest);
      p.then(done, done);
    }
    return p;
  }

  private async make(digest: Digest): Promise<boolean> {
    await this.init();
    if ((await fsp.stat(this.blobPath(digest)).catch(() => undefined))?.isFile()) {
      await this.dropDeferral(digest);
      return true;
    }
    const note = await this.deferral(digest);
    if (!note) return false;
    if (!this.maker) throw new Error(`content ${digest} in ${this.root} is deferred (made from ${note.source}) and nothing here can make it`);
    const tmp = path.join(this.ingestDir, `${process.pid}.${randomBytes(8).toString('hex')}.tmp`);
    try {
      let made: { digest: Digest; size: number };
      try {
        made = await this.maker(note.source, tmp);
      } catch (err) {
        (err as Error).message = `making deferred content ${digest} (from ${note.source}): ${(err as Error).message}`;
        throw err;
      }
      if (made.digest !== digest || made.size !== note.size) {
        throw new ContentMismatchError(
          { digest, size: note.size },
          made,
          `making deferred content ${digest} (from ${note.source}) gave ${made.digest}, ${made.size} bytes: its source changed`,
        );
      }
      // The maker hashed what it wrote, in this store's own ingest file: moved in as a layer diff is.
      await this.adopt({ digest, size: note.size }, tmp);
    } finally {
      await fsp.rm(tmp, { force: true });
    }
    return true;
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
      // A deferred blob whose bytes come in anyway takes them (no making later).
      if (have && !have.deferred) {
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
      await this.dropDeferral(digest);
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
    if (have && !have.deferred && have.size === blob.size) {
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
    await this.dropDeferral(blob.digest);
    return descriptor(blob.digest, blob.size, mt);
  }

  /** Removes the note of a blob now present (after its rename: a crash between leaves both, and the bytes win). */
  private async dropDeferral(digest: Digest): Promise<void> {
    await fsp.rm(this.deferralPath(digest), { force: true });
  }

  /** Removes a blob (its bytes, or its deferral); false if it was not there. */
  async delete(digest: Digest): Promise<boolean> {
    const unlink = async (file: string) => {
      try {
        await fsp.unlink(file);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
    };
    const blob = await unlink(this.blobPath(digest));
    const note = await unlink(this.deferralPath(digest));
    return blob || note;
  }

  /** Every blob in the store, deferred ones included (flagged). Files whose names are not digests (strays) are ignored. */
  async list(): Promise<ContentInfo[]> {
    await this.init();
    const out = new Map<Digest, ContentInfo>();
    for (const dir of [this.blobDir, this.deferDir]) {
      for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
        if (!/^[0-9a-f]{64}$/.test(name)) continue;
        const digest = digestFromHex(name);
        if (out.has(digest)) continue;
        const info = await this.info(digest);
        if (info) out.set(digest, info);
      }
    }
    return [...out.values()].sort((a, b) => (a.digest < b.digest ? -1 : 1));
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
