// DiffOptions.clampMtime (SOURCE_DATE_EPOCH, BuildKit's rewrite-timestamp): in the layer, times after
// the epoch become the epoch, older ones stay, whiteouts included; the same tree with other recent
// times gives the same bytes.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import tarStream from 'tar-stream';
import { treeChanges, writeLayer } from '../../src/snapshotter/diff.js';
import { tmpRoot } from './helpers.js';

const EPOCH = 1_500_000_000;
const OLD = 1_000_000_000;
const roots: string[] = [];
afterAll(async () => {
  for (const r of roots) await fsp.rm(r, { recursive: true, force: true });
});

async function mtimes(file: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const extract = tarStream.extract();
  const done = (async () => {
    for await (const e of extract) {
      out[e.header.name] = e.header.mtime!.getTime() / 1000;
      e.resume();
    }
  })();
  extract.end(await fsp.readFile(file));
  await done;
  return out;
}

/** parent: a file that the child removes; child: an old file, a new one, a new dir, at time `now`. */
async function trees(now: number): Promise<{ parent: string; child: string; dir: string }> {
  const dir = await tmpRoot('kiln-clamp-');
  roots.push(dir);
  const parent = path.join(dir, 'parent');
  const child = path.join(dir, 'child');
  await fsp.mkdir(parent);
  await fsp.writeFile(path.join(parent, 'gone'), 'x');
  await fsp.mkdir(path.join(child, 'new-dir'), { recursive: true });
  await fsp.writeFile(path.join(child, 'old'), 'old');
  await fsp.writeFile(path.join(child, 'new-dir', 'new'), 'new');
  await fsp.utimes(path.join(child, 'old'), OLD, OLD);
  await fsp.utimes(path.join(child, 'new-dir', 'new'), now, now);
  await fsp.utimes(path.join(child, 'new-dir'), now, now);
  return { parent, child, dir };
}

describe('writeLayer with clampMtime', () => {
  it('clamps later times to the epoch and keeps earlier ones', async () => {
    const { parent, child, dir } = await trees(EPOCH + 1000);
    const plain = await writeLayer(treeChanges(child, parent), { dest: path.join(dir, 'plain.tar'), compression: 'none' });
    const clamped = await writeLayer(treeChanges(child, parent), { dest: path.join(dir, 'clamped.tar'), compression: 'none', clampMtime: EPOCH });
    expect(await mtimes(path.join(dir, 'plain.tar'))).toMatchObject({ old: OLD, 'new-dir/': EPOCH + 1000, 'new-dir/new': EPOCH + 1000 });
    expect(await mtimes(path.join(dir, 'clamped.tar'))).toEqual({ '.wh.gone': 0, old: OLD, 'new-dir/': EPOCH, 'new-dir/new': EPOCH });
    expect(clamped.empty || plain.empty).toBe(false);
    if (!clamped.empty && !plain.empty) expect(clamped.diffID).not.toBe(plain.diffID);
  });

  it('two trees that differ only in times after the epoch give the same blob', async () => {
    const a = await trees(EPOCH + 10);
    const b = await trees(EPOCH + 99999);
    const la = await writeLayer(treeChanges(a.child, a.parent), { dest: path.join(a.dir, 'l.tgz'), clampMtime: EPOCH });
    const lb = await writeLayer(treeChanges(b.child, b.parent), { dest: path.join(b.dir, 'l.tgz'), clampMtime: EPOCH });
    expect(la.empty).toBe(false);
    expect(lb).toEqual({ ...la, path: path.join(b.dir, 'l.tgz') });
    const ua = await writeLayer(treeChanges(a.child, a.parent), { dest: path.join(a.dir, 'u.tgz') });
    const ub = await writeLayer(treeChanges(b.child, b.parent), { dest: path.join(b.dir, 'u.tgz') });
    expect(!ua.empty && !ub.empty && ua.digest !== ub.digest).toBe(true);
  });
});
