// Each step's log is clipped as BuildKit clips it (2 MiB by default, then one line saying so), in
// the events every display, the daemon's stream and the build history are made from.
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildFailure } from '../../src/server/api.js';
import { ProgressTracker, type ProgressEvent } from '../../src/solver/progress.js';
import { kilnRoot, makeContext, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

function logsOf(events: ProgressEvent[], id: number): string {
  return events
    .filter((e): e is Extract<ProgressEvent, { type: 'log' }> => e.type === 'log' && e.id === id)
    .map((e) => e.data)
    .join('');
}

describe('step log limit', () => {
  it('passes a log up to the limit, then one clipping line, then nothing (per vertex)', () => {
    const events: ProgressEvent[] = [];
    const t = new ProgressTracker((e) => events.push(e), { logLimitBytes: 10 });
    const a = t.start('RUN a');
    const b = t.start('RUN b');
    a.log('stdout', 'hello\n');
    a.log('stderr', 'worlds!\n'); // crosses 10 bytes: the first 4 bytes pass
    a.log('stdout', 'never shown\n');
    b.log('stdout', 'own limit\n');
    expect(logsOf(events, a.id)).toBe('hello\nworl\n[output clipped, log limit 10B reached]\n');
    expect(logsOf(events, b.id)).toBe('own limit\n');
  });

  it('starts the clipping line on a line of its own when the limit fell exactly after a partial line', () => {
    const events: ProgressEvent[] = [];
    const t = new ProgressTracker((e) => events.push(e), { logLimitBytes: 8 });
    const a = t.start('RUN a');
    a.log('stdout', 'abcd\nefg'); // exactly 8 bytes, mid-line: the next chunk has no room at all
    a.log('stdout', 'h\n');
    expect(logsOf(events, a.id)).toBe('abcd\nefg\n[output clipped, log limit 8B reached]\n');
    const b = t.start('RUN b');
    b.log('stdout', 'abcdefg\n');
    b.log('stdout', 'more\n');
    expect(logsOf(events, b.id)).toBe('abcdefg\n[output clipped, log limit 8B reached]\n');
  });

  it('says 2MiB by default, and -1 means no limit', () => {
    const events: ProgressEvent[] = [];
    const big = 'x'.repeat(1024 * 1024) + '\n';
    const clipped = new ProgressTracker((e) => events.push(e)).start('RUN big');
    for (let i = 0; i < 3; i++) clipped.log('stdout', big);
    expect(logsOf(events, clipped.id)).toMatch(/\n\[output clipped, log limit 2MiB reached\]\n$/);
    expect(Buffer.byteLength(logsOf(events, clipped.id))).toBeLessThan(2 * 1024 * 1024 + 100);
    const all: ProgressEvent[] = [];
    const unlimited = new ProgressTracker((e) => all.push(e), { logLimitBytes: -1 }).start('RUN big');
    for (let i = 0; i < 3; i++) unlimited.log('stdout', big);
    expect(logsOf(all, unlimited.id)).toBe(big.repeat(3));
  });

  it('the limit comes from the config (step-log-max-size)', async () => {
    const root = kilnRoot();
    cleanup.push(root);
    const ctx = makeContext({ Dockerfile: 'FROM busybox\nRUN yes abcdefgh | head -c 100000\n' });
    cleanup.push(ctx);
    const { BuildServer } = await import('../../src/server/server.js');
    const { testEnv } = await import('../helpers/env.js');
    const srv = new BuildServer({
      root,
      config: { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 4, runLimits: {}, stepLogMaxBytes: 4096 } as never,
    });
    const events: ProgressEvent[] = [];
    try {
      const text = fs.readFileSync(`${ctx}/Dockerfile`, 'utf8');
      await srv.build(
        {
          context: { type: 'dir', path: ctx },
          dockerfile: { name: 'Dockerfile', text },
          buildArgs: {},
          dryRun: false,
          outputs: [],
          labels: {},
          network: 'host',
          noCache: false,
          pull: false,
        },
        (e) => events.push(e),
      );
    } finally {
      await srv.close();
    }
    const run = events.find((e): e is Extract<ProgressEvent, { type: 'vertex' }> => e.type === 'vertex' && e.name.includes('RUN yes'))!;
    const log = logsOf(events, run.id);
    expect(log).toMatch(/\n\[output clipped, log limit 4KiB reached\]\n$/);
    expect(Buffer.byteLength(log)).toBeLessThan(4096 + 100);
  });

  it('a real RUN printing 40 MiB: the build log stops at 2 MiB, and a failure still quotes its last lines', async () => {
    const root = kilnRoot();
    cleanup.push(root);
    const ctx = makeContext({ Dockerfile: 'FROM busybox\nRUN yes kiln-says-hello | head -c 40000000; echo THE-LAST-LINE >&2; exit 3\n' });
    cleanup.push(ctx);
    const srv = server(root);
    const events: ProgressEvent[] = [];
    try {
      const text = fs.readFileSync(`${ctx}/Dockerfile`, 'utf8');
      const req = {
        context: { type: 'dir' as const, path: ctx },
        dockerfile: { name: 'Dockerfile', text },
        buildArgs: {},
        dryRun: false,
        outputs: [],
        labels: {},
        network: 'host' as const,
        noCache: false,
        pull: false,
      };
      const err = await srv
        .build(req, (e) => events.push(e))
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(BuildFailure);
      expect((err as BuildFailure).info.exitCode).toBe(3);
      expect((err as BuildFailure).info.outputTail).toContain('THE-LAST-LINE');
    } finally {
      await srv.close();
    }
    const run = events.find((e): e is Extract<ProgressEvent, { type: 'vertex' }> => e.type === 'vertex' && e.name.includes('RUN yes'))!;
    const log = logsOf(events, run.id);
    expect(Buffer.byteLength(log)).toBeLessThan(2 * 1024 * 1024 + 100);
    expect(log.match(/\[output clipped, log limit 2MiB reached\]/g)).toHaveLength(1);
    expect(log).not.toContain('THE-LAST-LINE');
  });
});
