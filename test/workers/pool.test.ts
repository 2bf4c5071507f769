// The worker pool: tasks really run in worker threads, hashes and compression are right, the pool
// closes and comes back, and it never keeps a process alive.

import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { threadId } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closePool, compressFile, hashFile, hashFiles, poolCounters, poolSize, resetPoolCounters, scanFiles, whoami } from '../../src/workers/index.js';
import { workerModulePath } from '../../src/workers/pool.js';
import { compileSources } from './compile.js';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-pool-test-'));
});
afterAll(async () => {
  await closePool();
  fs.rmSync(dir, { recursive: true, force: true });
});

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('small scans', () => {
  it('a few stats and little content are scanned on the calling thread: no pool is started', async () => {
    await closePool();
    const f = path.join(dir, 'small-scan.txt');
    fs.writeFileSync(f, 'small\n');
    const [r] = await scanFiles([{ path: f }], [6]);
    expect(r).toMatchObject({ type: 'file', digest: sha('small\n') });
    expect(workerModulePath()).toBeUndefined();
    // Many items, or much unknown content, still go to the pool.
    const many = Array.from({ length: 100 }, (_, i) => {
      const p = path.join(dir, `many-${i}`);
      fs.writeFileSync(p, String(i));
      return { path: p };
    });
    const out = await scanFiles(
      many,
      many.map(() => 2),
    );
    expect(out).toHaveLength(100);
    expect(workerModulePath()).toBeDefined();
  });

  it('many unchanged paths with known stamps are answered here, as the worker would, without a pool', async () => {
    const many = Array.from({ length: 300 }, (_, i) => {
      const p = path.join(dir, `known-${i}`);
      if (i % 3 === 0) fs.mkdirSync(p);
      else fs.writeFileSync(p, String(i));
      return { path: p };
    });
    const first = await scanFiles(
      many,
      many.map(() => 3),
    );
    const known = many.map((it, i) => ({ ...it, known: (first[i] as { stamp: string }).stamp }));
    await closePool();
    resetPoolCounters();
    const again = await scanFiles(
      known,
      known.map(() => 3),
    );
    expect(workerModulePath()).toBeUndefined();
    expect(poolCounters().tasks.scanFiles).toBe(0);
    // The same fields as the worker's scan of an unchanged path gives (content not read).
    const fromWorker = first.map((r) => {
      const { digest: _d, xattrs: _x, ...rest } = r as Record<string, unknown>;
      return { ...rest, hashed: false };
    });
    expect(again).toEqual(fromWorker);
    // One changed file among them goes to a full scan, in its place.
    fs.writeFileSync(many[1]!.path, 'changed');
    const mixed = await scanFiles(
      known,
      known.map(() => 3),
    );
    expect(mixed[1]).toMatchObject({ hashed: true, digest: sha('changed') });
    expect(mixed[2]).toEqual(fromWorker[2]);
  });
});

