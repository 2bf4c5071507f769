import { describe, expect, it } from 'vitest';
import { formatBuilders, formatMiB, formatRatio, formatSeconds, formatTable, markdownTable, summarizeCells, type BuilderStatus, type Cell } from '../../bench/report.js';

const cell = (builder: Cell['builder'], phase: Cell['phase'], samples: number[], extra: Partial<Cell> = {}): Cell => ({
  builder,
  workload: 'hello',
  phase,
  samples,
  warmups: [9],
  rssKiB: [],
  ...extra,
});

const ALL: BuilderStatus[] = [
  { id: 'kiln', label: 'kiln (embedded)', available: true, version: 'kiln version 0.1.0' },
  { id: 'buildkit', label: 'BuildKit (docker)', available: true, version: 'dockerd 20.10.24' },
  { id: 'buildah', label: 'buildah', available: true, version: 'buildah version 1.28.2' },
  { id: 'kiln-daemon', label: 'kiln (daemon)', available: false, reason: 'not available yet' },
];

describe('summarizeCells', () => {
  it('summarises samples (not warm-ups) and divides kiln by each peer', () => {
    const { results, ratios } = summarizeCells([
      cell('kiln', 'cold', [2, 4, 3], { rssKiB: [100 * 1024, 120 * 1024, 110 * 1024] }),
      cell('buildkit', 'cold', [1, 1.5, 2]),
      cell('buildah', 'cold', [6, 6, 6]),
    ]);
    expect(results[0]!.seconds).toEqual({ n: 3, median: 3, min: 2, max: 4 });
    expect(results[0]!.peakRssKiB).toEqual({ n: 3, median: 110 * 1024, min: 100 * 1024, max: 120 * 1024 });
    expect(results[1]!.peakRssKiB).toBeUndefined();
    expect(ratios).toEqual([{ workload: 'hello', phase: 'cold', kilnOverBuildkit: 2, kilnOverBuildah: 0.5 }]);
  });

  it('gives a failed cell no summary and its peers no ratio with it', () => {
    const { results, ratios } = summarizeCells([cell('kiln', 'warm', [1], { error: 'boom' }), cell('buildkit', 'warm', [1])]);
    expect(results[0]!.seconds).toBeUndefined();
    expect(ratios).toEqual([{ workload: 'hello', phase: 'warm' }]);
  });
});

describe('formatting', () => {
  it.each([
    [{ n: 3, median: 1.234, min: 1.2, max: 1.31 }, '1.23 s (1.20–1.31)'],
    [{ n: 1, median: 0.5, min: 0.5, max: 0.5 }, '0.50 s'],
    [{ n: 3, median: 12.34, min: 9.999, max: 123.4 }, '12.3 s (10.00–123)'],
  ])('seconds %j -> %s', (s, want) => expect(formatSeconds(s)).toBe(want));

  it('ratios and MiB', () => {
    expect(formatRatio(undefined)).toBe('–');
    expect(formatRatio(0.256)).toBe('0.26×');
    expect(formatRatio(12.4)).toBe('12×');
    expect(formatMiB({ n: 1, median: 100 * 1024, min: 100 * 1024, max: 100 * 1024 })).toBe('100 MiB');
    expect(formatMiB({ n: 3, median: 100 * 1024, min: 90 * 1024, max: 130 * 1024 })).toBe('100 MiB (max 130)');
  });

  it('pads a Markdown table to aligned columns, counting code points', () => {
    expect(markdownTable(['a', 'bb'], [['1–2', 'x'], ['333333', '']])).toBe(
      ['| a      | bb  |', '| ------ | --- |', '| 1–2    | x   |', '| 333333 |     |'].join('\n'),
    );
  });

  it('one row per workload and phase, with failed, missing and ratio columns', () => {
    const { results, ratios } = summarizeCells([
      cell('kiln', 'cold', [2, 4, 3], { rssKiB: [100 * 1024] }),
      cell('buildkit', 'cold', [1, 1.5, 2]),
      cell('kiln', 'export', [1], { error: 'kiln export of hello (export): exit status 1' }),
      cell('buildkit', 'export', [0.5]),
    ]);
    const statuses = ALL.map((s) => (s.id === 'buildah' ? { ...s, available: false, reason: 'missing: /usr/bin/buildah --version failed' } : s));
    const lines = formatTable(results, ratios, statuses).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^\| workload \| scenario \| kiln \(embedded\) +\| BuildKit \(docker\) +\| buildah +\| kiln\/BuildKit \| kiln\/buildah \| kiln peak RSS \|$/);
    const cols = (l: string) => l.split('|').slice(1, -1).map((c) => c.trim());
    expect(cols(lines[2]!)).toEqual(['hello', 'cold', '3.00 s (2.00–4.00)', '1.50 s (1.00–2.00)', 'missing', '2.00×', '–', '100 MiB']);
    expect(cols(lines[3]!)).toEqual(['hello', 'export', 'failed', '0.50 s', 'missing', '–', '–', '–']);
  });

  it('lists builders with versions or why they are missing', () => {
    expect(formatBuilders(ALL)).toBe(
      ['- kiln (embedded): kiln version 0.1.0', '- BuildKit (docker): dockerd 20.10.24', '- buildah: buildah version 1.28.2', '- kiln (daemon): not available yet'].join('\n'),
    );
  });
});
