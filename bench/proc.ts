// Running one builder command: wall-clock time, a bounded tail of its output (for error messages),
// a hard time limit, and optionally the peak RSS through GNU time.

import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Killed (SIGKILL to its process group) after this long. */
  timeoutMs: number;
  /** Wrap in GNU time (/usr/bin/time) and report the peak RSS in KiB; FILE receives time's output. */
  rssFile?: string;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  /** Last bytes of stdout and stderr, interleaved as they came. */
  output: string;
  timedOut: boolean;
  /** Peak resident set size of the largest process in the tree (GNU time's %M), KiB. */
  maxRssKiB?: number;
  /** Bytes the client sent on the daemon's socket (kiln daemon builds only, counted by a proxy). */
  uploadBytes?: number;
}

export const GNU_TIME = '/usr/bin/time';
/** Process groups of commands still running, so an interrupted benchmark can stop them. */
const live = new Set<number>();

/** SIGKILLs the process group of every command still running (on Ctrl-C of the benchmark). */
export function killRunning(): void {
  for (const pgid of live) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
const TAIL_BYTES = 16 * 1024;

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly result: RunResult,
  ) {
    const why = result.timedOut
      ? `timed out after ${result.seconds.toFixed(0)} s`
      : result.signal
        ? `killed by ${result.signal}`
        : `exit status ${result.code}`;
    super(`${argv.join(' ')}: ${why}\n${result.output.trimEnd().split('\n').slice(-15).join('\n')}`);
  }
}

/** Runs ARGV; never throws for a non-zero exit (see check()). The timer covers spawn to exit. */
export async function run(argv: readonly string[], opts: RunOptions): Promise<RunResult> {
  const full = opts.rssFile ? [GNU_TIME, '-f', '%M', '-o', opts.rssFile, '--', ...argv] : [...argv];
  const started = process.hrtime.bigint();
  const child = spawn(full[0]!, full.slice(1), {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so a timeout can take down what it started (runc, children).
    detached: true,
  });
  if (child.pid !== undefined) live.add(child.pid);
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail += chunk.toString('utf8');
    if (tail.length > 2 * TAIL_BYTES) tail = tail.slice(-TAIL_BYTES);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, opts.timeoutMs);
  const { code, signal, error } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (err) => resolve({ code: null, signal: null, error: err }));
    child.once('close', (c, s) => resolve({ code: c, signal: s }));
  });
  clearTimeout(timer);
  if (child.pid !== undefined) live.delete(child.pid);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (error) tail += `\n${error.message}`;
  const result: RunResult = { code, signal, seconds, output: tail.slice(-TAIL_BYTES), timedOut };
  if (opts.rssFile) {
    const rss = await readGnuTimeRss(opts.rssFile);
    if (rss !== undefined) result.maxRssKiB = rss;
  }
  return result;
}

/** Runs ARGV and throws a CommandError unless it exits 0. */
export async function check(argv: readonly string[], opts: RunOptions): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new CommandError(argv, r);
  return r;
}

/** GNU time writes "Command exited with non-zero status N" before the figures on failure: take the last number line. */
export function parseGnuTimeRss(text: string): number | undefined {
  const lines = text.trim().split('\n').reverse();
  for (const l of lines) if (/^\d+$/.test(l.trim())) return Number(l.trim());
  return undefined;
}

async function readGnuTimeRss(file: string): Promise<number | undefined> {
  try {
    return parseGnuTimeRss(await fsp.readFile(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** A process's memory from /proc/PID/status: VmRSS (resident now) and VmHWM (peak resident), KiB. */
export interface ProcMemory {
  vmRssKiB: number;
  vmHwmKiB: number;
}

export function parseProcStatus(text: string): ProcMemory | undefined {
  const kib = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const vmRssKiB = kib('VmRSS');
  const vmHwmKiB = kib('VmHWM');
  return vmRssKiB === undefined || vmHwmKiB === undefined ? undefined : { vmRssKiB, vmHwmKiB };
}

/** The memory of a running process, or undefined when it is gone (or a zombie, which has no Vm lines). */
export async function procMemory(pid: number): Promise<ProcMemory | undefined> {
  try {
    return parseProcStatus(await fsp.readFile(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}
