// COPY cache keys from the context: what changes them and what does not, the memo (a second run
// reads nothing), and its persistence across processes.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChecksumMemo, RACY_MS, checksumEntries, selectEntries, type SelectOptions } from '../../src/cache/checksum.js';
import { walkContext } from '../../src/context/index.js';
import { closePool, poolCounters } from '../../src/workers/index.js';
import { compileSources } from '../workers/compile.js';

const tmp: string[] = [];
function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmp.push(d);
  return d;
}

function write(root: string, rel: string, content: string | Buffer, mode?: number): string {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  if (mode !== undefined) fs.chmodSync(p, mode);
  return p;
}

/** Waits until files written so far are old enough for the memo to trust their stamps. */
const settle = () => new Promise((r) => setTimeout(r, RACY_MS + 150));

async function key(dir: string, sources: string[], opts: SelectOptions = {}, cacheDir?: string): Promise<string> {
  const sel = selectEntries(await walkContext(dir), sources, opts);
  return checksumEntries(dir, sel, cacheDir === undefined ? {} : { cacheDir });
}

/** Files whose content was read by the pool while `fn` ran. */
async function hashedDuring(fn: () => Promise<unknown>): Promise<number> {
  const before = poolCounters().filesHashed;
  await fn();
  return poolCounters().filesHashed - before;
}

afterAll(async () => {
  await closePool();
  for (const d of tmp) fs.rmSync(d, { recursive: true, force: true });
});

