// What a benchmark run produces: the JSON document (bench-results.json) and the table printed on
// stdout, a padded Markdown table so it can be pasted into the README as it is.

import type { BuilderId } from './builders.js';
import { ratio, summarize, type Summary } from './stats.js';
import type { Scenario, WorkloadName } from './workloads.js';

export type Phase = Scenario | 'export';
export const PHASES: readonly Phase[] = ['cold', 'warm', 'edit', 'export'];

/** The measurements of one builder in one phase of one workload. */
export interface Cell {
  builder: BuilderId;
  workload: WorkloadName;
  phase: Phase;
  /** Wall-clock seconds of the counted runs. */
  samples: number[];
  /** Wall-clock seconds of the warm-up runs (not counted). */
  warmups: number[];
  /** Peak RSS (KiB) of the counted runs; kiln only. */
  rssKiB: number[];
  /** Size of the exported tarball (export phase), bytes. */
  artifactBytes?: number;
  /** The first failure; a failed cell is reported as failed even if some runs succeeded. */
  error?: string;
}

export interface BuilderStatus {
  id: BuilderId | 'kiln-daemon';
  label: string;
  available: boolean;
  version?: string;
  reason?: string;
}

export interface Machine {
  cores: number;
  memoryBytes: number;
  cpuModel: string;
  kernel: string;
  os: string;
  node: string;
  loadavgStart: number[];
  loadavgEnd?: number[];
}

export interface ResultRow extends Cell {
  seconds?: Summary;
  peakRssKiB?: Summary;
}

export interface RatioRow {
  workload: WorkloadName;
  phase: Phase;
  kilnOverBuildkit?: number;
  kilnOverBuildah?: number;
}

export interface BenchResults {
  schema: 1;
  date: string;
  mode: 'full' | 'quick';
  warmups: number;
  runs: number;
  seed: number;
  machine: Machine;
  builders: BuilderStatus[];
  workloads: { name: WorkloadName; description: string; files: number; contextDigest: string }[];
  results: ResultRow[];
  ratios: RatioRow[];
  notes: string[];
}

/** Summaries and ratios for a list of cells (failed cells get neither). */
export function summarizeCells(cells: readonly Cell[]): { results: ResultRow[]; ratios: RatioRow[] } {
  const results: ResultRow[] = cells.map((c) => {
    const row: ResultRow = { ...c };
    if (!c.error) {
      const s = summarize(c.samples);
      if (s) row.seconds = s;
      const r = summarize(c.rssKiB);
      if (r) row.peakRssKiB = r;
    }
    return row;
  });
  const ratios: RatioRow[] = [];
  for (const key of uniqueKeys(results)) {
    const get = (b: BuilderId) => results.find((r) => r.workload === key.workload && r.phase === key.phase && r.builder === b)?.seconds;
    const row: RatioRow = { ...key };
    const k = get('kiln');
    const a = ratio(k, get('buildkit'));
    const b = ratio(k, get('buildah'));
    if (a !== undefined) row.kilnOverBuildkit = a;
    if (b !== undefined) row.kilnOverBuildah = b;
    ratios.push(row);
  }
  return { results, ratios };
}

function uniqueKeys(rows: readonly ResultRow[]): { workload: WorkloadName; phase: Phase }[] {
  const seen = new Set<string>();
  const out: { workload: WorkloadName; phase: Phase }[] = [];
  for (const r of rows) {
    const k = `${r.workload}/${r.phase}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({ workload: r.workload, phase: r.phase });
  }
  return out;
}

/** "1.23 s (1.20–1.31)"; one sample: "1.23 s". */
export function formatSeconds(s: Summary): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  return s.n === 1 ? `${f(s.median)} s` : `${f(s.median)} s (${f(s.min)}–${f(s.max)})`;
}

export function formatRatio(r: number | undefined): string {
  if (r === undefined) return '–';
  return r >= 10 ? `${r.toFixed(0)}×` : `${r.toFixed(2)}×`;
}

export function formatMiB(s: Summary): string {
  const f = (kib: number) => `${Math.round(kib / 1024)}`;
  return s.n === 1 || s.min === s.max ? `${f(s.median)} MiB` : `${f(s.median)} MiB (max ${f(s.max)})`;
}

const COLUMNS = ['workload', 'scenario', 'kiln (embedded)', 'BuildKit (docker)', 'buildah', 'kiln/BuildKit', 'kiln/buildah', 'kiln peak RSS'];

/** One row per workload and phase; a builder that is missing or failed says so in its column. */
export function formatTable(results: readonly ResultRow[], ratios: readonly RatioRow[], builders: readonly BuilderStatus[]): string {
  const status = (b: BuilderId) => builders.find((s) => s.id === b);
  const cell = (row: ResultRow | undefined, b: BuilderId): string => {
    if (status(b)?.available === false) return 'missing';
    if (!row) return '–';
    if (row.error) return 'failed';
    return row.seconds ? formatSeconds(row.seconds) : '–';
  };
  const rows: string[][] = [];
  for (const r of ratios) {
    const get = (b: BuilderId) => results.find((x) => x.workload === r.workload && x.phase === r.phase && x.builder === b);
    const k = get('kiln');
    rows.push([
      r.workload,
      r.phase,
      cell(k, 'kiln'),
      cell(get('buildkit'), 'buildkit'),
      cell(get('buildah'), 'buildah'),
      formatRatio(r.kilnOverBuildkit),
      formatRatio(r.kilnOverBuildah),
      k?.peakRssKiB ? formatMiB(k.peakRssKiB) : '–',
    ]);
  }
  return markdownTable(COLUMNS, rows);
}

/** A Markdown table padded to aligned columns (widths counted in code points). */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const width = (s: string) => [...s].length;
  const widths = header.map((h, i) => Math.max(width(h), 3, ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: readonly string[]) => `| ${widths.map((w, i) => (cells[i] ?? '') + ' '.repeat(w - width(cells[i] ?? ''))).join(' | ')} |`;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

/** The builders' lines under the table: versions, and why one is missing. */
export function formatBuilders(builders: readonly BuilderStatus[]): string {
  return builders.map((b) => `- ${b.label}: ${b.available ? (b.version ?? 'available') : b.reason ?? 'missing'}`).join('\n');
}
