// Applying layers: every kind of entry and metadata, whiteouts and opaque dirs in overlay form and in
// the copying form, compressions, and hostile archives that must be refused without touching the host.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { getAttribute } from '@napi-rs/xattr';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CopySnapshotter } from '../../src/snapshotter/copy.js';
import { OverlaySnapshotter } from '../../src/snapshotter/overlay.js';
import type { Snapshotter } from '../../src/snapshotter/types.js';
import { baseLayer, BINARY, CAP_NET_RAW, manifest, MountTracker, rawTar, richTar, streamOf, T, tmpRoot } from './helpers.js';

const mounts = new MountTracker();
const roots: string[] = [];
afterEach(async () => {
  await mounts.unmountAll();
});
afterAll(async () => {
  await mounts.unmountAll();
  for (const r of roots) await fsp.rm(r, { recursive: true, force: true });
});

async function newRoot(): Promise<string> {
  const r = await tmpRoot();
  roots.push(r);
  return r;
}

/** Deletes a file, replaces a directory wholesale (opaque), and adds files. */
async function secondLayer(): Promise<Buffer> {
  return rawTar([
    { name: 'etc/.wh.passwd' },
    { name: 'usr/', type: 'directory' },
    { name: 'usr/.wh..wh..opq' },
    { name: 'usr/fresh', content: 'only this remains in usr' },
    { name: 'bin/newtool', content: 'new', mode: 0o755 },
  ]);
}

