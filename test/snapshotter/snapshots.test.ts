// The snapshot lifecycle on real overlay mounts: chains, views, persistence across restarts, deep
// chains, crash cleanup. Runs as root on the machine's disk.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setAttribute } from '@napi-rs/xattr';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CopySnapshotter } from '../../src/snapshotter/copy.js';
import { compactOverlayOptions, isMountPoint } from '../../src/snapshotter/mount.js';
import { OverlaySnapshotter } from '../../src/snapshotter/overlay.js';
import { createSnapshotter, overlaySupported } from '../../src/snapshotter/probe.js';
import type { Snapshotter } from '../../src/snapshotter/types.js';
import { MountTracker, tmpRoot } from './helpers.js';

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

/** The snapshot's own dir, found the way the driver lays it out (for writing layers without a mount). */
async function upperOf(s: Snapshotter, key: string): Promise<string> {
  const m = await s.mounts(key);
  const up = m[0]!.options.find((o) => o.startsWith('upperdir='));
  return up ? up.slice('upperdir='.length) : m[0]!.source;
}

describe('driver selection', () => {
  it("probes overlay on this machine's disk and picks the overlay driver", async () => {
    const root = await newRoot();
    expect(await overlaySupported(root)).toBe(true);
    const s = await createSnapshotter(root);
    expect(s.driver).toBe('overlay');
    // the probe leaves nothing behind but its answer, kept for this kernel and file system
    expect((await fsp.readdir(root)).sort()).toEqual(['.driver.json', 'snapshots']);
    const kept = JSON.parse(await fsp.readFile(path.join(root, '.driver.json'), 'utf8')) as { overlay: boolean; kernel: string };
    expect(kept.overlay).toBe(true);
    // The next open believes it (a recorded "copy" answer is taken as is: no probe mount)...
    await fsp.writeFile(path.join(root, '.driver.json'), JSON.stringify({ ...kept, overlay: false }));
    expect((await createSnapshotter(root)).driver).toBe('copy');
    // ...for the same kernel only: another kernel probes again.
    await fsp.writeFile(path.join(root, '.driver.json'), JSON.stringify({ ...kept, overlay: false, kernel: 'another' }));
    expect((await createSnapshotter(root)).driver).toBe('overlay');
  });

  it('falls back to copying when the root itself is on overlayfs', async () => {
    const base = await newRoot();
    for (const d of ['lower', 'upper', 'work', 'merged']) await fsp.mkdir(path.join(base, d));
    const merged = await mounts.mount(
      [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${base}/lower`, `upperdir=${base}/upper`, `workdir=${base}/work`] }],
      path.join(base, 'merged'),
    );
    const s = await createSnapshotter(path.join(merged, 'snap'));
    expect(s.driver).toBe('copy');
  });
});

describe.each([
  ['overlay', (root: string) => new OverlaySnapshotter(root).init()],
  ['copy', (root: string) => new CopySnapshotter(root).init()],
] as const)('%s snapshotter', (driver, open) => {
  it('prepares, commits and mounts a chain; the merged view shows every layer', async () => {
    const root = await newRoot();
    const s = await open(root);
    expect(s.driver).toBe(driver);

    const m1 = await s.prepare('a-active');
    const t1 = await mounts.mount(m1, path.join(root, 'mnt1'));
    await fsp.writeFile(path.join(t1, 'one'), '1');
    await fsp.mkdir(path.join(t1, 'dir'));
    await fsp.writeFile(path.join(t1, 'dir/gone'), 'x');
    await mounts.unmountAll();
    await s.commit('a', 'a-active');

    const m2 = await s.prepare('b-active', 'a');
    const t2 = await mounts.mount(m2, path.join(root, 'mnt2'));
    expect(await fsp.readFile(path.join(t2, 'one'), 'utf8')).toBe('1');
    await fsp.writeFile(path.join(t2, 'two'), '2');
    await fsp.rm(path.join(t2, 'dir/gone'));
    await mounts.unmountAll();
    await s.commit('b', 'b-active');

    const m3 = await s.prepare('c-active', 'b');
    const t3 = await mounts.mount(m3, path.join(root, 'mnt3'));
    expect((await fsp.readdir(t3)).sort()).toEqual(['dir', 'one', 'two']);
    expect(await fsp.readdir(path.join(t3, 'dir'))).toEqual([]);
    await mounts.unmountAll();

    const infos = await s.list();
    expect(infos.map((i) => [i.key, i.kind, i.parent])).toEqual([
      ['a', 'committed', undefined],
      ['b', 'committed', 'a'],
      ['c-active', 'active', 'b'],
    ]);
    expect((await s.stat('b')).parent).toBe('a');
    expect((await s.usage('b')).inodes).toBeGreaterThan(0);

    await expect(s.remove('a')).rejects.toThrow(/parent of "b"/);
    await expect(s.prepare('x', 'c-active')).rejects.toThrow(/not committed/);
    await expect(s.prepare('c-active', 'b')).rejects.toThrow(/already exists/);
    await expect(s.commit('b', 'c-active')).rejects.toThrow(/already exists/);
    await expect(s.mounts('a')).rejects.toThrow(/cannot be mounted/);
    await s.remove('c-active');
    await s.remove('b');
    await s.remove('a');
    expect(await s.list()).toEqual([]);
    expect(await fsp.readdir(path.join(root, 'snapshots'))).toEqual([]);
  });

  it('views are read-only (one parent and several)', async () => {
    const root = await newRoot();
    const s = await open(root);
    await s.prepare('a-w');
    await fsp.writeFile(path.join(await upperOf(s, 'a-w'), 'a'), 'a');
    await s.commit('a', 'a-w');
    await s.prepare('b-w', 'a');
    await fsp.writeFile(path.join(await upperOf(s, 'b-w'), 'b'), 'b');
    await s.commit('b', 'b-w');

    const single = await mounts.mount(await s.view('v1', 'a'), path.join(root, 'v1'));
    expect(await fsp.readdir(single)).toEqual(['a']);
    await expect(fsp.writeFile(path.join(single, 'new'), 'x')).rejects.toMatchObject({ code: 'EROFS' });

    const multi = await mounts.mount(await s.view('v2', 'b'), path.join(root, 'v2'));
    expect((await fsp.readdir(multi)).sort()).toEqual(['a', 'b']);
    await expect(fsp.writeFile(path.join(multi, 'new'), 'x')).rejects.toMatchObject({ code: 'EROFS' });
    await expect(s.commit('v2c', 'v2')).rejects.toThrow(/only active/);
  });

  it('survives a restart: a new instance on the same root sees and mounts the same snapshots', async () => {
    const root = await newRoot();
    const s1 = await open(root);
    await s1.prepare('a-w', undefined, { labels: { 'kiln/step': '1' } });
    await fsp.writeFile(path.join(await upperOf(s1, 'a-w'), 'kept'), 'yes');
    await s1.commit('a', 'a-w');
    await s1.prepare('b-w', 'a');

    const s2 = await open(root);
    expect((await s2.list()).map((i) => i.key)).toEqual(['a', 'b-w']);
    expect((await s2.stat('a')).labels).toEqual({ 'kiln/step': '1' });
    const t = await mounts.mount(await s2.mounts('b-w'), path.join(root, 'mnt'));
    expect(await fsp.readFile(path.join(t, 'kept'), 'utf8')).toBe('yes');
    // ids keep counting up after a restart instead of reusing a live directory
    await s2.prepare('c-w', 'a');
    const dirs = (await fsp.readdir(path.join(root, 'snapshots'))).sort();
    expect(dirs).toEqual(['1', '2', '3']);
  });
});

describe('deep chains', () => {
  it('mounts a 120-layer overlay chain whose absolute options exceed a page', async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    let parent: string | undefined;
    for (let i = 0; i < 120; i++) {
      await s.prepare(`l${i}-w`, parent);
      const up = await upperOf(s, `l${i}-w`);
      await fsp.writeFile(path.join(up, `f${i}`), String(i));
      if (i === 5) await fsp.writeFile(path.join(up, 'shadowed'), 'old');
      if (i === 100) await fsp.writeFile(path.join(up, 'shadowed'), 'new');
      await s.commit(`l${i}`, `l${i}-w`);
      parent = `l${i}`;
    }
    const m = await s.prepare('top', parent);
    const opts = m[0]!.options.join(',');
    expect(opts.length).toBeGreaterThan(4096); // so the relative-path rewrite is really exercised
    expect(compactOverlayOptions(m[0]!.options).cwd).toBe(path.join(root, 'snapshots'));
    const t = await mounts.mount(m, path.join(root, 'mnt'));
    const names = await fsp.readdir(t);
    expect(names.length).toBe(121);
    expect(await fsp.readFile(path.join(t, 'f0'), 'utf8')).toBe('0');
    expect(await fsp.readFile(path.join(t, 'f119'), 'utf8')).toBe('119');
    expect(await fsp.readFile(path.join(t, 'shadowed'), 'utf8')).toBe('new');
    await fsp.writeFile(path.join(t, 'top-file'), 'x');
    expect(fs.existsSync(path.join(root, 'snapshots', '121', 'fs', 'top-file'))).toBe(true);
    await mounts.unmountAll();
    expect(await isMountPoint(t)).toBe(false);
  });
});

describe('chains past overlayfs limits', () => {
  it('mounts a 510-layer chain by flattening its bottom, keeping whiteouts and opaque dirs', async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    let parent: string | undefined;
    for (let i = 0; i < 510; i++) {
      await s.prepare(`l${i}-w`, parent);
      const up = await upperOf(s, `l${i}-w`);
      await fsp.writeFile(path.join(up, `f${i}`), String(i));
      if (i === 0) {
        await fsp.mkdir(path.join(up, 'd'));
        await fsp.writeFile(path.join(up, 'd/old'), 'old');
        await fsp.writeFile(path.join(up, 'doomed'), 'x');
      }
      if (i === 1) {
        // overlay's own forms, as a RUN would leave them: a whiteout device and an opaque dir
        execFileSync('mknod', [path.join(up, 'doomed'), 'c', '0', '0']);
        await fsp.mkdir(path.join(up, 'd'));
        await setAttribute(path.join(up, 'd'), 'trusted.overlay.opaque', 'y');
        await fsp.writeFile(path.join(up, 'd/new'), 'new');
      }
      await s.commit(`l${i}`, `l${i}-w`);
      parent = `l${i}`;
    }
    const m = await s.prepare('top', parent);
    const lowers = m[0]!.options.find((o) => o.startsWith('lowerdir='))!.split(':');
    expect(lowers.length).toBeLessThanOrEqual(500);
    expect(lowers.at(-1)).toMatch(/\/flat$/);
    const t = await mounts.mount(m, path.join(root, 'mnt'));
    expect((await fsp.readdir(t)).length).toBe(511); // f0..f509 and d; doomed is gone
    expect(fs.existsSync(path.join(t, 'doomed'))).toBe(false);
    expect(await fsp.readdir(path.join(t, 'd'))).toEqual(['new']);
    expect(await fsp.readFile(path.join(t, 'f0'), 'utf8')).toBe('0');
    expect(await fsp.readFile(path.join(t, 'f509'), 'utf8')).toBe('509');
    // the flattened copy is reused by the next mount instead of being rebuilt
    const flat = lowers.at(-1)!.replace(/^lowerdir=/, '');
    const before = fs.statSync(flat).ino;
    await s.view('v', parent);
    expect(fs.statSync(flat).ino).toBe(before);
  }, 300_000);
});

describe('crash cleanup', () => {
  // The child compiles nothing: it imports the TypeScript sources through the tsc output built in beforeAll.
  let CHILD_SCRIPT = '';
  beforeAll(async () => {
    const out = await tmpRoot('kiln-snap-build-');
    roots.push(out);
    await new Promise<void>((resolve, reject) => {
      const tsc = spawn(
        path.resolve('node_modules/.bin/tsc'),
        [
          '--ignoreConfig',
          '--outDir',
          out,
          '--rootDir',
          'src',
          '--module',
          'nodenext',
          '--moduleResolution',
          'nodenext',
          '--target',
          'es2022',
          '--skipLibCheck',
          '--types',
          'node',
          '--declaration',
          'false',
          'src/snapshotter/index.ts',
        ],
        { stdio: 'inherit' },
      );
      tsc.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tsc exited ${code}`))));
    });
    await fsp.writeFile(path.join(out, 'package.json'), '{"type":"module"}');
    await fsp.symlink(path.resolve('node_modules'), path.join(out, 'node_modules'));
    CHILD_SCRIPT = `
      const { OverlaySnapshotter } = await import(${JSON.stringify(path.join(out, 'snapshotter/index.js'))});
      const s = await new OverlaySnapshotter(process.argv[1]).init();
      await s.prepare('killed-build', 'base');
      console.log('prepared');
      setInterval(() => {}, 1000);
    `;
  }, 120_000);

  it("tells a committed snapshot's directories from its layers without a mount; whiteouts, opaque directories, files and links say no", async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    const base = await mounts.mount(await s.prepare('base-w'), path.join(root, 'mnt-base'));
    for (const d of ['a/b', 'o/x', 'gone', 'kept/deep']) await fsp.mkdir(path.join(base, d), { recursive: true });
    await fsp.writeFile(path.join(base, 'f'), 'file');
    for (const f of ['a/file', 'o/x/file', 'gone/file', 'kept/deep/file']) await fsp.writeFile(path.join(base, f), f);
    await fsp.symlink('a', path.join(base, 'l'));
    await mounts.unmountAll();
    await s.commit('base', 'base-w');
    // Through a real overlay mount: removals become whiteouts, a directory made again is opaque.
    const child = await mounts.mount(await s.prepare('child-w', 'base'), path.join(root, 'mnt-child'));
    await fsp.rm(path.join(child, 'a/b'), { recursive: true });
    await fsp.rm(path.join(child, 'gone'), { recursive: true });
    await fsp.rm(path.join(child, 'o'), { recursive: true });
    await fsp.mkdir(path.join(child, 'o'));
    await fsp.mkdir(path.join(child, 'new'));
    await fsp.writeFile(path.join(child, 'new/file'), 'new');
    await fsp.appendFile(path.join(child, 'kept/deep/file'), ' changed'); // copied up into the child
    await mounts.unmountAll();
    await s.commit('child', 'child-w');

    const answers = async (key: string, dirs: string[]) => Promise.all(dirs.map(async (d) => [d, await s.isDirectory(key, d)] as const));
    expect(await answers('child', ['/', '/a', '/o', '/new', '/kept/deep', '/a/b', '/gone', '/o/x', '/f', '/l', '/l/b', '/missing', 'a', '/a/../a'])).toEqual([
      ['/', true],
      ['/a', true],
      ['/o', true],
      ['/new', true],
      ['/kept/deep', true],
      ['/a/b', false], // a whiteout in the child
      ['/gone', false],
      ['/o/x', false], // below an opaque directory
      ['/f', false],
      ['/l', false], // a link: unsure, the caller mounts
      ['/l/b', false],
      ['/missing', false],
      ['a', false], // not absolute
      ['/a/../a', false], // not clean
    ]);
    // The base still has what the child hid; an active snapshot is never answered from its layers.
    expect(await answers('base', ['/a/b', '/o/x', '/gone'])).toEqual([
      ['/a/b', true],
      ['/o/x', true],
      ['/gone', true],
    ]);
    // Regular files: the layer a mount would show each from, or nothing when unsure.
    const childLayer = path.join(await s.location('child'), 'fs');
    const baseLayer = path.join(await s.location('base'), 'fs');
    const files = ['/f', '/a/file', '/new/file', '/kept/deep/file', '/o/x/file', '/gone/file', '/l', '/l/file', '/a', '/missing', 'f', '/a/../f'];
    expect(await Promise.all(files.map(async (f) => [f, await s.layerOfFile('child', f)] as const))).toEqual([
      ['/f', baseLayer],
      ['/a/file', baseLayer],
      ['/new/file', childLayer],
      ['/kept/deep/file', childLayer],
      ['/o/x/file', undefined], // below an opaque directory
      ['/gone/file', undefined], // below a whiteout
      ['/l', undefined], // a link
      ['/l/file', undefined],
      ['/a', undefined], // a directory
      ['/missing', undefined],
      ['f', undefined],
      ['/a/../f', undefined],
    ]);
    expect(await fsp.readFile(path.join(childLayer, 'kept/deep/file'), 'utf8')).toBe('kept/deep/file changed');
    expect(await s.layerOfFile('base', '/o/x/file')).toBe(baseLayer);
    await s.prepare('open', 'child');
    expect(await s.isDirectory('open', '/a')).toBe(false);
    expect(await s.layerOfFile('open', '/f')).toBeUndefined();
  });

  it('removes an active snapshot left by a SIGKILLed process and orphaned directories', async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    await s.prepare('base-w');
    await s.commit('base', 'base-w');
    await s.prepare('mine', 'base'); // owned by this (live) process: must survive cleanup

    // A real process prepares a snapshot and is killed while "building" on it.
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD_SCRIPT, root], { stdio: ['ignore', 'pipe', 'inherit'], cwd: process.cwd() });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('prepared') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited early: ${code}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    // A crash between mkdir and the metadata write leaves a directory with no record.
    await fsp.mkdir(path.join(root, 'snapshots', '999', 'fs'), { recursive: true });

    const s2 = await new OverlaySnapshotter(root).init();
    expect((await s2.list()).map((i) => i.key)).toEqual(['base', 'killed-build', 'mine']);
    // What GC counts as temporary until then: the directory no record names, nothing else.
    expect(await s2.strayDirs()).toEqual([path.join(root, 'snapshots', '999')]);
    const report = await s2.cleanup();
    expect(report.removedSnapshots).toEqual(['killed-build']);
    expect(report.removedDirs).toEqual([path.join(root, 'snapshots', '999')]);
    expect((await s2.list()).map((i) => i.key)).toEqual(['base', 'mine']);
    expect((await fsp.readdir(path.join(root, 'snapshots'))).sort()).toEqual(['1', '2']);
    expect(await s2.strayDirs()).toEqual([]);
  });

  it('keeps reuse records (touch) in memory until the next update or flush, and never loses one that was flushed', async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    await s.prepare('a');
    await s.commit('base', 'a');
    const at = new Date('2026-01-02T03:04:05Z');
    const onDisk = () => new OverlaySnapshotter(root).init().then((o) => o.stat('base'));
    await s.touch('base', at);
    // Seen at once by this snapshotter; not yet written (a cached build no longer pays two fsyncs per step).
    expect(await s.stat('base')).toMatchObject({ lastUsed: at.toISOString(), usageCount: 1 });
    expect((await onDisk()).usageCount).toBeUndefined();
    await s.flush();
    expect(await onDisk()).toMatchObject({ lastUsed: at.toISOString(), usageCount: 1 });
    // A real update carries pending touches with it.
    await s.touch('base');
    await s.prepare('b', 'base');
    expect((await onDisk()).usageCount).toBe(2);
    await expect(s.touch('missing')).rejects.toThrow(/not found/);
    await s.flush(); // nothing pending: no write, no error
  });

  it('keeps metadata whole when killed mid-write (only complete documents are ever renamed in)', async () => {
    const root = await newRoot();
    const s = await new OverlaySnapshotter(root).init();
    await s.prepare('a');
    // a leftover temp file from a killed writer must not be read or break anything
    await fsp.writeFile(path.join(root, 'metadata.json.tmp-12345'), '{"version":1,"nextId');
    const s2 = await new OverlaySnapshotter(root).init();
    expect((await s2.list()).map((i) => i.key)).toEqual(['a']);
  });
});
