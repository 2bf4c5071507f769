// Diffs: changes made through a real mount become a layer that, applied on the same parent elsewhere,
// reproduces the tree exactly; the layer is deterministic, readable by GNU tar, and its digests are
// those of the bytes on disk.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setAttribute } from '@napi-rs/xattr';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CopySnapshotter } from '../../src/snapshotter/copy.js';
import { OverlaySnapshotter } from '../../src/snapshotter/overlay.js';
import type { LayerBlob, Snapshotter } from '../../src/snapshotter/types.js';
import { baseLayer, CAP_NET_RAW, manifest, MountTracker, streamOf, tarNames, tmpRoot } from './helpers.js';

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

function sha(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

/** What a RUN step might do, done through the mounted rootfs. */
async function change(t: string): Promise<void> {
  const p = (x: string) => path.join(t, x);
  await fsp.writeFile(p('etc/hosts'), '127.0.0.1 localhost\n');
  await fsp.appendFile(p('etc/shadow'), 'user:*::::::\n');
  await fsp.chmod(p('bin/wall'), 0o6711);
  await fsp.chown(p('usr/share/doc/readme'), 2000, 2001); // copy-up of metadata only
  await fsp.rm(p('etc/passwd'));
  await fsp.rm(p('usr/share/doc'), { recursive: true });
  await fsp.mkdir(p('usr/share/doc'), { mode: 0o755 });
  await fsp.writeFile(p('usr/share/doc/new'), 'recreated');
  await fsp.mkdir(p('sbin'));
  await fsp.writeFile(p('bin/tool'), 'tool', { mode: 0o755 });
  await fsp.link(p('bin/tool'), p('bin/tool-link'));
  await fsp.link(p('bin/tool'), p('sbin/tool'));
  await fsp.writeFile(p('bin/cap'), 'cap');
  await setAttribute(p('bin/cap'), 'security.capability', CAP_NET_RAW);
  await setAttribute(p('bin/cap'), 'user.note', Buffer.from([0xde, 0xad, 0xbe, 0xef]));
  execFileSync('mknod', ['-m', '0666', p('dev/zero'), 'c', '1', '5']);
  execFileSync('mknod', ['-m', '0640', p('run/pipe'), 'p']);
  await fsp.symlink('../bin', p('usr/bin-link'));
  await fsp.mkdir(p('var/empty'), { recursive: true, mode: 0o711 });
  await fsp.chmod(p('var/empty'), 0o711);
  await fsp.mkdir(p('scratch'));
  await fsp.chmod(p('scratch'), 0o1777);
  await fsp.chmod(p('etc'), 0o750);
  await fsp.rename(p('bin/ping'), p('bin/ping2'));
}

describe.each([
  ['overlay', (root: string) => new OverlaySnapshotter(root).init()],
  ['copy', (root: string) => new CopySnapshotter(root).init()],
] as const)('%s: diff', (driver, open) => {
  async function withBase(): Promise<{ root: string; s: Snapshotter }> {
    const root = await newRoot();
    const s = await open(root);
    await s.prepare('base-w');
    await s.applyLayer('base-w', streamOf(baseLayer()));
    await s.commit('base', 'base-w');
    return { root, s };
  }

  async function view(s: Snapshotter, root: string, parent: string): Promise<string> {
    const key = `v-${parent}-${Math.random().toString(36).slice(2)}`;
    return mounts.mount(await s.view(key, parent), path.join(root, key));
  }

  it('round-trips: apply(diff(x)) on the same parent reproduces x', async () => {
    const { root, s } = await withBase();
    await s.prepare('child-w', 'base');
    await change(await mounts.mount(await s.mounts('child-w'), path.join(root, 'mnt')));
    await mounts.unmountAll();
    await s.commit('child', 'child-w');

    const dest = path.join(root, 'layer.tar.gz');
    const res = (await s.diff('child', { dest })) as LayerBlob;
    expect(res.empty).toBe(false);
    expect(res.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    const blob = await fsp.readFile(dest);
    expect(res.digest).toBe(sha(blob));
    expect(res.size).toBe(blob.length);
    const tarBuf = execFileSync('gzip', ['-dc', dest], { maxBuffer: 1 << 28 });
    expect(res.diffID).toBe(sha(tarBuf));
    expect(res.uncompressedSize).toBe(tarBuf.length);
    // GNU tar reads it too (an independent check of the writer's headers and pax records)
    const listing = execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-tvvf', '-'], { input: tarBuf }).toString();
    expect(listing).toContain('bin/cap');

    const names = await tarNames(tarBuf);
    const byName = new Map(names.map((n) => [n.name, n]));
    expect(byName.has('etc/.wh.passwd')).toBe(true);
    if (driver === 'overlay') {
      expect(byName.has('usr/share/doc/.wh..wh..opq')).toBe(true); // deleted and recreated dir
      expect(names.findIndex((n) => n.name === 'usr/share/doc/.wh..wh..opq')).toBe(names.findIndex((n) => n.name === 'usr/share/doc/') + 1);
    } else {
      expect(byName.has('usr/share/doc/.wh.readme')).toBe(true); // a tree comparison sees a deleted child
    }
    expect(byName.has('bin/.wh.ping')).toBe(true);
    const links = names.filter((n) => n.type === 'link').map((n) => [n.name, n.linkname]);
    expect(links).toEqual([
      ['bin/tool-link', 'bin/tool'],
      ['sbin/tool', 'bin/tool'],
    ]);
    // parents come before children and siblings are sorted
    const plain = names.map((n) => n.name.replace(/\/$/, ''));
    for (let i = 1; i < plain.length; i++) {
      const [a, b] = [plain[i - 1]!, plain[i]!];
      const dirA = path.posix.dirname(a);
      if (dirA === path.posix.dirname(b)) expect(Buffer.compare(Buffer.from(a), Buffer.from(b)), `${a} < ${b}`).toBeLessThan(0);
    }

    // deterministic: the same snapshot diffs to the same bytes
    const again = (await s.diff('child', { dest: path.join(root, 'again.tar.gz') })) as LayerBlob;
    expect(again.digest).toBe(res.digest);

    // apply on the same parent in a fresh snapshotter root: the trees must match in every detail
    const root2 = await newRoot();
    const s2 = await open(root2);
    await s2.prepare('base-w');
    await s2.applyLayer('base-w', streamOf(baseLayer()));
    await s2.commit('base', 'base-w');
    await s2.prepare('re-w', 'base');
    const applied = await s2.applyLayer('re-w', fs.createReadStream(dest), res.mediaType);
    expect(applied.diffID).toBe(res.diffID);
    await s2.commit('re', 're-w');

    const original = await view(s, root, 'child');
    const reproduced = await view(s2, root2, 're');
    const want = await manifest(original, { mtimes: true });
    const got = await manifest(reproduced, { mtimes: true });
    expect(got).toEqual(want);
    const m = new Map(got.map((e) => [e.path, e]));
    expect(m.has('etc/passwd')).toBe(false);
    expect(m.get('bin/wall')?.mode).toBe('6711');
    expect(m.get('scratch')?.mode).toBe('1777');
    expect(m.get('var/empty')).toMatchObject({ type: 'dir', mode: '711' });
    expect(m.get('bin/cap')?.xattrs['security.capability']).toBe(CAP_NET_RAW.toString('hex'));
    expect(m.get('bin/ping2')?.xattrs['security.capability']).toBe(CAP_NET_RAW.toString('hex'));
    expect(m.get('dev/zero')).toMatchObject({ type: 'char', rdev: (0x105).toString(16) });
    expect(m.get('run/pipe')).toMatchObject({ type: 'fifo', mode: '640' });
    expect(m.get('usr/share/doc/new')).toBeDefined();
    expect(m.has('usr/share/doc/readme')).toBe(false);
    const ino = (p: string) => fs.statSync(path.join(reproduced, p)).ino;
    expect(ino('bin/tool-link')).toBe(ino('bin/tool'));
    expect(ino('sbin/tool')).toBe(ino('bin/tool'));
  });

  it('round-trips a base layer (no parent) and the result matches the original tree', async () => {
    const { root, s } = await withBase();
    const dest = path.join(root, 'base.tar');
    const res = (await s.diff('base', { dest, compression: 'none' })) as LayerBlob;
    expect(res.digest).toBe(res.diffID);
    expect(res.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');

    const root2 = await newRoot();
    const s2 = await open(root2);
    await s2.prepare('w');
    await s2.applyLayer('w', fs.createReadStream(dest));
    await s2.commit('c', 'w');
    expect(await manifest(await view(s2, root2, 'c'), { mtimes: true })).toEqual(await manifest(await view(s, root, 'base'), { mtimes: true }));
  });

  it('reports an unchanged snapshot as empty and writes no blob', async () => {
    const { root, s } = await withBase();
    await s.prepare('same-w', 'base');
    const t = await mounts.mount(await s.mounts('same-w'), path.join(root, 'mnt'));
    expect(await fsp.readFile(path.join(t, 'etc/passwd'), 'utf8')).toContain('root'); // reading changes nothing
    await mounts.unmountAll();
    await s.commit('same', 'same-w');
    const dest = path.join(root, 'none.tar.gz');
    expect(await s.diff('same', { dest })).toEqual({ empty: true });
    expect(fs.existsSync(dest)).toBe(false);
  });

  it('leaves out directories that were only copied up (a file made and removed, times restored)', async () => {
    const { root, s } = await withBase();
    await s.prepare('touched-w', 'base');
    const t = await mounts.mount(await s.mounts('touched-w'), path.join(root, 'mnt'));
    // What a RUN's mount stub does: a file appears in /etc and goes, and /etc's times are put back.
    const before = fs.statSync(path.join(t, 'etc'));
    fs.writeFileSync(path.join(t, 'etc/stub'), '');
    fs.rmSync(path.join(t, 'etc/stub'));
    fs.utimesSync(path.join(t, 'etc'), before.atime, before.mtime);
    // A directory whose mode really changes must stay in the layer.
    fs.chmodSync(path.join(t, 'shared'), 0o700);
    await mounts.unmountAll();
    await s.commit('touched', 'touched-w');
    const res = (await s.diff('touched', { dest: path.join(root, 'touched.tar.gz') })) as LayerBlob;
    expect(res.empty).toBe(false);
    const names = (await tarNames(execFileSync('gzip', ['-dc', res.path!]))).map((e) => e.name.replace(/\/$/, ''));
    expect(names).toContain('shared');
    expect(names.filter((n) => n.startsWith('etc'))).toEqual([]);
  });

  it('writes zstd blobs that zstd(1) decompresses to the diffID, and applies them back', async () => {
    const { root, s } = await withBase();
    await s.prepare('child-w', 'base');
    await change(await mounts.mount(await s.mounts('child-w'), path.join(root, 'mnt')));
    await mounts.unmountAll();
    await s.commit('child', 'child-w');
    const dest = path.join(root, 'layer.tar.zst');
    const res = (await s.diff('child', { dest, compression: 'zstd', flavor: 'docker' })) as LayerBlob;
    expect(res.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(res.digest).toBe(sha(await fsp.readFile(dest)));
    expect(res.diffID).toBe(sha(execFileSync('zstd', ['-dc', dest], { maxBuffer: 1 << 28 })));
    const gz = (await s.diff('child', { dest: path.join(root, 'layer.tar.gz'), flavor: 'docker' })) as LayerBlob;
    expect(gz.mediaType).toBe('application/vnd.docker.image.rootfs.diff.tar.gzip');
    expect(gz.diffID).toBe(res.diffID);

    await s.prepare('re-w', 'base');
    expect((await s.applyLayer('re-w', fs.createReadStream(dest))).diffID).toBe(res.diffID);
    await s.commit('re', 're-w');
    expect(await manifest(await view(s, root, 're'))).toEqual(await manifest(await view(s, root, 'child')));
  });
});
