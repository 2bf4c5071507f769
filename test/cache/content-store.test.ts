import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { build } from 'rolldown';
import { ContentMismatchError, ContentNotFoundError, ContentStore } from '../../src/cache/content-store.js';
import { type Digest, sha256Digest } from '../../src/oci/index.js';

let dir: string;
let store: ContentStore;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-cs-'));
  store = new ContentStore(dir);
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function ingestFiles(): Promise<string[]> {
  return fs.readdir(path.join(dir, 'ingest')).catch(() => []);
}

describe('ContentStore', () => {
  it('adopts a file it is given by renaming it in; checks the size; drops the file when the blob is there', async () => {
    const file = path.join(dir, 'layer.tar');
    await fs.writeFile(file, 'layer bytes');
    const digest = sha256Digest('layer bytes');
    const ino = (await fs.stat(file)).ino;
    const desc = await store.adopt({ digest, size: 11 }, file, 'application/vnd.oci.image.layer.v1.tar');
    expect(desc).toEqual({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: 11 });
    expect((await fs.stat(store.blobPath(digest))).ino).toBe(ino); // moved, not copied
    await expect(fs.stat(file)).rejects.toThrow(/ENOENT/);

    await fs.writeFile(file, 'layer bytes');
    await store.adopt({ digest, size: 11 }, file);
    await expect(fs.stat(file)).rejects.toThrow(/ENOENT/);

    const other = path.join(dir, 'short.tar');
    await fs.writeFile(other, 'short');
    await expect(store.adopt({ digest: sha256Digest('shorter!'), size: 8 }, other)).rejects.toThrow(ContentMismatchError);
    expect(await store.has(sha256Digest('shorter!'))).toBe(false);
  });

  it('ingests, reads back and lists a blob under blobs/sha256/<hex>', async () => {
    const desc = await store.ingest(undefined, Readable.from([Buffer.from('hello '), Buffer.from('world')]), 'text/plain');
    expect(desc).toEqual({ mediaType: 'text/plain', digest: sha256Digest('hello world'), size: 11 });
    expect(await fs.readFile(path.join(dir, 'blobs', 'sha256', desc.digest.slice(7)), 'utf8')).toBe('hello world');
    expect(await store.has(desc.digest)).toBe(true);
    expect((await store.info(desc.digest))?.size).toBe(11);
    expect((await store.readBuffer(desc.digest)).toString()).toBe('hello world');
    const chunks: Buffer[] = [];
    for await (const c of await store.readStream(desc.digest)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello world');
    expect((await store.list()).map((i) => i.digest)).toEqual([desc.digest]);
    expect(await ingestFiles()).toEqual([]);
  });

  it('verifies the expected digest and size and leaves nothing behind on mismatch', async () => {
    const good = sha256Digest('abc');
    await expect(store.ingest({ digest: good }, 'abd')).rejects.toThrow(ContentMismatchError);
    await expect(store.ingest({ digest: good }, 'abd')).rejects.toThrow(/digest mismatch/);
    await expect(store.ingest({ digest: good, size: 2 }, 'abc')).rejects.toThrow(/longer than the expected 2 bytes/);
    await expect(store.ingest({ digest: good, size: 4 }, 'abc')).rejects.toThrow(/got 3 bytes, expected 4/);
    expect(await store.has(good)).toBe(false);
    expect(await ingestFiles()).toEqual([]);
    const d = await store.ingest({ digest: good, size: 3, mediaType: 'x/y' }, 'abc');
    expect(d).toEqual({ digest: good, size: 3, mediaType: 'x/y' });
  });

  it('does not read the source when the blob is already present', async () => {
    const d = await store.ingest(undefined, 'same');
    let pulled = 0;
    const src = new Readable({
      read() {
        pulled++;
        this.push('same');
        this.push(null);
      },
    });
    expect(await store.ingest({ digest: d.digest, size: 4 }, src)).toMatchObject({ digest: d.digest, size: 4 });
    expect(pulled).toBe(0);
    expect(src.destroyed).toBe(true);
  });

  it('survives concurrent ingests of one digest', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024, 7);
    const digest = sha256Digest(data);
    const slices = (): Readable =>
      Readable.from(
        (function* () {
          for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
        })(),
      );
    const results = await Promise.all(Array.from({ length: 8 }, () => store.ingest({ digest, size: data.length }, slices())));
    for (const r of results) expect(r.digest).toBe(digest);
    expect((await store.readBuffer(digest)).equals(data)).toBe(true);
    expect(await ingestFiles()).toEqual([]);
  });

  it('refuses digests that would be path tricks', async () => {
    const evil = 'sha256:../../../../etc/passwd' as Digest;
    await expect(store.has(evil)).rejects.toThrow(/invalid digest/);
    await expect(store.ingest({ digest: evil }, 'x')).rejects.toThrow(/invalid digest/);
    await expect(store.readBuffer(evil)).rejects.toThrow(/invalid digest/);
    await expect(store.delete(evil)).rejects.toThrow(/invalid digest/);
  });

  it('closes a stream it refuses before reading it', async () => {
    const stream = createReadStream(path.join(dir, 'gone-before-it-opens'));
    const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
    await expect(store.ingest({ digest: 'sha256:../x' as Digest }, stream)).rejects.toThrow(/invalid digest/);
    // Its failing open (ENOENT) must not surface as an unhandled error, which fails the run.
    await closed;
  });

  it('reports missing content and deletes', async () => {
    const d = sha256Digest('gone');
    await expect(store.readBuffer(d)).rejects.toThrow(ContentNotFoundError);
    await expect(store.readStream(d)).rejects.toThrow(`content ${d} not found`);
    expect(await store.info(d)).toBeUndefined();
    await store.ingest(undefined, 'gone');
    expect(await store.delete(d)).toBe(true);
    expect(await store.delete(d)).toBe(false);
    expect(await store.list()).toEqual([]);
  });

  it('leaves no blob when the writer is killed mid-write, and cleans the temporary file', async () => {
    // Bundle the child (TypeScript) to plain JS so a bare `node` can run it and be SIGKILLed.
    const bundle = path.join(dir, 'child.mjs');
    await build({
      input: path.join(import.meta.dirname, 'fixtures', 'slow-ingest.ts'),
      platform: 'node',
      logLevel: 'silent',
      output: { file: bundle, format: 'esm' },
    });
    const root = path.join(dir, 'store');
    const child = spawn(process.execPath, [bundle, root], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        if (b.toString().includes('writing')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    const killed = new Promise((r) => child.on('exit', (_c, sig) => r(sig)));
    process.kill(child.pid!, 'SIGKILL');
    expect(await killed).toBe('SIGKILL');

    const s = new ContentStore(root);
    const temps = await fs.readdir(path.join(root, 'ingest'));
    expect(temps).toHaveLength(1);
    expect((await fs.stat(path.join(root, 'ingest', temps[0]!))).size).toBeGreaterThan(0);
    expect(await fs.readdir(path.join(root, 'blobs', 'sha256'))).toEqual([]);
    expect(await s.list()).toEqual([]);

    // Our own in-flight file must survive a cleanup; the dead writer's must not.
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const live = s.ingest(
      undefined,
      (async function* () {
        yield Buffer.from('live');
        await gate;
      })(),
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(await s.cleanupIngest()).toBe(1);
    expect(await fs.readdir(path.join(root, 'ingest'))).toHaveLength(1);
    release();
    expect((await live).digest).toBe(sha256Digest('live'));
    expect(await fs.readdir(path.join(root, 'ingest'))).toEqual([]);
  });
});
