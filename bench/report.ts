// What a benchmark run produces: the JSON document (bench-results.json) and the table printed on
// stdout, a padded Markdown table so it can be pasted into the README as it is.

import type { BuilderId, DaemonInstance } from './builders.js';
import type { ProcMemory } from './proc.js';
import { ratio, summarize, type Summary } from './stats.js';
import type { Scenario, WorkloadName } from './workloads.js';

export type Phase = Scenario | 'export';
export const PHASES: readonly Phase[] = ['cold', 'warm', 'edit', 'export', 'concurrent'];

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
  /** Bytes the client sent on the daemon's socket in each counted run (kiln daemon only). */
  uploadBytes?: number[];
  /** The first failure; a failed cell is reported as failed even if some runs succeeded. */
  error?: string;
}

export interface BuilderStatus {
  id: BuilderId;
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
  daemonOverBuildkit?: number;
}

/** bigctx through the daemon: what the client sent on the socket for a whole context and after one edit. */
export interface UploadSummary {
  workload: WorkloadName;
  /** Median over the cold runs: the first upload, to a daemon on a fresh root. */
  firstBytes: number;
  /** Median over the edit runs: the upload after one file changed. */
  editBytes: number;
  /** editBytes / firstBytes. */
  ratio: number;
}

export interface DaemonReport {
  /** The daemon after the run (the last daemon process, read before SIGTERM). */
  final?: ProcMemory;
  /** Every daemon process of the run (cold runs restart it on a fresh root). */
  instances: DaemonInstance[];
  upload?: UploadSummary;
}

/** A goal of the issue, checked on this run's medians. */
export interface Target {
  what: string;
  value: string;
  met: boolean;
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
  daemon?: DaemonReport;
  targets: Target[];
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
    const d = ratio(get('kiln-daemon'), get('buildkit'));
    if (a !== undefined) row.kilnOverBuildkit = a;
    if (b !== undefined) row.kilnOverBuildah = b;
    if (d !== undefined) row.daemonOverBuildkit = d;
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

const COLUMNS = [
  'workload',
  'scenario',
  'kiln (embedded)',
  'kiln (daemon)',
  'BuildKit (docker)',
  'buildah',
  'kiln/BuildKit',
  'daemon/BuildKit',
  'kiln/buildah',
  'kiln peak RSS',
];

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
      cell(get('kiln-daemon'), 'kiln-daemon'),
      cell(get('buildkit'), 'buildkit'),
      cell(get('buildah'), 'buildah'),
      formatRatio(r.kilnOverBuildkit),
      formatRatio(r.daemonOverBuildkit),
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
  return builders.map((b) => `- ${b.label}: ${b.available ? (b.version ?? 'available') : (b.reason ?? 'missing')}`).join('\n');
}

/** "812 B", "412 KiB", "37.9 MiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const [v, unit] = n < 1024 ** 2 ? [n / 1024, 'KiB'] : n < 1024 ** 3 ? [n / 1024 ** 2, 'MiB'] : [n / 1024 ** 3, 'GiB'];
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${unit}`;
}

const UPLOAD_WORKLOAD: WorkloadName = 'bigctx';

/** The first (cold) and after-edit uploads of bigctx through the daemon, when both were measured. */
export function uploadSummary(results: readonly ResultRow[]): UploadSummary | undefined {
  const bytes = (phase: Phase) => {
    const row = results.find((r) => r.builder === 'kiln-daemon' && r.workload === UPLOAD_WORKLOAD && r.phase === phase);
    return row && !row.error && row.uploadBytes ? summarize(row.uploadBytes)?.median : undefined;
  };
  const firstBytes = bytes('cold');
  const editBytes = bytes('edit');
  if (firstBytes === undefined || editBytes === undefined || firstBytes === 0) return undefined;
  return { workload: UPLOAD_WORKLOAD, firstBytes, editBytes, ratio: editBytes / firstBytes };
}

/** The number the concurrent workload must beat through the daemon: four `sleep 2` builds in under 3 s. */
export const CONCURRENT_TARGET_SECONDS = 3;
export const UPLOAD_TARGET_RATIO = 0.01;

/** The goals on this run: daemon warm <= BuildKit warm everywhere, concurrent < 3 s, edit upload < 1%. */
export function checkTargets(results: readonly ResultRow[], upload: UploadSummary | undefined): Target[] {
  const get = (b: BuilderId, workload: WorkloadName, phase: Phase) =>
    results.find((r) => r.builder === b && r.workload === workload && r.phase === phase)?.seconds;
  const out: Target[] = [];
  for (const r of results) {
    if (r.builder !== 'kiln-daemon' || r.phase !== 'warm') continue;
    const d = r.seconds;
    const k = get('buildkit', r.workload, 'warm');
    if (!d || !k) continue;
    out.push({
      what: `${r.workload} warm: kiln (daemon) no slower than BuildKit`,
      value: `${formatSeconds(d)} vs ${formatSeconds(k)}`,
      met: d.median <= k.median,
    });
  }
  const c = get('kiln-daemon', 'concurrent', 'concurrent');
  if (c)
    out.push({
      what: `concurrent: four sleep-2 builds through the daemon under ${CONCURRENT_TARGET_SECONDS} s`,
      value: formatSeconds(c),
      met: c.median < CONCURRENT_TARGET_SECONDS,
    });
  if (upload) {
    out.push({
      what: `${upload.workload} edit: upload under ${UPLOAD_TARGET_RATIO * 100}% of the first`,
      value: `${formatBytes(upload.editBytes)} of ${formatBytes(upload.firstBytes)} = ${formatPercent(upload.ratio)}`,
      met: upload.ratio < UPLOAD_TARGET_RATIO,
    });
  }
  return out;
}

export function formatPercent(r: number): string {
  return `${(r * 100).toFixed(r < 0.1 ? 2 : 1)}%`;
}

export function formatTargets(targets: readonly Target[]): string {
  return targets.map((t) => `- ${t.met ? 'met' : 'MISSED'}: ${t.what} (${t.value})`).join('\n');
}

/** The lines about the daemon under the table: its memory after the run, the upload, odd exits. */
export function formatDaemon(d: DaemonReport): string {
  const mib = (kib: number) => `${Math.round(kib / 1024)} MiB`;
  const lines: string[] = [];
  if (d.final) {
    const peak = d.instances.filter((i) => i.memory).sort((a, b) => b.memory!.vmHwmKiB - a.memory!.vmHwmKiB)[0];
    const processes = `${d.instances.length} daemon process${d.instances.length === 1 ? '' : 'es'} in the run (each cold run restarts it)`;
    const largest = peak && d.instances.length > 1 ? `, largest VmHWM ${mib(peak.memory!.vmHwmKiB)} (the one started for ${peak.startedFor})` : '';
    lines.push(`- kiln (daemon) after the run: VmRSS ${mib(d.final.vmRssKiB)}, VmHWM ${mib(d.final.vmHwmKiB)}; ${processes}${largest}.`);
  }
  if (d.upload) {
    const u = d.upload;
    lines.push(
      `- kiln (daemon) upload, ${u.workload}, client->daemon bytes on the socket: first (cold) ${formatBytes(u.firstBytes)}, ` +
        `after a one-file edit ${formatBytes(u.editBytes)} = ${formatPercent(u.ratio)} of the first.`,
    );
  }
  for (const i of d.instances) {
    if (i.exit !== 'exit 0') lines.push(`- kiln daemon started for ${i.startedFor} ended with ${i.exit} after SIGTERM (${i.stopSeconds.toFixed(1)} s).`);
  }
  return lines.join('\n');
}
