// The command runner against real processes (sh, GNU time): exit codes, output tails, time limits.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { check, CommandError, GNU_TIME, parseGnuTimeRss, parseProcStatus, procMemory, run } from '../../bench/proc.js';

describe('run', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reports the exit status and the output of both streams', async () => {
    const r = await run(['sh', '-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 10_000 });
    expect(r.code).toBe(3);
    expect(r.timedOut).toBe(false);
    expect(r.output).toContain('out');
    expect(r.output).toContain('err');
    expect(r.seconds).toBeGreaterThan(0);
  });

  it('times wall clock', async () => {
    const r = await run(['sleep', '0.3'], { timeoutMs: 10_000 });
    expect(r.code).toBe(0);
    expect(r.seconds).toBeGreaterThanOrEqual(0.3);
    expect(r.seconds).toBeLessThan(5);
  });

  it('kills the whole process group at the time limit', async () => {
    // The grandchild would keep the pipe open for 30 s if only sh were killed.
    const r = await run(['sh', '-c', 'sleep 30 & sleep 30'], { timeoutMs: 300 });
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    expect(r.seconds).toBeLessThan(10);
  });

  it('keeps only a bounded tail of a large output', async () => {
    const r = await run(['sh', '-c', 'yes 0123456789 | head -c 1000000; echo; echo LAST'], { timeoutMs: 10_000 });
    expect(r.output.length).toBeLessThanOrEqual(16 * 1024);
    expect(r.output.trimEnd().endsWith('LAST')).toBe(true);
  });

  it('a missing program is a failed run, not an exception', async () => {
    const r = await run(['/nonexistent/kiln-bench-tool'], { timeoutMs: 10_000 });
    expect(r.code).not.toBe(0);
    expect(r.output).toMatch(/ENOENT/);
  });

  it.runIf(existsSync(GNU_TIME))('measures peak RSS through GNU time', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-proc-'));
    const r = await run([process.execPath, '-e', 'const b = Buffer.alloc(200 * 1024 * 1024, 1); console.log(b[5])'], {
      timeoutMs: 30_000,
      rssFile: join(dir, 'time.out'),
    });
    expect(r.code).toBe(0);
    expect(r.maxRssKiB).toBeGreaterThan(200 * 1024);
    expect(r.maxRssKiB).toBeLessThan(2 * 1024 * 1024);
  });

  it('check throws a CommandError naming the command and the reason', async () => {
    await expect(check(['sh', '-c', 'echo nope >&2; exit 2'], { timeoutMs: 10_000 })).rejects.toThrow(CommandError);
    await expect(check(['sh', '-c', 'echo nope >&2; exit 2'], { timeoutMs: 10_000 })).rejects.toThrow(/sh -c .*exit status 2\nnope/s);
  });
});

describe('parseGnuTimeRss', () => {
  it.each([
    ['123456\n', 123456],
    ['Command exited with non-zero status 1\n98304\n', 98304],
    ['', undefined],
    ['Command terminated by signal 9\n', undefined],
  ])('%j -> %j', (text, want) => expect(parseGnuTimeRss(text)).toBe(want));
});

describe('process memory from /proc/PID/status', () => {
  it('reads VmRSS and VmHWM in KiB', () => {
    const status = ['Name:\tnode', 'VmPeak:\t 1200000 kB', 'VmHWM:\t  109800 kB', 'VmRSS:\t   94432 kB', 'Threads:\t11'].join('\n');
    expect(parseProcStatus(status)).toEqual({ vmRssKiB: 94432, vmHwmKiB: 109800 });
  });

  it('has nothing for a zombie (no Vm lines) or a process that is gone', async () => {
    expect(parseProcStatus('Name:\tnode\nState:\tZ (zombie)\n')).toBeUndefined();
    expect(await procMemory(2 ** 22 + 1)).toBeUndefined(); // above pid_max's largest value
  });

  it('reads this process', async () => {
    const m = await procMemory(process.pid);
    expect(m!.vmRssKiB).toBeGreaterThan(1024);
    expect(m!.vmHwmKiB).toBeGreaterThanOrEqual(m!.vmRssKiB);
  });
});
