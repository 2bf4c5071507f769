import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_SEED } from '../../bench/args.js';
import { intBetween, mulberry32, subSeed, textBytes } from '../../bench/rng.js';
import {
  BIGCTX_EDITED,
  BIGCTX_MAX_SIZE,
  BIGCTX_MIN_SIZE,
  concurrentDir,
  contextDigest,
  WORKLOAD_NAMES,
  WORKLOADS,
  writeContext,
  type ContextFile,
} from '../../bench/workloads.js';

const files = (name: (typeof WORKLOAD_NAMES)[number], seed: number): ContextFile[] => [...WORKLOADS[name].files(seed)];
const dockerfile = (name: (typeof WORKLOAD_NAMES)[number]) =>
  files(name, 1)
    .find((f) => f.path === 'Dockerfile')!
    .content.toString();

describe('rng', () => {
  it('is a fixed sequence for a seed (these values must never change: results compare across commits)', () => {
    const r = mulberry32(42);
    expect([r(), r(), r()]).toEqual([2581720956, 1925393290, 3661312704]);
  });

  it('intBetween stays in range and reaches both ends', () => {
    const r = mulberry32(1);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const x = intBetween(r, 3, 6);
      expect(x).toBeGreaterThanOrEqual(3);
      expect(x).toBeLessThanOrEqual(6);
      seen.add(x);
    }
    expect([...seen].sort()).toEqual([3, 4, 5, 6]);
  });

  it('subSeed separates labels and seeds', () => {
    expect(subSeed(1, 'a')).toBe(subSeed(1, 'a'));
    expect(subSeed(1, 'a')).not.toBe(subSeed(1, 'b'));
    expect(subSeed(1, 'a')).not.toBe(subSeed(2, 'a'));
  });

  it('textBytes is printable and of the exact size', () => {
    for (const size of [0, 1, 3, 4, 5, 999]) {
      const b = textBytes(mulberry32(size), size);
      expect(b.length).toBe(size);
      expect(/^[\x20-\x7e\n]*$/.test(b.toString('latin1'))).toBe(true);
    }
  });
});

