// Why a step ran instead of coming from the cache. Each time a step is built, the inputs its key was
// made of are remembered under the step's place in the Dockerfile (stage and position); on the next
// miss at that place the two are compared and the first difference is named: "build arg VERSION
// changed", "COPY: src/app.js changed", "parent step re-ran"...

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { stableStringify } from './keys.js';
import { replaceFile } from '../util/atomic-file.js';

/** The inputs a step's cache key was made of, kept in a form that can be compared piece by piece. */
export interface StepInputs {
  key: string;
  parentKey: string;
  /** What the parent was: "image docker.io/library/x@sha256:..", "stage build", "step", "scratch". */
  parent: string;
  instruction: string;
  env: [string, string][];
  buildArgs: [string, string][];
  /** Everything else of the definition, as stable JSON. */
  definition: string;
  /** Per source file content digests for COPY/ADD from the context (path -> digest). */
  files?: Record<string, string>;
  /** Keys of other stages or images the step reads (COPY --from, RUN --mount from=). */
  sources?: Record<string, string>;
}

const MAX_NAMED = 3;

/** Why the step ran; undefined for a step never built at this place before (nothing to explain). */
export function explainMiss(prev: StepInputs | undefined, cur: StepInputs, noCache: boolean): string | undefined {
  if (noCache) return 'cache disabled (--no-cache)';
  if (!prev) return undefined;
  if (prev.instruction !== cur.instruction) return 'instruction changed';
  if (prev.parentKey !== cur.parentKey) {
    if (cur.parent === 'step') return 'parent step re-ran';
    if (prev.parent !== cur.parent) return `base changed (${cur.parent})`;
    return `${cur.parent} changed`;
  }
  const args = diffPairs(prev.buildArgs, cur.buildArgs);
  if (args.length) return `build arg ${args.slice(0, MAX_NAMED).join(', ')} changed${more(args)}`;
  const env = diffPairs(prev.env, cur.env);
  if (env.length) return `ENV ${env.slice(0, MAX_NAMED).join(', ')} changed${more(env)}`;
  if (prev.files && cur.files) {
    const changed = diffRecords(prev.files, cur.files);
    if (changed.length) return `${cur.instruction.split(' ')[0]}: ${changed.slice(0, MAX_NAMED).join(', ')}${more(changed)}`;
  }
  if (prev.sources && cur.sources) {
    const changed = Object.keys({ ...prev.sources, ...cur.sources }).filter((k) => prev.sources![k] !== cur.sources![k]);
    if (changed.length) return `${changed.slice(0, MAX_NAMED).join(', ')} changed`;
  }
  if (prev.definition !== cur.definition) return 'options changed';
  // Same inputs but no result: it was removed (prune) or never committed (a failed or killed build).
  return 'cached result no longer present';
}

function more(list: string[]): string {
  return list.length > MAX_NAMED ? ` (+${list.length - MAX_NAMED} more)` : '';
}

function diffPairs(a: [string, string][], b: [string, string][]): string[] {
  const ma = new Map(a);
  const mb = new Map(b);
  return [...new Set([...ma.keys(), ...mb.keys()])].filter((k) => ma.get(k) !== mb.get(k)).sort();
}

function diffRecords(a: Record<string, string>, b: Record<string, string>): string[] {
  const out: string[] = [];
  for (const p of Object.keys(b).sort()) {
    if (!(p in a)) out.push(`${p} added`);
    else if (a[p] !== b[p]) out.push(`${p} changed`);
  }
  for (const p of Object.keys(a).sort()) if (!(p in b)) out.push(`${p} removed`);
  return out;
}

/** Remembers the last inputs built at each place, under <root>/records/steps. */
export class InputsLog {
  /**
   * The key of the record on disk at each place, as this process last read or wrote it: a step that
   * stays cached under the same key needs its record neither read (a COPY of 10,000 files has a
   * record of hundreds of KB) nor written again. Records are written by the process holding the
   * root, so what it saw last is what is there.
   */
  private readonly keys = new Map<string, string | undefined>();

  constructor(private readonly dir: string) {}

  /** The key of the record at `place` as this process last saw it; undefined when it has not looked. */
  knownKey(place: string): { key: string | undefined } | undefined {
    return this.keys.has(place) ? { key: this.keys.get(place) } : undefined;
  }

  /** A place in a Dockerfile: the context and file, the stage (by name or position) and the step's position in it. */
  static place(contextIdentity: string, dockerfile: string, stage: string, position: number): string {
    return createHash('sha256')
      .update(stableStringify([contextIdentity, dockerfile, stage, position]))
      .digest('hex');
  }

  async load(place: string): Promise<StepInputs | undefined> {
    let inputs: StepInputs | undefined;
    try {
      inputs = JSON.parse(await fsp.readFile(path.join(this.dir, `${place}.json`), 'utf8')) as StepInputs;
    } catch {
      inputs = undefined; // first build here, or a torn write: no explanation beyond "not built before"
    }
    this.keys.set(place, inputs?.key);
    return inputs;
  }

  async save(place: string, inputs: StepInputs): Promise<void> {
    // Two builds in one daemon may save the same place at once: replaceFile gives each its own temporary.
    await replaceFile(path.join(this.dir, `${place}.json`), JSON.stringify(inputs), { mkdir: true });
    this.keys.set(place, inputs.key);
  }
}