describe.each([
  ['overlay', (root: string) => new OverlaySnapshotter(root).init()],
  ['copy', (root: string) => new CopySnapshotter(root).init()],
] as const)('%s: applying layers', (driver, open) => {
  async function merged(s: Snapshotter, root: string, parent: string): Promise<string> {
    return mounts.mount(await s.view(`view-${parent}-${Math.random()}`, parent), path.join(root, `view-${Math.random()}`));
  }

  it('applies every entry kind with modes, owners, xattrs, devices, hard links and mtimes', async () => {
    const root = await newRoot();
    const s = await open(root);
    await s.prepare('base-w');
    const layer = baseLayer();
    const res = await s.applyLayer('base-w', streamOf(layer));
    expect(res.diffID).toBe(`sha256:${createHash('sha256').update(layer).digest('hex')}`);
    expect(res.size).toBe(layer.length);
    await s.commit('base', 'base-w');

    const t = await merged(s, root, 'base');
    const m = new Map((await manifest(t, { mtimes: true })).map((e) => [e.path, e]));
    expect(m.get('bin/su')).toMatchObject({ type: 'file', mode: '4755', uid: 0 });
    expect(m.get('bin/wall')).toMatchObject({ mode: '2755', gid: 5 });
    expect(m.get('tmp')).toMatchObject({ type: 'dir', mode: '1777' });
    expect(m.get('shared')).toMatchObject({ mode: '2775', gid: 100 });
    expect(m.get('bin/ping')!.xattrs).toEqual({
      'security.capability': CAP_NET_RAW.toString('hex'),
      'user.binary': BINARY.toString('hex'),
    });
    expect(m.get('dev/null')).toMatchObject({ type: 'char', rdev: (0x103).toString(16), mode: '666' });
    expect(m.get('dev/sda')).toMatchObject({ type: 'block', rdev: (0x800).toString(16), gid: 6 });
    expect(m.get('run/fifo')).toMatchObject({ type: 'fifo', mode: '620', uid: 1000 });
    expect(m.get('lib')).toMatchObject({ type: 'symlink', link: 'usr/lib' });
    expect(m.get('empty')).toMatchObject({ type: 'dir', mode: '700' });
    expect(m.get('usr/share/doc/readme')).toMatchObject({ mode: '600', uid: 1000, gid: 1000, size: 4 });
    expect(m.get(`usr/share/doc/${'long-name-'.repeat(15)}ü`)?.sha256).toBe(createHash('sha256').update('pax path').digest('hex'));
    for (const p of ['bin', 'bin/su', 'usr/share/doc', 'etc/passwd', 'dev/null']) expect(m.get(p)!.mtime, p).toBe(T);
    const su = fs.statSync(path.join(t, 'bin/su'));
    const su2 = fs.statSync(path.join(t, 'bin/su-again'));
    expect(su2.ino).toBe(su.ino);
    expect(su.nlink).toBe(2);
  });

  it('applies whiteouts and opaque directories over the parent', async () => {
    const root = await newRoot();
    const s = await open(root);
    await s.prepare('base-w');
    await s.applyLayer('base-w', streamOf(baseLayer()));
    await s.commit('base', 'base-w');
    await s.prepare('l2-w', 'base');
    await s.applyLayer('l2-w', streamOf(await secondLayer()));

    if (driver === 'overlay') {
      // the applied dir is a valid overlay upper: whiteout device and opaque xattr
      const upper = (await s.mounts('l2-w'))[0]!.options.find((o) => o.startsWith('upperdir='))!.slice('upperdir='.length);
      const wh = fs.lstatSync(path.join(upper, 'etc/passwd'));
      expect(wh.isCharacterDevice() && wh.rdev === 0).toBe(true);
      expect((await getAttribute(path.join(upper, 'usr'), 'trusted.overlay.opaque'))?.toString()).toBe('y');
      // an implicitly created parent copies the lower dir's metadata instead of inventing one
      expect(fs.statSync(path.join(upper, 'etc')).mtimeMs / 1000).toBe(T);
    }
    await s.commit('l2', 'l2-w');
    const t = await merged(s, root, 'l2');
    expect(fs.existsSync(path.join(t, 'etc/passwd'))).toBe(false);
    expect(fs.existsSync(path.join(t, 'etc/shadow'))).toBe(true);
    expect(await fsp.readdir(path.join(t, 'usr'))).toEqual(['fresh']);
    expect((await fsp.readdir(path.join(t, 'bin'))).sort()).toEqual(['newtool', 'ping', 'su', 'su-again', 'wall']);
  });

  it('a whiteout never hides what the same layer adds', async () => {
    const root = await newRoot();
    const s = await open(root);
    await s.prepare('base-w');
    await s.applyLayer('base-w', streamOf(baseLayer()));
    await s.commit('base', 'base-w');
    await s.prepare('l2-w', 'base');
    await s.applyLayer('l2-w', streamOf(await rawTar([{ name: 'etc/hosts', content: 'same layer' }, { name: 'etc/.wh.hosts' }, { name: 'etc/.wh.shadow' }])));
    await s.commit('l2', 'l2-w');
    const t = await merged(s, root, 'l2');
    expect(await fsp.readFile(path.join(t, 'etc/hosts'), 'utf8')).toBe('same layer');
    expect(fs.existsSync(path.join(t, 'etc/shadow'))).toBe(false);
  });

  it('reads gzip and zstd blobs (by magic bytes, whatever the media type says) with the same diffID', async () => {
    const root = await newRoot();
    const s = await open(root);
    const plain = baseLayer();
    const diffID = `sha256:${createHash('sha256').update(plain).digest('hex')}`;
    const zst = execFileSync('zstd', ['-q', '-c', '-3'], { input: plain });
    const blobs: Array<[string, Buffer, string]> = [
      ['gzip', gzipSync(plain), 'application/vnd.oci.image.layer.v1.tar'],
      ['zstd', zst, 'application/vnd.oci.image.layer.v1.tar+zstd'],
      ['plain', plain, 'application/vnd.docker.image.rootfs.diff.tar.gzip'],
    ];
    const manifests: unknown[] = [];
    for (const [name, blob, mediaType] of blobs) {
      await s.prepare(name);
      const res = await s.applyLayer(name, streamOf(blob, 7777), mediaType);
      expect(res.diffID, name).toBe(diffID);
      await s.commit(`${name}-c`, name);
      manifests.push(await manifest(await merged(s, root, `${name}-c`)));
    }
    expect(manifests[1]).toEqual(manifests[0]);
    expect(manifests[2]).toEqual(manifests[0]);
  });

  it('reads a large zstd layer in bounded chunks', async () => {
    const root = await newRoot();
    const s = await open(root);
    const big = Buffer.concat([randomBytes(4 << 20), Buffer.alloc(60 << 20, 1)]);
    const plain = richTar([{ name: 'big', type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: T, content: big }]);
    const zst = execFileSync('zstd', ['-q', '-c', '-1'], { input: plain, maxBuffer: 1 << 30 });
    await s.prepare('big');
    const res = await s.applyLayer('big', streamOf(zst, 8 << 20));
    expect(res.size).toBe(plain.length);
    const m = await manifest((await s.mounts('big'))[0]!.source);
    expect(m.find((e) => e.path === 'big')?.sha256).toBe(createHash('sha256').update(big).digest('hex'));
  });
});