describe('workload generation', () => {
  it.each(WORKLOAD_NAMES)('%s: same seed, same context; the Dockerfile comes first', (name) => {
    const a = files(name, 7);
    // concurrent has one context per build, each a directory with its Dockerfile first.
    expect(a[0]!.path).toBe(name === 'concurrent' ? 'b1/Dockerfile' : 'Dockerfile');
    expect(contextDigest(files(name, 7))).toBe(contextDigest(a));
  });

  it('the default seed gives the same bigctx as when these figures started (results compare across commits)', () => {
    expect(contextDigest(files('bigctx', DEFAULT_SEED))).toBe('sha256:76c1dfcafd333e2bd60fc288f3319e99eda2b7c97ae142dfa1946e34427c79af');
  });

  it('a different seed changes generated content (hello, bigctx) but not fixed Dockerfiles', () => {
    expect(contextDigest(files('hello', 1))).not.toBe(contextDigest(files('hello', 2)));
    expect(contextDigest(files('bigctx', 1))).not.toBe(contextDigest(files('bigctx', 2)));
    expect(contextDigest(files('manyfiles', 1))).toBe(contextDigest(files('manyfiles', 2)));
  });

  it('contextDigest sees paths, not only contents', () => {
    const c = Buffer.from('x');
    expect(contextDigest([{ path: 'a', content: c }])).not.toBe(contextDigest([{ path: 'b', content: c }]));
    // "ab" + "" and "a" + "b" must not collide.
    expect(contextDigest([{ path: 'a', content: Buffer.from('b') }])).not.toBe(contextDigest([{ path: 'ab', content: Buffer.alloc(0) }]));
  });

  it('bigctx: 100 x 100 files under src/ and node_modules/, every tenth a .log, 200-8000 bytes, and its .dockerignore', () => {
    const all = files('bigctx', 20240501);
    const tree = all.filter((f) => f.path.startsWith('src/') || f.path.startsWith('node_modules/'));
    expect(tree).toHaveLength(20_000);
    expect(tree.filter((f) => f.path.startsWith('src/'))).toHaveLength(10_000);
    expect(new Set(tree.map((f) => f.path.split('/').slice(0, 2).join('/'))).size).toBe(200);
    expect(tree.filter((f) => f.path.endsWith('.log'))).toHaveLength(2_000);
    for (const f of tree) {
      expect(f.content.length).toBeGreaterThanOrEqual(BIGCTX_MIN_SIZE);
      expect(f.content.length).toBeLessThanOrEqual(BIGCTX_MAX_SIZE);
    }
    const sizes = new Set(tree.map((f) => f.content.length));
    expect(sizes.size).toBeGreaterThan(1000); // sizes vary, not one size
    expect(
      all
        .find((f) => f.path === '.dockerignore')!
        .content.toString()
        .split('\n')
        .filter(Boolean),
    ).toEqual(['node_modules', '**/*.log', '!keep.log']);
    expect(all.some((f) => f.path === 'keep.log')).toBe(true);
    expect(new Set(all.map((f) => f.path)).size).toBe(all.length);
    expect(dockerfile('bigctx')).toBe('FROM busybox\nWORKDIR /app\nCOPY . .\nRUN find /app -type f | wc -l > /count\n');
  });

  it('bigctx edit: deterministic, a different content every round, on a file the .dockerignore keeps', () => {
    const w = WORKLOADS.bigctx;
    expect(BIGCTX_EDITED).toMatch(/^src\/.*\.ts$/);
    const e0 = w.edit!(5, 0);
    expect(e0.path).toBe(BIGCTX_EDITED);
    expect(w.edit!(5, 0).content.equals(e0.content)).toBe(true);
    const contents = [0, 1, 2, 3].map((r) => w.edit!(5, r).content.toString());
    expect(new Set(contents).size).toBe(4);
    const original = files('bigctx', 5)
      .find((f) => f.path === BIGCTX_EDITED)!
      .content.toString();
    expect(contents).not.toContain(original);
  });

  it('Dockerfiles say what the brief says', () => {
    const hello = dockerfile('hello');
    for (const i of ['FROM busybox', 'RUN echo hello > /hello && mkdir -p /data', 'COPY ', 'WORKDIR ', 'ENV ', 'CMD ']) expect(hello).toContain(i);
    const par = dockerfile('parallel');
    expect(par.match(/^FROM busybox AS /gm)).toHaveLength(4);
    expect(par.match(/RUN sleep 2 && echo . > \/out-./g)).toHaveLength(4);
    expect(par.match(/^COPY --from=/gm)).toHaveLength(4);
    const many = dockerfile('manyfiles');
    expect(many).toMatch(/^FROM debian:bookworm\n/);
    expect(many).toContain('$(seq 0 299)');
    expect(many).toContain('$(seq 0 99)');
    expect(many).toContain('rm -rf /usr/share/doc');
    const big = dockerfile('bigfile');
    expect(big).toContain(`head -c ${256 * 1024 * 1024} /dev/urandom`);
    expect(big.match(/head -c 268435456/g)).toHaveLength(2);
  });

  it('scenarios: edit only for bigctx, concurrent only for its own workload', () => {
    const want = (n: string) => (n === 'bigctx' ? ['cold', 'warm', 'edit'] : n === 'concurrent' ? ['concurrent'] : ['cold', 'warm']);
    for (const n of WORKLOAD_NAMES) expect(WORKLOADS[n].scenarios).toEqual(want(n));
  });

  it('concurrent: four builds, each its own context directory, a distinct RUN that sleeps 2 s and changes with the nonce', () => {
    const c = WORKLOADS.concurrent.concurrent!;
    expect(c.builds).toBe(4);
    const dirs = files('concurrent', 1).map((f) => f.path.split('/')[0]);
    expect([...new Set(dirs)]).toEqual(['b1', 'b2', 'b3', 'b4']);
    expect(concurrentDir(2)).toBe('b3');
    const d = [0, 1, 2, 3].map((i) => c.dockerfile(i, 'n1'));
    expect(d.map((f) => f.path)).toEqual(['b1/Dockerfile', 'b2/Dockerfile', 'b3/Dockerfile', 'b4/Dockerfile']);
    expect(d[1]!.content.toString()).toBe('FROM busybox\nRUN echo 2 n1 && sleep 2\n');
    expect(new Set(d.map((f) => f.content.toString())).size).toBe(4);
    expect(c.dockerfile(1, 'n2').content.equals(d[1]!.content)).toBe(false);
  });
});

describe('writeContext', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes every file under the directory, byte for byte', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-ctx-'));
    const fs = files('hello', 3);
    await writeContext(dir, fs);
    expect((await readdir(dir)).sort()).toEqual(fs.map((f) => f.path).sort());
    for (const f of fs) expect((await readFile(join(dir, f.path))).equals(f.content)).toBe(true);
    await writeContext(dir, [{ path: 'deep/er/x.txt', content: Buffer.from('y') }]);
    expect((await stat(join(dir, 'deep/er/x.txt'))).size).toBe(1);
  });
});