describe('worker pool', () => {
  it('runs tasks in worker threads, not on the main thread', async () => {
    const seen = await Promise.all(Array.from({ length: 8 }, () => whoami()));
    for (const s of seen) {
      expect(s.isMainThread).toBe(false);
      expect(s.threadId).not.toBe(threadId);
    }
    expect(poolSize()).toBe(os.availableParallelism());
    expect(new Set(seen.map((s) => s.threadId)).size).toBeLessThanOrEqual(poolSize());
  });

  it('hashes files by streaming them (a file bigger than the read buffer, an empty one)', async () => {
    const big = randomBytes((3 << 20) + 12345);
    fs.writeFileSync(path.join(dir, 'big'), big);
    fs.writeFileSync(path.join(dir, 'empty'), '');
    expect(await hashFile(path.join(dir, 'big'))).toBe(sha(big));
    expect(await hashFiles([path.join(dir, 'empty'), path.join(dir, 'big')])).toEqual([sha(''), sha(big)]);
  });

  it('refuses to follow a symlink or read a non-file, and says which file', async () => {
    fs.symlinkSync('/etc/passwd', path.join(dir, 'link'));
    await expect(hashFile(path.join(dir, 'link'))).rejects.toThrow(/hashing .*link: .*ELOOP/);
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    await expect(hashFile(path.join(dir, 'fifo'))).rejects.toThrow(/fifo is not a regular file/);
    await expect(hashFile(path.join(dir, 'nope'))).rejects.toThrow(/hashing .*nope: .*ENOENT/);
  });

  it('scans: reads content only when the stamp changed, reports missing paths in place', async () => {
    const f = path.join(dir, 'scan');
    fs.writeFileSync(f, 'one');
    resetPoolCounters();
    const [a, missing] = await scanFiles([{ path: f }, { path: path.join(dir, 'missing') }]);
    expect(a).toMatchObject({ type: 'file', hashed: true, digest: sha('one'), xattrs: '' });
    expect(missing).toMatchObject({ error: 'ENOENT' });
    const stamp = (a as { stamp: string }).stamp;
    const [b] = await scanFiles([{ path: f, known: stamp }]);
    expect(b).toMatchObject({ type: 'file', hashed: false, stamp });
    expect(b).not.toHaveProperty('digest');
    fs.chmodSync(f, 0o600); // ctime moves: read again
    const [c] = await scanFiles([{ path: f, known: stamp }]);
    expect(c).toMatchObject({ hashed: true, mode: 0o600, digest: sha('one') });
    expect(poolCounters().filesHashed).toBe(2);
  });

  it('scans read a file up to its stat size: exact multiples of the read buffer, more, empty', async () => {
    const files = { mib: randomBytes(1 << 20), two: randomBytes(2 << 20), more: randomBytes((2 << 20) + 7), empty: Buffer.alloc(0) };
    for (const [name, b] of Object.entries(files)) fs.writeFileSync(path.join(dir, `sized-${name}`), b);
    const scanned = await scanFiles(Object.keys(files).map((name) => ({ path: path.join(dir, `sized-${name}`) })));
    expect(scanned.map((r) => (r as { digest?: string }).digest)).toEqual(Object.values(files).map((b) => sha(b)));
    for (const r of scanned) expect((r as { stamp: string }).stamp).not.toBe(''); // unchanged while read
  });

  it('compresses with gzip and zstd to blobs the system tools read back, and copies for none', async () => {
    const plain = Buffer.concat([randomBytes(1 << 20), Buffer.alloc(3 << 20, 7)]);
    const src = path.join(dir, 'plain');
    fs.writeFileSync(src, plain);
    for (const [c, tool] of [
      ['gzip', 'gzip'],
      ['zstd', 'zstd'],
    ] as const) {
      const dest = path.join(dir, `blob.${c}`);
      const r = await compressFile(src, dest, c);
      const blob = fs.readFileSync(dest);
      expect(r).toEqual({ digest: `sha256:${sha(blob)}`, size: blob.length });
      expect(blob.length).toBeLessThan(plain.length);
      expect(sha(execFileSync(tool, ['-dc', dest], { maxBuffer: 1 << 26 }))).toBe(sha(plain));
    }
    const r = await compressFile(src, path.join(dir, 'blob.none'), 'none');
    expect(r).toEqual({ digest: `sha256:${sha(plain)}`, size: plain.length });
    await expect(compressFile(path.join(dir, 'missing'), path.join(dir, 'x'), 'gzip')).rejects.toThrow(/compressing .*missing \(gzip\)/);
  });

  it('closes and starts again on the next task, reusing one private worker module per code version', async () => {
    await whoami();
    const module = workerModulePath()!;
    expect(fs.statSync(module).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(module)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.dirname(module)).uid).toBe(process.getuid!());
    await closePool();
    expect(workerModulePath()).toBeUndefined();
    expect((await whoami()).isMainThread).toBe(false);
    // The same module again: processes (even SIGKILLed ones) leave no directory each behind.
    expect(workerModulePath()).toBe(module);
  });

  it('does not trust a module directory someone else could write to', async () => {
    await closePool();
    const shared = path.dirname((await whoami(), workerModulePath()!));
    await closePool();
    fs.chmodSync(shared, 0o777);
    try {
      await whoami();
      const used = workerModulePath()!;
      expect(path.dirname(used)).not.toBe(shared);
      expect(fs.statSync(path.dirname(used)).mode & 0o777).toBe(0o700);
      await closePool();
    } finally {
      fs.chmodSync(shared, 0o700);
    }
  });
});

describe('worker pool from compiled JavaScript, in a process of its own', () => {
  it('works as dist/ runs it and lets the process exit as soon as the work is done', async () => {
    const built = await compileSources(['src/workers/index.ts']);
    try {
      const f = path.join(dir, 'child-input');
      fs.writeFileSync(f, 'child');
      const script = `
        const m = await import(${JSON.stringify(path.join(built.dir, 'workers', 'index.js'))});
        const who = await m.whoami();
        console.log(JSON.stringify({ digest: await m.hashFile(${JSON.stringify(f)}), main: who.isMainThread }));`;
      const started = Date.now();
      // Idle threads linger for 10 s inside a pool: exiting well before that shows they do not hold the process.
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 8000 });
      const took = Date.now() - started;
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ digest: sha('child'), main: false });
      console.log(`compiled pool: child process ran and exited in ${took} ms`);
    } finally {
      built.cleanup();
    }
  });
});
