import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as tar from 'tar-stream';
import { detectArchive } from '../../src/fileop/archive.js';
import { makeFixture, type Fixture } from './helpers.js';

let f: Fixture;
beforeEach(() => {
  f = makeFixture();
});
afterEach(() => f.cleanup());

type Entry = tar.Header extends infer H ? Partial<H> & { name: string; body?: string } : never;

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const { body, ...h } of entries) {
    await new Promise<void>((resolve, reject) => pack.entry(h, body ?? '', (err) => (err ? reject(err) : resolve())));
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function compress(data: Buffer, how: 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd'): Buffer {
  if (how === 'none') return data;
  if (how === 'gzip') return zlib.gzipSync(data);
  return execFileSync(how, ['-c'], { input: data });
}

const mtime = new Date(1_500_000_000_000);
const sample: Entry[] = [
  { name: 'dir/', type: 'directory', mode: 0o750, mtime },
  { name: 'dir/file.txt', body: 'hello', mode: 0o4755, uid: 1000, gid: 1001, mtime },
  { name: 'dir/link', type: 'symlink', linkname: 'file.txt', mtime },
  // As tar writes it: the hard link's header carries the file's own mode and owner.
  { name: 'dir/hard', type: 'link', linkname: 'dir/file.txt', mode: 0o4755, uid: 1000, gid: 1001, mtime },
  { name: '/abs/name', body: 'abs', mtime },
];

describe('ADD: local archives', () => {
  it.each(['none', 'gzip', 'bzip2', 'xz', 'zstd'] as const)('extracts a %s tar detected by content, not name', async (how) => {
    fs.writeFileSync(path.join(f.ctx, 'archive.bin'), compress(await makeTar(sample), how));
    const s = await f.run({ instruction: 'ADD', unpack: true, sources: ['archive.bin'], dest: '/ex' });
    expect(fs.readFileSync(f.dst('ex/dir/file.txt'), 'utf8')).toBe('hello');
    const st = fs.statSync(f.dst('ex/dir/file.txt'));
    expect(st.mode & 0o7777).toBe(0o4755);
    expect([st.uid, st.gid]).toEqual([1000, 1001]);
    expect(st.mtimeMs).toBe(mtime.getTime());
    expect(fs.statSync(f.dst('ex/dir')).mode & 0o7777).toBe(0o750);
    expect(fs.statSync(f.dst('ex/dir')).mtimeMs).toBe(mtime.getTime());
    expect(fs.readlinkSync(f.dst('ex/dir/link'))).toBe('file.txt');
    expect(fs.statSync(f.dst('ex/dir/hard')).ino).toBe(st.ino);
    expect(fs.readFileSync(f.dst('ex/abs/name'), 'utf8')).toBe('abs');
    expect(s.extracted).toBe(5);
  });

  it('a hard link header with its own owner and mode applies them to the shared inode (go-archive)', async () => {
    const entries: Entry[] = [
      { name: 'orig.txt', body: 'shared', mode: 0o644, uid: 0, gid: 0, mtime },
      { name: 'hl', type: 'link', linkname: 'orig.txt', mode: 0o600, uid: 77, gid: 78, mtime },
    ];
    fs.writeFileSync(path.join(f.ctx, 'a.tar'), await makeTar(entries));
    await f.run({ instruction: 'ADD', unpack: true, sources: ['a.tar'], dest: '/h/', destIsDir: true });
    const st = fs.statSync(f.dst('h/orig.txt'));
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([77, 78, 0o600]);
    expect(fs.statSync(f.dst('h/hl')).ino).toBe(st.ino);
    await f.run({ instruction: 'ADD', unpack: true, sources: ['a.tar'], dest: '/hc/', destIsDir: true, chown: '5:6' });
    const sc = fs.statSync(f.dst('hc/orig.txt'));
    expect([sc.uid, sc.gid, sc.mode & 0o7777]).toEqual([5, 6, 0o600]);
  });

  it('the destination ADD creates for an archive (and its parents) belongs to the --chown user; implied parents and an existing destination do not', async () => {
    const entries: Entry[] = [
      { name: './', type: 'directory', mode: 0o700, uid: 7, gid: 8, mtime },
      { name: 'implied/deep/f.txt', body: 'f', mode: 0o640, uid: 3, gid: 4, mtime },
    ];
    fs.writeFileSync(path.join(f.ctx, 'a.tar'), await makeTar(entries));
    const own = (rel: string) => {
      const st = fs.lstatSync(f.dst(rel));
      return [st.uid, st.gid, st.mode & 0o7777];
    };
    // Without a trailing slash: the last component is made by the extraction itself.
    await f.run({ instruction: 'ADD', unpack: true, sources: ['a.tar'], dest: '/x/y/z', chown: '1000:50' });
    expect(own('x')).toEqual([1000, 50, 0o755]);
    expect(own('x/y/z')).toEqual([1000, 50, 0o755]);
    expect(own('x/y/z/implied')).toEqual([0, 0, 0o755]);
    expect(own('x/y/z/implied/deep/f.txt')).toEqual([1000, 50, 0o640]);
    // Without --chown: root; the "./" entry never changes the destination.
    await f.run({ instruction: 'ADD', unpack: true, sources: ['a.tar'], dest: '/n' });
    expect(own('n')).toEqual([0, 0, 0o755]);
    expect(own('n/implied/deep/f.txt')).toEqual([3, 4, 0o640]);
    fs.mkdirSync(f.dst('e'));
    fs.chownSync(f.dst('e'), 5, 6);
    fs.chmodSync(f.dst('e'), 0o711);
    await f.run({ instruction: 'ADD', unpack: true, sources: ['a.tar'], dest: '/e/', destIsDir: true, chown: '1000:50' });
    expect(own('e')).toEqual([5, 6, 0o711]);
  });

  it('COPY never extracts, and ADD copies a compressed non-tar file as it is', async () => {
    const tarball = zlib.gzipSync(await makeTar(sample));
    fs.writeFileSync(path.join(f.ctx, 'a.tar.gz'), tarball);
    fs.writeFileSync(path.join(f.ctx, 'notes.gz'), zlib.gzipSync(Buffer.from('just text, no tar header here')));
    await f.run({ sources: ['a.tar.gz'], dest: '/c/', destIsDir: true });
    expect(fs.readFileSync(f.dst('c/a.tar.gz')).equals(tarball)).toBe(true);
    await f.run({ instruction: 'ADD', unpack: true, sources: ['notes.gz'], dest: '/n/', destIsDir: true });
    expect(fs.lstatSync(f.dst('n/notes.gz')).isFile()).toBe(true);
    expect(await detectArchive(path.join(f.ctx, 'notes.gz'))).toBeUndefined();
    expect(await detectArchive(path.join(f.ctx, 'a.tar.gz'))).toBe('gzip');
  });

  it('--chown overrides the owners recorded in the archive', async () => {
    fs.writeFileSync(path.join(f.ctx, 'a.tar'), await makeTar(sample));
    await f.run({ instruction: 'ADD', unpack: true, sources: ['a.tar'], dest: '/o/', destIsDir: true, chown: 'kilnuser' });
    const st = fs.statSync(f.dst('o/dir/file.txt'));
    expect([st.uid, st.gid]).toEqual([4321, 4322]);
  });

  it("keeps every entry inside the destination, as BuildKit's chroot untar does: names, link targets and parents are rooted there", async () => {
    fs.writeFileSync(
      path.join(f.ctx, 'evil.tar'),
      await makeTar([
        { name: '../evil', body: 'x' },
        { name: 'a/../../evil2', body: 'y' },
        { name: 'l', type: 'symlink', linkname: '../../evil' },
        { name: 'h', type: 'link', linkname: '../evil' },
        { name: 'up', type: 'symlink', linkname: '../../..' },
        { name: 'up/through.txt', body: 'z' },
      ] as Entry[]),
    );
    await f.run({ instruction: 'ADD', unpack: true, sources: ['evil.tar'], dest: '/x/', destIsDir: true });
    expect(fs.readFileSync(f.dst('x/evil'), 'utf8')).toBe('x');
    expect(fs.readFileSync(f.dst('x/evil2'), 'utf8')).toBe('y');
    expect(fs.readlinkSync(f.dst('x/l'))).toBe('../../evil');
    expect(fs.statSync(f.dst('x/h')).ino).toBe(fs.statSync(f.dst('x/evil')).ino);
    expect(fs.readFileSync(f.dst('x/through.txt'), 'utf8')).toBe('z');
    expect(fs.existsSync(f.dst('evil'))).toBe(false);
    expect(fs.existsSync(f.dst('through.txt'))).toBe(false);
    expect(fs.existsSync(path.join(f.base, 'evil'))).toBe(false);
  });

  it('refuses a hard link to the destination itself', async () => {
    fs.writeFileSync(path.join(f.ctx, 'evil.tar'), await makeTar([{ name: 'h', type: 'link', linkname: '..' }] as Entry[]));
    await expect(f.run({ instruction: 'ADD', unpack: true, sources: ['evil.tar'], dest: '/x/', destIsDir: true })).rejects.toThrow(/invalid hard link/);
  });

  it('an absolute symlink in the archive leads writes into the rootfs, never the host', async () => {
    const probe = `kiln-probe-${path.basename(f.base)}`;
    try {
      fs.writeFileSync(
        path.join(f.ctx, 'a.tar'),
        await makeTar([
          { name: 'root', type: 'symlink', linkname: '/' },
          { name: `root/etc/${probe}`, body: 'P' },
        ]),
      );
      await f.run({ instruction: 'ADD', unpack: true, sources: ['a.tar'], dest: '/', destIsDir: true });
      expect(fs.readFileSync(f.dst(`etc/${probe}`), 'utf8')).toBe('P');
      expect(fs.existsSync(`/etc/${probe}`)).toBe(false);
    } finally {
      fs.rmSync(`/etc/${probe}`, { force: true });
    }
  });
});

describe('ADD: URLs', () => {
  const body = 'remote content\n';
  const sha = createHash('sha256').update(body).digest('hex');
  const lastModified = new Date('2020-01-02T03:04:05Z');
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/files/hello.txt') {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Last-Modified': lastModified.toUTCString() });
        res.end(body);
      } else if (req.url === '/archive.tar.gz') {
        res.writeHead(200);
        res.end(zlib.gzipSync(Buffer.from('not extracted')));
      } else {
        res.writeHead(404);
        res.end('nope');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it('downloads with the URL file name, mode 0600, Last-Modified as mtime, checksum verified', async () => {
    const s = await f.run({ instruction: 'ADD', urls: [`${base}/files/hello.txt`], dest: '/dl/', destIsDir: true, checksum: `sha256:${sha}` });
    const p = f.dst('dl/hello.txt');
    expect(fs.readFileSync(p, 'utf8')).toBe(body);
    expect(fs.statSync(p).mode & 0o7777).toBe(0o600);
    expect(fs.statSync(p).mtimeMs).toBe(lastModified.getTime());
    expect(s.downloaded).toEqual([`${base}/files/hello.txt`]);
  });

  it('a destination without a slash is the file name; archives are not extracted', async () => {
    await f.run({ instruction: 'ADD', unpack: true, urls: [`${base}/archive.tar.gz`], dest: '/renamed' });
    expect(fs.lstatSync(f.dst('renamed')).isFile()).toBe(true);
  });

  it('a checksum mismatch fails and leaves nothing behind', async () => {
    const wrong = 'sha256:' + '0'.repeat(64);
    await expect(f.run({ instruction: 'ADD', urls: [`${base}/files/hello.txt`], dest: '/dl/', destIsDir: true, checksum: wrong })).rejects.toThrow(
      `checksum mismatch for ${base}/files/hello.txt: expected ${wrong}, got sha256:${sha}`,
    );
    expect(fs.existsSync(f.dst('dl/hello.txt'))).toBe(false);
  });

  it('HTTP errors, git URLs, bad checksums and checksums on local files are clear errors', async () => {
    await expect(f.run({ instruction: 'ADD', urls: [`${base}/missing`], dest: '/x' })).rejects.toThrow(/HTTP 404/);
    await expect(f.run({ instruction: 'ADD', urls: ['https://example.invalid/repo.git'], dest: '/x' })).rejects.toThrow(
      /ADD of a git repository needs a git source here/,
    );
    await expect(f.run({ instruction: 'ADD', urls: [`${base}/files/hello.txt`], dest: '/x', checksum: 'md5:abc' })).rejects.toThrow(/invalid --checksum/);
    f.write('local');
    await expect(f.run({ instruction: 'ADD', sources: ['local'], dest: '/x', checksum: `sha256:${sha}` })).rejects.toThrow(
      /--checksum can only be used with http\(s\) and git sources/,
    );
  });
});
