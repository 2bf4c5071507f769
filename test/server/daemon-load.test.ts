// A shared daemon under load: sixteen builds of mixed size at once, and a context with a 1 GiB
// file, with the daemon's and the client's memory watched from /proc all along.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killStarted, kilnClient, makeContext, rss, spawnClient, startDaemon } from '../helpers/daemon.js';

const cleanup: string[] = [];
afterAll(async () => {
  await killStarted();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

const GiB = 1024 ** 3;

/** Samples a process's resident memory every 100 ms until stopped; returns the highest seen. */
function watch(pid: number): () => number {
  let most = 0;
  const sample = () => {
    try {
      most = Math.max(most, rss(pid).now);
    } catch {
      /* exited */
    }
  };
  sample();
  const timer = setInterval(sample, 100);
  return () => (clearInterval(timer), sample(), most);
}

/** A context like the bench's bigctx, smaller: `dirs` x 100 files of 200-8000 bytes, a .dockerignore. */
function bigContext(seed: number, dirs: number): string {
  const dir = makeContext({
    Dockerfile: `FROM busybox\nCOPY . /ctx\nRUN echo build-${seed} && find /ctx -type f | wc -l\n`,
    '.dockerignore': '**/*.log\n',
  });
  for (let d = 0; d < dirs; d++) {
    fs.mkdirSync(path.join(dir, 'src', `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) {
      const size = 200 + ((seed * 7919 + d * 104729 + f * 1299709) % 7800);
      fs.writeFileSync(path.join(dir, 'src', `d${d}`, `f${f}${f % 10 === 0 ? '.log' : '.txt'}`), Buffer.alloc(size, 97 + ((d + f) % 26)));
    }
  }
  cleanup.push(dir);
  return dir;
}

describe('kiln daemon under load', () => {
  it('sixteen builds of mixed size at once all succeed; the daemon stays under 1 GiB', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    const peak = watch(d.pid);
    try {
      const small = Array.from({ length: 12 }, (_, i) => {
        const c = makeContext({ Dockerfile: `FROM busybox\nCOPY a.txt /\nRUN echo small-${i} && cat /a.txt && sleep 1\n`, 'a.txt': `file ${i}\n` });
        cleanup.push(c);
        return c;
      });
      const big = Array.from({ length: 4 }, (_, i) => bigContext(i, 50));
      const results = await Promise.all([...small, ...big].map((c) => kilnClient(['build', '--addr', d.addr, '--progress', 'plain', c])));
      results.forEach((r, i) => {
        expect(r.stderr).not.toContain('ERROR');
        expect(r.code).toBe(0);
        if (i < 12) expect(r.stderr).toContain(`small-${i}`);
        else expect(r.stderr).toMatch(/#\d+ [\d.]+ 4502\n/); // 50 x 100 files less the tenth that are .log, the Dockerfile, .dockerignore
      });
    } finally {
      const most = peak();
      expect(await d.stop()).toBe(0);
      console.log(`daemon peak RSS over 16 builds: ${(most / 1024 ** 2).toFixed(0)} MiB`);
      expect(most).toBeLessThan(GiB);
    }
  });

  it('a context with a 1 GiB file passes with flat client and daemon memory', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    const c = makeContext({ Dockerfile: 'FROM busybox\nCOPY big.bin /\nRUN wc -c < /big.bin\n' });
    cleanup.push(c);
    // Real bytes, not a hole: a repeated 1 MiB block.
    const block = Buffer.alloc(1024 * 1024, 'kiln');
    const fd = fs.openSync(path.join(c, 'big.bin'), 'w');
    for (let i = 0; i < 1024; i++) fs.writeSync(fd, block);
    fs.closeSync(fd);
    const daemonPeak = watch(d.pid);
    const before = rss(d.pid).now;
    try {
      const client = spawnClient(['build', '--addr', d.addr, '--progress', 'plain', c]);
      const clientPeak = watch(client.proc.pid!);
      const r = await client.done;
      const clientMost = clientPeak();
      expect(r.stderr).not.toContain('ERROR');
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/transferring context: 1 files, 1\.07GB/);
      expect(r.stderr).toMatch(/#\d+ [\d.]+ 1073741824\n/);
      const daemonGrowth = daemonPeak() - before;
      console.log(`1 GiB context: client peak ${(clientMost / 1024 ** 2).toFixed(0)} MiB, daemon grew ${(daemonGrowth / 1024 ** 2).toFixed(0)} MiB`);
      expect(clientMost).toBeLessThan(300 * 1024 ** 2);
      expect(daemonGrowth).toBeLessThan(300 * 1024 ** 2);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });
});
