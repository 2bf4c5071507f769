// Runs one workload's phases (cold, warm, edit, export; or concurrent) over the available builders,
// alternating between them round by round, and collects the timings.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Builder, Context } from './builders.js';
import { run, type RunResult } from './proc.js';
import type { Cell, Phase } from './report.js';
import { schedule } from './schedule.js';
import { concurrentDir, writeContext, type Workload } from './workloads.js';

export interface RunnerOptions {
  warmups: number;
  runs: number;
  seed: number;
  /** Where the export tarballs go. */
  exportDir: string;
  log: (line: string) => void;
  /** Checked before every run: true stops the benchmark (Ctrl-C). */
  interrupted: () => boolean;
}

export class Interrupted extends Error {
  constructor() {
    super('interrupted');
  }
}

/** The output's last meaningful lines, for the JSON and the report. */
function failure(what: string, r: RunResult): string {
  const why = r.timedOut ? `timed out after ${r.seconds.toFixed(0)} s` : r.signal ? `killed by ${r.signal}` : `exit status ${r.code}`;
  const tail = r.output.trimEnd().split('\n').slice(-8).join('\n');
  return `${what}: ${why}\n${tail}`;
}

/**
 * The builds of the concurrent scenario, all started at once (each builder's build() spawns its
 * command before its first await). One result: the wall time from the first start to the last exit,
 * the first failure's status and output, the largest peak RSS.
 */
async function runConcurrent(w: Workload, ctx: Context, b: Builder, nonce: string): Promise<RunResult> {
  const c = w.concurrent!;
  const contexts: Context[] = [];
  for (let i = 0; i < c.builds; i++) {
    await writeContext(ctx.dir, [c.dockerfile(i, nonce)]);
    const dir = path.join(ctx.dir, concurrentDir(i));
    contexts.push({ dir, dockerfile: path.join(dir, 'Dockerfile'), tag: `kiln-bench/${w.name}-${i + 1}:latest` });
  }
  const started = process.hrtime.bigint();
  const results = await Promise.all(contexts.map((x) => b.build(w, x)));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const failed = results.find((r) => r.code !== 0);
  const rss = results.map((r) => r.maxRssKiB).filter((x): x is number => x !== undefined);
  const r: RunResult = failed ? { ...failed, seconds } : { code: 0, signal: null, seconds, output: '', timedOut: false };
  if (rss.length > 0) r.maxRssKiB = Math.max(...rss);
  delete r.uploadBytes; // each build's count includes the others' bytes: not one build's upload
  return r;
}

export async function runWorkload(w: Workload, ctx: Context, builders: readonly Builder[], opts: RunnerOptions): Promise<Cell[]> {
  // Export needs the image of a finished build; the concurrent workload only measures its one scenario.
  const phases: Phase[] = w.concurrent ? [...w.scenarios] : [...w.scenarios, 'export'];
  const cells: Cell[] = [];
  let editRound = 0;
  // Concurrent runs rewrite their Dockerfiles with a nonce that differs per builder, round and bench
  // run, so no run is served from an earlier run's cache (Docker's build cache outlives the bench).
  const stamp = Date.now().toString(36);
  const prepared = new Set<string>();
  for (const phase of phases) {
    const byBuilder = new Map(builders.map((b) => [b.id, { builder: b.id, workload: w.name, phase, samples: [], warmups: [], rssKiB: [] } as Cell]));
    cells.push(...byBuilder.values());
    const slots = schedule(builders, opts.warmups, opts.runs);
    let lastRound = -1;
    for (const slot of slots) {
      if (opts.interrupted()) throw new Interrupted();
      const b = slot.builder;
      const cell = byBuilder.get(b.id)!;
      if (cell.error) continue; // one failure is enough to report; the rest would repeat it
      if (phase === 'edit' && slot.round !== lastRound) {
        // Once per round, before the first builder: every builder then sees one changed file
        // relative to its own previous build.
        const f = w.edit!(opts.seed, editRound++);
        await writeContext(ctx.dir, [f]);
      }
      lastRound = slot.round;
      const tag = `[${w.name} ${phase} ${slot.warmup ? 'warm-up' : `run ${slot.round - opts.warmups + 1}/${opts.runs}`}] ${b.id}`;
      try {
        // The concurrent scenario starts from a cold store once (kiln needs a root with the base).
        if (phase === 'cold' || (phase === 'concurrent' && !prepared.has(b.id))) await b.resetCold(w);
        prepared.add(b.id);
        await settleDisk();
        let r: RunResult;
        let dest: string | undefined;
        if (phase === 'concurrent') {
          r = await runConcurrent(w, ctx, b, `${stamp}-${b.id}-r${slot.round}`);
        } else if (phase === 'export') {
          dest = path.join(opts.exportDir, `${w.name}-${b.id}.tar`);
          await fsp.rm(dest, { force: true });
          r = await b.exportImage(w, ctx, dest);
        } else {
          r = await b.build(w, ctx);
        }
        if (r.code !== 0) {
          cell.error = failure(`${b.id} ${phase === 'export' ? 'export' : 'build'} of ${w.name} (${phase})`, r);
          opts.log(`${tag} FAILED (${r.seconds.toFixed(2)} s)\n${cell.error}`);
          continue;
        }
        if (slot.warmup) {
          cell.warmups.push(r.seconds);
        } else {
          cell.samples.push(r.seconds);
          if (r.maxRssKiB !== undefined) cell.rssKiB.push(r.maxRssKiB);
          if (r.uploadBytes !== undefined) (cell.uploadBytes ??= []).push(r.uploadBytes);
          if (dest) cell.artifactBytes = (await fsp.stat(dest)).size;
        }
        const rss = r.maxRssKiB !== undefined ? `, peak RSS ${Math.round(r.maxRssKiB / 1024)} MiB` : '';
        const sent = r.uploadBytes !== undefined ? `, ${r.uploadBytes} bytes client->daemon` : '';
        opts.log(`${tag} ${r.seconds.toFixed(2)} s${rss}${sent}`);
      } catch (err) {
        if (opts.interrupted()) throw new Interrupted();
        cell.error = `${b.id} ${phase} of ${w.name}: ${(err as Error).message}`;
        opts.log(`${tag} FAILED\n${cell.error}`);
      }
    }
  }
  return cells;
}

/**
 * Writes out what earlier runs left dirty in the page cache, before a timed run: a builder that
 * made a 512 MiB layer leaves a gigabyte for the kernel to write back, and whoever runs next would
 * pay for it (measured: bigfile's cold RUN and layer 1.1 + 1.6 s on a quiet disk, 2.7 + 2.0 s right
 * after another builder's). Untimed.
 */
async function settleDisk(): Promise<void> {
  await run(['sync'], { timeoutMs: 120_000 });
}
