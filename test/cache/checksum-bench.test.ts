// A bench-like check: keys for a 20,000-file context, cold (every file read in the pool) and warm
// (memoised: only stats). Times are printed, not asserted: the machine is shared.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChecksumMemo, RACY_MS, checksumEntries, selectEntries } from '../../src/cache/checksum.js';
import { walkContext } from '../../src/context/index.js';
import { closePool, poolCounters, poolSize } from '../../src/workers/index.js';

const FILES = 20_000;
let ctx: string;
let cacheDir: string;

beforeAll(async () => {
  ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-ctx-'));
  cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-cache-'));
  for (let d = 0; d < 200; d++) {
    const dir = path.join(ctx, `pkg${d}`, 'lib');
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < FILES / 200; i++) fs.writeFileSync(path.join(dir, `m${i}.js`), `module.exports = ${d * 1000 + i};\n`.repeat(1 + (i % 7)));
  }
  await new Promise((r) => setTimeout(r, RACY_MS + 150)); // the last files written are old enough to be memoised
});

afterAll(async () => {
  await closePool();
  fs.rmSync(ctx, { recursive: true, force: true });
  fs.rmSync(cacheDir, { recursive: true, force: true });
});

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = process.hrtime.bigint();
  const r = await fn();
  return [r, Number(process.hrtime.bigint() - t) / 1e6];
}

describe('20,000 small files', () => {
  it('hashes them in the pool, then re-reads none', async () => {
    const [entries, walkMs] = await timed(() => walkContext(ctx));
    const [sel, selectMs] = await timed(async () => selectEntries(entries, ['.']));
    expect(sel.entries.filter((e) => e.type === 'file')).toHaveLength(FILES);

    const h0 = poolCounters();
    const [cold, coldMs] = await timed(() => checksumEntries(ctx, sel, { cacheDir }));
    const h1 = poolCounters();
    const [warm, warmMs] = await timed(() => checksumEntries(ctx, sel, { cacheDir }));
    const h2 = poolCounters();
    ChecksumMemo.forgetAll();
    const [restarted, restartMs] = await timed(() => checksumEntries(ctx, sel, { cacheDir }));
    const h3 = poolCounters();

    expect(h1.filesHashed - h0.filesHashed).toBe(FILES);
    expect(h2.filesHashed - h1.filesHashed).toBe(0);
    expect(h3.filesHashed - h2.filesHashed).toBe(0);
    expect(warm).toBe(cold);
    expect(restarted).toBe(cold);
    console.log(
      `${FILES} files on ${poolSize()} threads: walk ${walkMs.toFixed(0)} ms, select ${selectMs.toFixed(0)} ms, ` +
        `cold checksum ${coldMs.toFixed(0)} ms (${h1.tasks.scanFiles - h0.tasks.scanFiles} tasks), ` +
        `warm ${warmMs.toFixed(0)} ms, after a restart (memo from disk) ${restartMs.toFixed(0)} ms`,
    );
  });
});
