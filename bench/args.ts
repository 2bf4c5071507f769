// `npm run bench -- [flags]`: parsed without side effects, so the tests can table them.

import { BUILDER_IDS, type BuilderId } from './builders.js';
import { WORKLOAD_NAMES, type WorkloadName } from './workloads.js';

export interface BenchArgs {
  quick: boolean;
  workloads: WorkloadName[];
  builders: BuilderId[];
  warmups: number;
  runs: number;
  out: string;
  seed: number;
  keep: boolean;
  help: boolean;
}

export const DEFAULT_SEED = 20240501;

export const USAGE = `Usage: npm run bench -- [options]

Builds generated workloads with kiln (embedded, and through a kiln daemon), Docker's BuildKit and
buildah, alternating between them, and prints median, min and max per builder and scenario (cold,
warm, edit, export; concurrent).

Options:
  --quick                one run of each, no warm-up (a fast check)
  --only W[,W...]        only these workloads (${WORKLOAD_NAMES.join(', ')})
  --builders B[,B...]    only these builders (${BUILDER_IDS.join(', ')}); the others are reported as not selected
  --runs N               counted runs per scenario (default 3; --quick: 1)
  --warmups N            uncounted runs first (default 1; --quick: 0)
  --out FILE             where the JSON goes (default bench-results.json)
  --seed N               workload generator seed (default ${DEFAULT_SEED})
  --keep                 keep the temporary directory (contexts, roots, tarballs)
  -h, --help             this help`;

export class UsageError extends Error {}

function list<T extends string>(flag: string, value: string, allowed: readonly T[]): T[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`${flag}: empty list`);
  for (const i of items) if (!(allowed as readonly string[]).includes(i)) throw new UsageError(`${flag}: unknown "${i}" (want ${allowed.join(', ')})`);
  return [...new Set(items)] as T[];
}

function count(flag: string, value: string, min: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`${flag}: want a whole number >= ${min}, not "${value}"`);
  return Number(value);
}

export function parseArgs(argv: readonly string[]): BenchArgs {
  let quick = false;
  let keep = false;
  let help = false;
  let workloads: WorkloadName[] = [...WORKLOAD_NAMES];
  let builders: BuilderId[] = [...BUILDER_IDS];
  let warmups: number | undefined;
  let runs: number | undefined;
  let out = 'bench-results.json';
  let seed = DEFAULT_SEED;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      if (a.startsWith('--') && eq > 0) return a.slice(eq + 1);
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--quick':
        quick = true;
        break;
      case '--keep':
        keep = true;
        break;
      case '-h':
      case '--help':
        help = true;
        break;
      case '--only':
        workloads = list(flag, value(), WORKLOAD_NAMES);
        break;
      case '--builders':
        builders = list(flag, value(), BUILDER_IDS);
        break;
      case '--runs':
        runs = count(flag, value(), 1);
        break;
      case '--warmups':
        warmups = count(flag, value(), 0);
        break;
      case '--out':
        out = value();
        if (out === '') throw new UsageError('--out: empty path');
        break;
      case '--seed':
        seed = count(flag, value(), 0);
        break;
      default:
        throw new UsageError(`unknown argument "${a}"`);
    }
  }
  // Workloads and builders keep the canonical order whatever order the flags gave.
  workloads = WORKLOAD_NAMES.filter((w) => workloads.includes(w));
  builders = BUILDER_IDS.filter((b) => builders.includes(b));
  return { quick, keep, help, workloads, builders, warmups: warmups ?? (quick ? 0 : 1), runs: runs ?? (quick ? 1 : 3), out, seed };
}