describe('context checksums: what changes a key', () => {
  let ctx: string;
  beforeAll(() => {
    ctx = tempDir('kiln-key-ctx-');
    write(ctx, 'a.txt', 'A');
    write(ctx, 'a-copy.txt', 'A');
    write(ctx, 'b.txt', 'B');
    write(ctx, 'src/x.js', 'x');
    write(ctx, 'src/y.js', 'y');
    write(ctx, 'src/README', 'read me');
    write(ctx, 'src/sub/z.js', 'z');
    write(ctx, 'ignored.log', 'noise');
    write(ctx, '.dockerignore', '*.log\n');
    fs.symlinkSync('a.txt', path.join(ctx, 'link-a'));
    fs.symlinkSync('x.js', path.join(ctx, 'src/lx'));
  });

  /** Runs `change`, checks the key against the one before, runs `undo` and checks it is back. */
  async function expectChange(sources: string[], change: () => void, undo: (() => void) | undefined, differs: boolean, opts: SelectOptions = {}) {
    const before = await key(ctx, sources, opts);
    change();
    const after = await key(ctx, sources, opts);
    if (differs) expect(after).not.toBe(before);
    else expect(after).toBe(before);
    if (undo) {
      undo();
      expect(await key(ctx, sources, opts)).toBe(before);
    }
  }

  it('is a sha256, stable between runs, and differs between selections', async () => {
    const k = await key(ctx, ['src']);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(await key(ctx, ['src'])).toBe(k);
    expect(await key(ctx, ['src/*.js'])).not.toBe(k);
    expect(await key(ctx, ['a.txt'])).not.toBe(await key(ctx, ['b.txt']));
  });

  it('touching a file does not change it', async () => {
    const p = path.join(ctx, 'src/x.js');
    await expectChange(['src'], () => fs.utimesSync(p, new Date(), new Date(Date.now() + 60_000)), undefined, false);
  });

  it("takes the walk's own stats when it has them: a warm key stats no file again, and is the same key", async () => {
    const dir = tempDir('kiln-ck-seen-');
    for (let i = 0; i < 20; i++) write(dir, `d/f${i}.txt`, `file ${i}`);
    fs.symlinkSync('d/f1.txt', path.join(dir, 'link'));
    await new Promise((r) => setTimeout(r, RACY_MS + 100)); // no file is too fresh to be trusted
    const cacheDir = tempDir('kiln-ck-seen-memo-');
    const keyWith = async (stats: boolean) => checksumEntries(dir, selectEntries(await walkContext(dir, { stats }), ['.']), { cacheDir });
    const cold = await keyWith(true);
    const counted = async (stats: boolean) => {
      const before = poolCounters();
      const k = await keyWith(stats);
      const after = poolCounters();
      return {
        k,
        stats: after.quickStats - before.quickStats,
        hashed: after.filesHashed - before.filesHashed,
        scans: after.tasks.scanFiles - before.tasks.scanFiles,
      };
    };
    // Nothing to scan at all: the symlink too is taken as the walk read it.
    expect(await counted(true)).toEqual({ k: cold, stats: 0, hashed: 0, scans: 0 });
    // Without them every known path is stat'ed here (the counter sees it), for the same key.
    const plain = await counted(false);
    expect(plain).toMatchObject({ k: cold, hashed: 0 });
    expect(plain.stats).toBeGreaterThanOrEqual(21);
  });

  it('changing a byte does, and changing it back restores it', async () => {
    const p = path.join(ctx, 'src/x.js');
    await expectChange(
      ['src/*.js'],
      () => fs.writeFileSync(p, 'X'),
      () => fs.writeFileSync(p, 'x'),
      true,
    );
  });

  it('a content change that keeps size and mtime is still seen (ctime)', async () => {
    const p = path.join(ctx, 'src/y.js');
    const st = fs.statSync(p);
    await expectChange(
      ['src'],
      () => {
        fs.writeFileSync(p, 'Y');
        fs.utimesSync(p, st.atime, st.mtime);
      },
      () => fs.writeFileSync(p, 'y'),
      true,
    );
  });

  it('changing a mode does', async () => {
    const p = path.join(ctx, 'src/sub/z.js');
    await expectChange(
      ['src'],
      () => fs.chmodSync(p, 0o755),
      () => fs.chmodSync(p, 0o644),
      true,
    );
  });

  it('renaming a file a wildcard selects does; adding a file it selects does', async () => {
    const from = path.join(ctx, 'src/y.js');
    const to = path.join(ctx, 'src/w.js');
    await expectChange(
      ['src/*.js'],
      () => fs.renameSync(from, to),
      () => fs.renameSync(to, from),
      true,
    );
    const extra = path.join(ctx, 'src/new.js');
    await expectChange(
      ['src/*.js'],
      () => fs.writeFileSync(extra, 'n'),
      () => fs.rmSync(extra),
      true,
    );
  });

  it('an unselected sibling, an ignored file or an excluded one does not', async () => {
    const readme = path.join(ctx, 'src/README');
    await expectChange(
      ['src/*.js'],
      () => fs.writeFileSync(readme, 'changed'),
      () => fs.writeFileSync(readme, 'read me'),
      false,
    );
    await expectChange(
      ['src/*.js'],
      () => fs.writeFileSync(path.join(ctx, 'src/new.txt'), 'n'),
      () => fs.rmSync(path.join(ctx, 'src/new.txt')),
      false,
    );
    await expectChange(
      ['a.txt'],
      () => fs.writeFileSync(path.join(ctx, 'b.txt'), 'BB'),
      () => fs.writeFileSync(path.join(ctx, 'b.txt'), 'B'),
      false,
    );
    await expectChange(['.'], () => fs.writeFileSync(path.join(ctx, 'ignored.log'), 'more noise'), undefined, false);
    await expectChange(
      ['src'],
      () => fs.writeFileSync(path.join(ctx, 'src/x.js'), 'X'),
      () => fs.writeFileSync(path.join(ctx, 'src/x.js'), 'x'),
      false,
      { exclude: ['x.js'] },
    );
  });

  it('owners do not (COPY from the context makes them 0:0 or --chown)', async () => {
    const p = path.join(ctx, 'a.txt');
    await expectChange(
      ['a.txt'],
      () => fs.chownSync(p, 1234, 5678),
      () => fs.chownSync(p, 0, 0),
      false,
    );
  });

  it('xattrs do (the copy carries them)', async () => {
    const p = path.join(ctx, 'src/x.js');
    await expectChange(['src'], () => setAttributeSync(p, 'user.kiln.test', 'v1'), undefined, true);
    await expectChange(['src'], () => setAttributeSync(p, 'user.kiln.test', 'v2'), undefined, true);
  });

  it('a link inside a copied directory counts by its target text', async () => {
    const l = path.join(ctx, 'src/lx');
    await expectChange(
      ['src'],
      () => {
        fs.rmSync(l);
        fs.symlinkSync('y.js', l);
      },
      () => {
        fs.rmSync(l);
        fs.symlinkSync('x.js', l);
      },
      true,
    );
  });

  it('a named symlink counts by what it points at: its content, not which file holds it', async () => {
    const l = path.join(ctx, 'link-a');
    await expectChange(
      ['link-a'],
      () => fs.writeFileSync(path.join(ctx, 'a.txt'), 'A2'),
      () => fs.writeFileSync(path.join(ctx, 'a.txt'), 'A'),
      true,
    );
    await expectChange(
      ['link-a'],
      () => {
        fs.rmSync(l);
        fs.symlinkSync('a-copy.txt', l); // same content and mode: the copy is the same
      },
      () => {
        fs.rmSync(l);
        fs.symlinkSync('a.txt', l);
      },
      false,
    );
  });

  it('hard links among the copied files do', async () => {
    const h = path.join(ctx, 'src/hard.js');
    fs.writeFileSync(h, 'x');
    try {
      await expectChange(
        ['src'],
        () => {
          fs.rmSync(h);
          fs.linkSync(path.join(ctx, 'src/x.js'), h);
        },
        undefined,
        true,
      );
    } finally {
      fs.rmSync(h);
    }
  });

  it("a directory source's own mode only counts with --parents (where the copy recreates it)", async () => {
    const d = path.join(ctx, 'src/sub');
    await expectChange(
      ['src/sub'],
      () => fs.chmodSync(d, 0o700),
      () => fs.chmodSync(d, 0o755),
      false,
    );
    await expectChange(
      ['src/sub'],
      () => fs.chmodSync(d, 0o700),
      () => fs.chmodSync(d, 0o755),
      true,
      { parents: true },
    );
    await expectChange(
      ['src'],
      () => fs.chmodSync(d, 0o700),
      () => fs.chmodSync(d, 0o755),
      true,
    );
  });

  it('a missing source gives a key of its own instead of throwing (the copy reports it)', async () => {
    const k = await key(ctx, ['nope.txt']);
    expect(k).not.toBe(await key(ctx, ['other.txt']));
  });
});

