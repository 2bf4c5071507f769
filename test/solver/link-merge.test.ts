// The merge of a COPY --link snapshot onto its stage, on both snapshot drivers: overlay semantics
// (files replace, directories merge with the layer's metadata winning, a directory replaces a base
// file or symlink, nothing is followed, nothing deleted), and exactly what an image consumer gets by
// applying the linked layer's blob on the base.
import * as fsp from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CopySnapshotter } from '../../src/snapshotter/copy.js';
import { OverlaySnapshotter } from '../../src/snapshotter/overlay.js';
import type { Snapshotter } from '../../src/snapshotter/types.js';
import { mergeLink } from '../../src/solver/link.js';
import { manifest, MountTracker, tmpRoot } from '../snapshotter/helpers.js';

const mounts = new MountTracker();
const roots: string[] = [];
afterEach(async () => {
  await mounts.unmountAll();
});
afterAll(async () => {
  await mounts.unmountAll();
  for (const r of roots) await fsp.rm(r, { recursive: true, force: true });
});

/** Makes committed snapshot `name` on `parent` with what `fill` writes into it. */
async function snapshot(s: Snapshotter, root: string, name: string, parent: string | undefined, fill: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mounts.mount(await s.prepare(`${name}-active`, parent), path.join(root, 'mnt', name));
  await fill(dir);
  await mounts.unmountAll();
  await s.commit(name, `${name}-active`);
}

async function viewOf(s: Snapshotter, root: string, name: string) {
  const dir = await mounts.mount(await s.view(`${name}-view`, name), path.join(root, 'mnt', `${name}-view`));
  // nlink is left out: the overlay merge hard-links the layer's files, which is invisible otherwise.
  return manifest(dir);
}

describe.each([
  ['overlay', (root: string) => new OverlaySnapshotter(root).init()],
  ['copy', (root: string) => new CopySnapshotter(root).init()],
] as const)('COPY --link merge, %s driver', (_driver, open) => {
  it('merges as overlay does and as applying the linked layer does', async () => {
    const root = await tmpRoot('kiln-link-');
    roots.push(root);
    const s = await open(path.join(root, 'snap'));
    const tmpDir = path.join(root, 'tmp');

    await snapshot(s, root, 'base', undefined, async (d) => {
      await fsp.mkdir(path.join(d, 'd'));
      await fsp.writeFile(path.join(d, 'd/keep'), 'base keep\n');
      await fsp.writeFile(path.join(d, 'd/over'), 'base over\n');
      await fsp.chmod(path.join(d, 'd'), 0o700);
      await fsp.chown(path.join(d, 'd'), 5, 5);
      await fsp.mkdir(path.join(d, 't'));
      await fsp.symlink('/t', path.join(d, 'sym'));
      await fsp.writeFile(path.join(d, 'was-file'), 'a file\n');
      await fsp.mkdir(path.join(d, 'was-dir'));
      await fsp.writeFile(path.join(d, 'was-dir/child'), 'child\n');
    });
    await snapshot(s, root, 'link', undefined, async (d) => {
      await fsp.mkdir(path.join(d, 'd'), { mode: 0o755 });
      await fsp.chmod(path.join(d, 'd'), 0o755);
      await fsp.writeFile(path.join(d, 'd/over'), 'linked over\n');
      await fsp.writeFile(path.join(d, 'd/new'), 'linked new\n', { mode: 0o600 });
      await fsp.chown(path.join(d, 'd/new'), 1000, 1001);
      await fsp.mkdir(path.join(d, 'sym'));
      await fsp.writeFile(path.join(d, 'sym/in'), 'in\n');
      await fsp.mkdir(path.join(d, 'was-file'));
      await fsp.writeFile(path.join(d, 'was-file/x'), 'x\n');
      await fsp.writeFile(path.join(d, 'was-dir'), 'now a file\n');
    });

    await mergeLink(s, tmpDir, 'base', 'link', 'merged');
    // Merging again (another build racing for the same key) keeps the first result.
    await mergeLink(s, tmpDir, 'base', 'link', 'merged');
    expect((await s.stat('merged')).parent).toBe('base');
    const merged = await viewOf(s, root, 'merged');
    const at = (p: string) => merged.find((e) => e.path === p);

    expect(at('d')).toMatchObject({ type: 'dir', mode: '755', uid: 0, gid: 0 }); // the layer's metadata
    expect(at('d/keep')).toMatchObject({ type: 'file', size: 'base keep\n'.length }); // directories merge
    expect(at('d/over')).toMatchObject({ size: 'linked over\n'.length }); // files replace
    expect(at('d/new')).toMatchObject({ mode: '600', uid: 1000, gid: 1001 });
    expect(at('sym')).toMatchObject({ type: 'dir' }); // the base's symlink is replaced, not followed
    expect(at('sym/in')).toMatchObject({ type: 'file' });
    expect(merged.filter((e) => e.path.startsWith('t/'))).toEqual([]);
    expect(at('was-file')).toMatchObject({ type: 'dir' });
    expect(at('was-file/x')).toMatchObject({ type: 'file' });
    expect(at('was-dir')).toMatchObject({ type: 'file', size: 'now a file\n'.length });
    expect(at('was-dir/child')).toBeUndefined();
    // The linked snapshot is untouched by the merge.
    expect((await viewOf(s, root, 'link')).map((e) => e.path)).toEqual(['d', 'd/new', 'd/over', 'sym', 'sym/in', 'was-dir', 'was-file', 'was-file/x']);

    // What an image consumer sees: the base, then the linked layer's blob applied.
    await fsp.mkdir(tmpDir, { recursive: true });
    const blob = path.join(tmpDir, 'link.tar');
    const diff = await s.diff('link', { dest: blob, compression: 'none' });
    if (diff.empty) throw new Error('the linked layer is not empty');
    await s.prepare('applied-active', 'base');
    await s.applyLayer('applied-active', createReadStream(blob), diff.mediaType);
    await s.commit('applied', 'applied-active');
    expect(merged).toEqual(await viewOf(s, root, 'applied'));
  });

  it('merges onto nothing (FROM scratch)', async () => {
    const root = await tmpRoot('kiln-link-');
    roots.push(root);
    const s = await open(path.join(root, 'snap'));
    await snapshot(s, root, 'link', undefined, async (d) => {
      await fsp.mkdir(path.join(d, 'app'));
      await fsp.writeFile(path.join(d, 'app/a'), 'a\n');
    });
    await mergeLink(s, path.join(root, 'tmp'), undefined, 'link', 'merged');
    expect((await s.stat('merged')).parent).toBeUndefined();
    expect((await viewOf(s, root, 'merged')).map((e) => e.path)).toEqual(['app', 'app/a']);
  });
});
