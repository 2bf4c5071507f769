// Runs one workload's phases (cold, warm, edit, export) over the available builders, alternating
// between them round by round, and collects the timings.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Builder, Context } from './builders.js';
import type { RunResult } from './proc.js';
import type { Cell, Phase } from './report.js';
import { schedule } from './schedule.js';
import { writeContext, type Workload } from './workloads.js';

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

export async function runWorkload(w: Workload, ctx: Context, builders: readonly Builder[], opts: RunnerOptions): Promise<Cell[]> {
  const phases: Phase[] = [...w.scenarios, 'export'];
  const cells: Cell[] = [];
  let editRound = 0;
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
        if (phase === 'cold') await b.resetCold(w);
        let r: RunResult;
        let dest: string | undefined;
        if (phase === 'export') {
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
          if (dest) cell.artifactBytes = (await fsp.stat(dest)).size;
        }
        const rss = r.maxRssKiB !== undefined ? `, peak RSS ${Math.round(r.maxRssKiB / 1024)} MiB` : '';
        opts.log(`${tag} ${r.seconds.toFixed(2)} s${rss}`);
      } catch (err) {
        if (opts.interrupted()) throw new Interrupted();
        cell.error = `${b.id} ${phase} of ${w.name}: ${(err as Error).message}`;
        opts.log(`${tag} FAILED\n${cell.error}`);
      }
    }
  }
  return cells;
}