describe('context checksums: memo', () => {
  let ctx: string;
  const N = 40;
  beforeAll(async () => {
    ctx = tempDir('kiln-memo-ctx-');
    for (let i = 0; i < N; i++) write(ctx, `d${i % 4}/f${i}.txt`, `file ${i}\n`);
    await settle();
  });

  it('reads every selected file once, then nothing until one changes', async () => {
    const k1 = await key(ctx, ['.']);
    let k2 = '';
    expect(await hashedDuring(async () => (k2 = await key(ctx, ['.'])))).toBe(0);
    expect(k2).toBe(k1);
    // A touch re-reads that one file (its stamp moved) and keeps the key.
    fs.utimesSync(path.join(ctx, 'd0/f0.txt'), new Date(), new Date());
    expect(await hashedDuring(async () => (k2 = await key(ctx, ['.'])))).toBe(1);
    expect(k2).toBe(k1);
  });

  it('a file changed just now is read again next time (its stamp is not trusted yet)', async () => {
    const p = write(ctx, 'fresh.txt', 'fresh');
    expect(await hashedDuring(() => key(ctx, ['fresh.txt']))).toBe(1);
    expect(await hashedDuring(() => key(ctx, ['fresh.txt']))).toBe(1);
    fs.rmSync(p);
  });

  it('is persisted under the cache dir: a process that forgot everything reads nothing', async () => {
    const cacheDir = tempDir('kiln-memo-cache-');
    const k1 = await key(ctx, ['d1', 'd2'], {}, cacheDir);
    const files = fs.readdirSync(cacheDir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^[0-9a-f]{64}\.json$/);
    ChecksumMemo.forgetAll();
    let k2 = '';
    expect(await hashedDuring(async () => (k2 = await key(ctx, ['d1', 'd2'], {}, cacheDir)))).toBe(0);
    expect(k2).toBe(k1);
  });

  it('drops files that left the context, and survives a corrupt memo file', async () => {
    const cacheDir = tempDir('kiln-memo-cache-');
    const gone = write(ctx, 'gone/old.txt', 'old');
    await key(ctx, ['.'], {}, cacheDir);
    const file = path.join(cacheDir, fs.readdirSync(cacheDir)[0]!);
    fs.rmSync(path.dirname(gone), { recursive: true });
    await key(ctx, ['d0'], {}, cacheDir);
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { paths: string[] };
    expect(saved.paths.some((p) => p.startsWith('gone'))).toBe(false);
    expect(saved.paths).toContain('d1/f1.txt');

    fs.writeFileSync(file, '{"v":1,"context":');
    ChecksumMemo.forgetAll();
    const k = await key(ctx, ['d0'], {}, cacheDir);
    expect(k).toBe(await key(ctx, ['d0']));
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toMatchObject({ v: 2 });
  });

  it('a new process (compiled, as dist/ runs) reads nothing the memo file already covers', async () => {
    await settle(); // files touched by the tests above are trusted again
    const cacheDir = tempDir('kiln-memo-cache-');
    const k = await key(ctx, ['.'], {}, cacheDir);
    const built = await compileSources(['src/cache/checksum.ts', 'src/context/index.ts', 'src/workers/index.ts']);
    try {
      const script = `
        const { checksumEntries, selectEntries } = await import(${JSON.stringify(path.join(built.dir, 'cache/checksum.js'))});
        const { walkContext } = await import(${JSON.stringify(path.join(built.dir, 'context/index.js'))});
        const { poolCounters } = await import(${JSON.stringify(path.join(built.dir, 'workers/index.js'))});
        const ctx = ${JSON.stringify(ctx)};
        const key = await checksumEntries(ctx, selectEntries(await walkContext(ctx), ['.']), { cacheDir: ${JSON.stringify(cacheDir)} });
        console.log(JSON.stringify({ key, hashed: poolCounters().filesHashed }));`;
      const run = () => {
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        return JSON.parse(r.stdout) as { key: string; hashed: number };
      };
      expect(run()).toEqual({ key: k, hashed: 0 });
      // Without the memo file a process reads every file, and still agrees on the key.
      fs.rmSync(cacheDir, { recursive: true });
      expect(run()).toEqual({ key: k, hashed: N });
      expect(run()).toEqual({ key: k, hashed: 0 });
    } finally {
      built.cleanup();
    }
  });
  it('is not written again when nothing changed', async () => {
    // After 'a new process ...', which waited for the files touched before it to be trusted.
    const cacheDir = tempDir('kiln-memo-cache-');
    await key(ctx, ['.'], {}, cacheDir);
    const file = path.join(cacheDir, fs.readdirSync(cacheDir)[0]!);
    // A save writes a new file: it would have a new mtime (the inode number may come back).
    const past = new Date(Date.now() - 3_600_000);
    fs.utimesSync(file, past, past);
    const saved = () => fs.statSync(file).mtimeMs;
    const mtime = saved();
    ChecksumMemo.forgetAll();
    expect(await hashedDuring(() => key(ctx, ['.'], {}, cacheDir))).toBe(0);
    expect(await hashedDuring(() => key(ctx, ['d1'], {}, cacheDir))).toBe(0);
    expect(saved()).toBe(mtime);
    // A change is saved.
    fs.utimesSync(path.join(ctx, 'd1/f1.txt'), new Date(), new Date(Date.now() - 10_000));
    await settle();
    await key(ctx, ['d1'], {}, cacheDir);
    expect(saved()).not.toBe(mtime);
  });

  it('reads a format 1 file (what earlier versions wrote), and saves it back as format 2', async () => {
    const cacheDir = tempDir('kiln-memo-cache-');
    const k = await key(ctx, ['.'], {}, cacheDir);
    const file = path.join(cacheDir, fs.readdirSync(cacheDir)[0]!);
    const v2 = JSON.parse(fs.readFileSync(file, 'utf8')) as { context: string; paths: string[]; stamps: string[]; digests: string[]; xattrs: string[] };
    const files = Object.fromEntries(v2.paths.map((p, i) => [p, [v2.stamps[i], v2.digests[i], v2.xattrs[i]]]));
    fs.writeFileSync(file, JSON.stringify({ v: 1, context: v2.context, files }));
    ChecksumMemo.forgetAll();
    let k2 = '';
    expect(await hashedDuring(async () => (k2 = await key(ctx, ['.'], {}, cacheDir)))).toBe(0);
    expect(k2).toBe(k);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(v2);
    // A format 2 file whose columns disagree is no memo at all: every file is read again.
    fs.writeFileSync(file, JSON.stringify({ ...v2, digests: v2.digests.slice(1) }));
    ChecksumMemo.forgetAll();
    expect(await hashedDuring(async () => (k2 = await key(ctx, ['.'], {}, cacheDir)))).toBe(N);
    expect(k2).toBe(k);
  });
});