describe('hostile layers are refused and the host stays untouched', () => {
  const marker = `kiln-evil-${process.pid}-${Date.now()}`;
  const hostPaths = [`/etc/${marker}`, `/tmp/${marker}`, `/var/tmp/${marker}`];
  afterAll(async () => {
    for (const p of hostPaths) await fsp.rm(p, { force: true });
  });

  const cases: Array<[string, () => Promise<Buffer>, RegExp]> = [
    ['dot-dot name', () => rawTar([{ name: `../../../../../../tmp/${marker}`, content: 'x' }]), /"\.\." in name refused/],
    ['absolute name', () => rawTar([{ name: `/etc/${marker}`, content: 'x' }]), /absolute name refused/],
    [
      'entry beneath a symlink to /',
      () =>
        rawTar([
          { name: 'a', type: 'symlink', linkname: '/' },
          { name: `a/etc/${marker}`, content: 'x' },
        ]),
      /"a\/etc\/kiln-evil.*parent a is a symlink \(-> \/\)/,
    ],
    [
      'entry beneath a relative symlink climbing out',
      () =>
        rawTar([
          { name: 'up', type: 'symlink', linkname: '../../../../../../..' },
          { name: `up/tmp/${marker}`, content: 'x' },
        ]),
      /parent up is a symlink/,
    ],
    [
      'hard link to ../../etc/shadow',
      () => rawTar([{ name: `x${marker}`, type: 'link', linkname: '../../etc/shadow' }]),
      /hard link target "\.\.\/\.\.\/etc\/shadow" is outside the layer/,
    ],
    [
      'hard link to /etc/shadow',
      () => rawTar([{ name: `x${marker}`, type: 'link', linkname: '/etc/shadow' }]),
      /hard link target "\/etc\/shadow" is outside the layer/,
    ],
    [
      'hard link through a symlinked dir',
      () =>
        rawTar([
          { name: 'e', type: 'symlink', linkname: '/etc' },
          { name: `x${marker}`, type: 'link', linkname: 'e/shadow' },
        ]),
      /hard link.*|parent e is a symlink/,
    ],
    ['whiteout beneath a symlink', () => rawTar([{ name: 'v', type: 'symlink', linkname: '/var/tmp' }, { name: `v/.wh.${marker}` }]), /parent v is a symlink/],
  ];

  for (const driver of ['overlay', 'copy'] as const) {
    for (const [what, make, error] of cases) {
      it(`${driver}: ${what}`, async () => {
        // a host file the whiteout case would delete if it escaped
        await fsp.writeFile(`/var/tmp/${marker}`, 'host');
        const root = await newRoot();
        const s = driver === 'overlay' ? await new OverlaySnapshotter(root).init() : await new CopySnapshotter(root).init();
        await s.prepare('w');
        await expect(s.applyLayer('w', streamOf(await make()))).rejects.toThrow(error);
        expect(fs.existsSync(`/etc/${marker}`)).toBe(false);
        expect(fs.existsSync(`/tmp/${marker}`)).toBe(false);
        expect(fs.readFileSync(`/var/tmp/${marker}`, 'utf8')).toBe('host');
        const shadow = fs.statSync('/etc/shadow');
        expect(shadow.nlink).toBe(1);
      });
    }
  }

  it('overlay: an entry beneath a symlink that lives in a lower layer is refused', async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    await s.prepare('base-w');
    await s.applyLayer('base-w', streamOf(await rawTar([{ name: 'a', type: 'symlink', linkname: '/' }])));
    await s.commit('base', 'base-w');
    await s.prepare('w', 'base');
    await expect(s.applyLayer('w', streamOf(await rawTar([{ name: `a/etc/${marker}`, content: 'x' }])))).rejects.toThrow(/parent a is a symlink \(-> \/\)/);
    expect(fs.existsSync(`/etc/${marker}`)).toBe(false);
  });

  it('overlay: a layer cannot forge overlay xattrs', async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    await s.prepare('w');
    const tarBuf = richTar([{ name: 'd', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: T, xattrs: [['trusted.overlay.redirect', Buffer.from('/etc')]] }]);
    await s.applyLayer('w', streamOf(tarBuf));
    const upper = (await s.mounts('w'))[0]!.source;
    expect(await getAttribute(path.join(upper, 'd'), 'trusted.overlay.redirect')).toBeNull();
  });
});
