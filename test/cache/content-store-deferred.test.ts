import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ContentMismatchError, ContentNotFoundError, ContentStore } from '../../src/cache/content-store.js';
import { type Digest, sha256Digest } from '../../src/oci/index.js';

let dir: string;
let store: ContentStore;
/** What the maker was asked to make, in order. */
let made: string[];
/** The bytes the test maker writes for each source. */
let sources: Map<string, string>;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-csd-'));
  store = new ContentStore(dir);
  made = [];
  sources = new Map();
  store.setMaker(async (source, dest) => {
    made.push(source);
    const text = sources.get(source);
    if (text === undefined) throw new Error(`no such source ${source}`);
    await fs.writeFile(dest, text);
    return { digest: sha256Digest(text), size: Buffer.byteLength(text) };
  });
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Whether the store still holds a deferral note for `digest` (read from disk, beside the blob). */
async function noteExists(digest: Digest): Promise<boolean> {
  return (await fs.stat(path.join(dir, 'deferred', 'sha256', digest.slice(7))).catch(() => undefined)) !== undefined;
}

async function blobFile(digest: Digest): Promise<boolean> {
  return (await fs.stat(store.blobPath(digest)).catch(() => undefined))?.isFile() ?? false;
}

describe('ContentStore: deferred blobs', () => {
  it('answers for a deferred blob without making it, and makes it once when it is read', async () => {
    sources.set('layer-a', 'the bytes of layer a');
    const digest = sha256Digest('the bytes of layer a');
    const desc = await store.defer({ digest, size: 20 }, 'layer-a', 'application/vnd.oci.image.layer.v1.tar');
    expect(desc).toEqual({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: 20 });
    expect(await store.has(digest)).toBe(true);
    expect(await store.info(digest)).toMatchObject({ digest, size: 20, deferred: { source: 'layer-a' } });
    expect((await store.list()).map((b) => [b.digest, b.deferred])).toEqual([[digest, { source: 'layer-a' }]]);
    expect(await blobFile(digest)).toBe(false);
    expect(made).toEqual([]);

    // Two readers at once: one making.
    const [a, b] = await Promise.all([store.readBuffer(digest), store.readBuffer(digest)]);
    expect(a.toString()).toBe('the bytes of layer a');
    expect(b.toString()).toBe('the bytes of layer a');
    expect(made).toEqual(['layer-a']);
    expect(await blobFile(digest)).toBe(true);
    expect(await store.info(digest)).not.toHaveProperty('deferred');
    expect(await noteExists(digest)).toBe(false);
    // A stream reads the made blob; nothing is made again.
    const chunks: Buffer[] = [];
    for await (const c of await store.readStream(digest)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('the bytes of layer a');
    expect(made).toEqual(['layer-a']);
    expect(await fs.readdir(path.join(dir, 'ingest'))).toEqual([]);
  });

  it('refuses bytes that are not the deferred ones, and keeps the note', async () => {
    sources.set('changed', 'not what was hashed');
    const digest = sha256Digest('what was hashed');
    await store.defer({ digest, size: 15 }, 'changed');
    const err = await store.readBuffer(digest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContentMismatchError);
    expect((err as Error).message).toMatch(/its source changed/);
    expect(await blobFile(digest)).toBe(false);
    expect((await store.info(digest))?.deferred).toEqual({ source: 'changed' });
    expect(await fs.readdir(path.join(dir, 'ingest'))).toEqual([]);
  });

  it('names the blob and its source when the maker fails, and when nothing can make it', async () => {
    const digest = sha256Digest('gone');
    await store.defer({ digest, size: 4 }, 'missing-source');
    await expect(store.readBuffer(digest)).rejects.toThrow(/making deferred content sha256:[0-9a-f]{64} \(from missing-source\): no such source/);
    const other = new ContentStore(dir); // no maker registered
    await expect(other.readBuffer(digest)).rejects.toThrow(/is deferred \(made from missing-source\) and nothing here can make it/);
  });

  it('takes real bytes offered for a deferred blob (ingest, adopt) and drops the note', async () => {
    const digest = sha256Digest('pushed back');
    await store.defer({ digest, size: 11 }, 'unused');
    await store.ingest({ digest, size: 11 }, Buffer.from('pushed back'));
    expect(await blobFile(digest)).toBe(true);
    expect(await noteExists(digest)).toBe(false);

    const d2 = sha256Digest('adopted bytes');
    await store.defer({ digest: d2, size: 13 }, 'unused');
    const file = path.join(dir, 'adopt.tar');
    await fs.writeFile(file, 'adopted bytes');
    await store.adopt({ digest: d2, size: 13 }, file);
    expect(await blobFile(d2)).toBe(true);
    expect(await noteExists(d2)).toBe(false);
    expect(made).toEqual([]);
  });

  it('does not defer a blob it has; delete removes a note; a torn note is no blob', async () => {
    await store.ingest(undefined, Buffer.from('present'));
    const present = sha256Digest('present');
    await store.defer({ digest: present, size: 7 }, 'unused');
    expect(await noteExists(present)).toBe(false);

    const digest = sha256Digest('deferred');
    await store.defer({ digest, size: 8 }, 'x');
    expect(await store.delete(digest)).toBe(true);
    expect(await store.has(digest)).toBe(false);
    await expect(store.readBuffer(digest)).rejects.toBeInstanceOf(ContentNotFoundError);
    expect(await store.delete(digest)).toBe(false);

    await store.defer({ digest, size: 8 }, 'x');
    const note = path.join(dir, 'deferred', 'sha256', digest.slice(7));
    await fs.writeFile(note, '{"size": 8, "sou'); // a crash mid-write of an unsynced note
    expect(await store.has(digest)).toBe(false);
    await expect(store.materialize(digest)).resolves.toBe(false);
  });
});
