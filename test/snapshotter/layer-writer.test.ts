// The one-pass layer writer: the tar is produced a batch at a time with synchronous calls, hashed and
// compressed on the way. Its blobs must be the bytes a whole-tar compression gives (digests stay the
// same across kiln versions and runs), it must not hold the event loop for a whole layer, and a file
// that changes while archived must fail the layer, naming it.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { treeChanges, writeLayer } from '../../src/snapshotter/diff.js';
import type { TarEntry } from '../../src/util/tar-writer.js';
import type { LayerBlob } from '../../src/snapshotter/types.js';
import { tmpRoot } from './helpers.js';

const roots: string[] = [];
afterAll(async () => {
  for (const r of roots) await fsp.rm(r, { recursive: true, force: true });
});

async function newDir(): Promise<string> {
  const r = await tmpRoot('kiln-layerw-');
  roots.push(r);
  return r;
}

function sha(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

/** A tree whose tar spans many 1 MiB batches: small files cut at batch edges, and files bigger than a batch. */
async function mixedTree(root: string): Promise<void> {
  let seed = 7;
  const bytes = (n: number) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      b[i] = i % 7 === 0 ? seed & 0xff : 0x61 + (i % 13);
    }
    return b;
  };
  for (let d = 0; d < 12; d++) {
    await fsp.mkdir(path.join(root, `d${d}`));
    for (let f = 0; f < 60; f++) await fsp.writeFile(path.join(root, `d${d}`, `f${f}`), bytes(500 + (((d * 60 + f) * 977) % 9000)));
  }
  await fsp.writeFile(path.join(root, 'big1'), bytes((3 << 20) + 123));
  await fsp.writeFile(path.join(root, 'big2'), bytes(1 << 20));
  await fsp.symlink('d0/f0', path.join(root, 'link'));
  await fsp.link(path.join(root, 'big2'), path.join(root, 'big2-again'));
}

describe('writeLayer (one pass)', () => {
  it('gives the gzip blob a compression of the whole tar at once gives, and the tar its diffID', async () => {
    const dir = await newDir();
    const tree = path.join(dir, 'tree');
    await fsp.mkdir(tree);
    await mixedTree(tree);
    const plain = (await writeLayer(treeChanges(tree, undefined), { dest: path.join(dir, 'l.tar'), compression: 'none' })) as LayerBlob;
    const gz = (await writeLayer(treeChanges(tree, undefined), { dest: path.join(dir, 'l.tgz'), compression: 'gzip' })) as LayerBlob;
    const tar = await fsp.readFile(plain.path!);
    expect(tar.length).toBeGreaterThan(6 << 20);
    expect(plain.digest).toBe(sha(tar));
    expect(gz.diffID).toBe(plain.diffID);
    expect(gz.uncompressedSize).toBe(tar.length);
    const blob = await fsp.readFile(gz.path!);
    expect(gz.digest).toBe(sha(blob));
    expect(blob.equals(zlib.gzipSync(tar, { level: 6 }))).toBe(true);
    const fast = (await writeLayer(treeChanges(tree, undefined), { dest: path.join(dir, 'l1.tgz'), compression: 'gzip', level: 1 })) as LayerBlob;
    expect((await fsp.readFile(fast.path!)).equals(zlib.gzipSync(tar, { level: 1 }))).toBe(true);
    // Only hashed (a deferred blob): the same digests and size, nothing written.
    const before = (await fsp.readdir(dir)).sort();
    const hashed = (await writeLayer(treeChanges(tree, undefined), { compression: 'none' })) as LayerBlob;
    expect(hashed).toEqual({ ...plain, path: undefined });
    expect(hashed).not.toHaveProperty('path');
    expect((await fsp.readdir(dir)).sort()).toEqual(before);
    await expect(writeLayer(treeChanges(tree, undefined), { compression: 'gzip' })).rejects.toThrow(/a gzip layer needs a file/);
  });

  it('lets the event loop run while a layer of many batches is written', async () => {
    const dir = await newDir();
    const tree = path.join(dir, 'tree');
    await fsp.mkdir(tree);
    await mixedTree(tree);
    let ticks = 0;
    let stop = false;
    const tick = () => {
      ticks++;
      if (!stop) setImmediate(tick);
    };
    setImmediate(tick);
    await writeLayer(treeChanges(tree, undefined), { dest: path.join(dir, 'l.tar'), compression: 'none' });
    stop = true;
    // About ten 1 MiB batches, each a separate turn of the loop: a writer that did the whole layer in
    // one synchronous run would let the ticker in once at most.
    expect(ticks).toBeGreaterThan(5);
  });

  it('fails naming the entry when a file is shorter than when it was listed, and leaves no blob', async () => {
    const dir = await newDir();
    const f = path.join(dir, 'shrinks');
    await fsp.writeFile(f, Buffer.alloc(5000, 1));
    const entries: TarEntry[] = [{ name: 'shrinks', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 9000, source: f }];
    const dest = path.join(dir, 'l.tgz');
    await expect(writeLayer(entries, { dest })).rejects.toThrow(
      /tar entry shrinks: .* changed size while being archived \(5000 bytes where 9000 were listed\)/,
    );
    expect(fs.existsSync(dest)).toBe(false);
  });

  it('does not follow a symlink put where a listed file was', async () => {
    const dir = await newDir();
    const secret = path.join(dir, 'secret');
    await fsp.writeFile(secret, 'do not read me');
    const f = path.join(dir, 'swapped');
    await fsp.symlink(secret, f);
    const entries: TarEntry[] = [{ name: 'swapped', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: 0, size: 14, source: f }];
    await expect(writeLayer(entries, { dest: path.join(dir, 'l.tar'), compression: 'none' })).rejects.toThrow(/ELOOP/);
  });
});
