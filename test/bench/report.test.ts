import { describe, expect, it } from 'vitest';
import {
  checkTargets,
  formatBuilders,
  formatBytes,
  formatDaemon,
  formatMiB,
  formatPercent,
  formatRatio,
  formatSeconds,
  formatTable,
  formatTargets,
  markdownTable,
  summarizeCells,
  uploadSummary,
  type BuilderStatus,
  type Cell,
} from '../../bench/report.js';

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
  { id: 'kiln-daemon', label: 'kiln (daemon)', available: true, version: 'kiln version 0.1.0' },
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
    expect(
      markdownTable(
        ['a', 'bb'],
        [
          ['1–2', 'x'],
          ['333333', ''],
        ],
      ),
    ).toBe(['| a      | bb  |', '| ------ | --- |', '| 1–2    | x   |', '| 333333 |     |'].join('\n'));
  });

  it('one row per workload and phase, with failed, missing and ratio columns', () => {
    const { results, ratios } = summarizeCells([
      cell('kiln', 'cold', [2, 4, 3], { rssKiB: [100 * 1024] }),
      cell('kiln-daemon', 'cold', [0.75]),
      cell('buildkit', 'cold', [1, 1.5, 2]),
      cell('kiln', 'export', [1], { error: 'kiln export of hello (export): exit status 1' }),
      cell('buildkit', 'export', [0.5]),
    ]);
    const statuses = ALL.map((s) => (s.id === 'buildah' ? { ...s, available: false, reason: 'missing: /usr/bin/buildah --version failed' } : s));
    const lines = formatTable(results, ratios, statuses).split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(
      /^\| workload \| scenario \| kiln \(embedded\) +\| kiln \(daemon\) \| BuildKit \(docker\) +\| buildah +\| kiln\/BuildKit \| daemon\/BuildKit \| kiln\/buildah \| kiln peak RSS \|$/,
    );
    const cols = (l: string) =>
      l
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim());
    expect(cols(lines[2]!)).toEqual(['hello', 'cold', '3.00 s (2.00–4.00)', '0.75 s', '1.50 s (1.00–2.00)', 'missing', '2.00×', '0.50×', '–', '100 MiB']);
    expect(cols(lines[3]!)).toEqual(['hello', 'export', 'failed', '–', '0.50 s', 'missing', '–', '–', '–', '–']);
  });

  it('lists builders with versions or why they are missing', () => {
    const statuses = ALL.map((s) => (s.id === 'kiln-daemon' ? { ...s, available: false, reason: 'not selected (--builders)' } : s));
    expect(formatBuilders(statuses)).toBe(
      [
        '- kiln (embedded): kiln version 0.1.0',
        '- BuildKit (docker): dockerd 20.10.24',
        '- buildah: buildah version 1.28.2',
        '- kiln (daemon): not selected (--builders)',
      ].join('\n'),
    );
  });

  it('bytes and percentages', () => {
    expect(formatBytes(812)).toBe('812 B');
    expect(formatBytes(412 * 1024)).toBe('412 KiB');
    expect(formatBytes(1.5 * 1024)).toBe('1.5 KiB');
    expect(formatBytes(37.94 * 1024 ** 2)).toBe('37.9 MiB');
    expect(formatPercent(0.0123)).toBe('1.23%');
    expect(formatPercent(0.5)).toBe('50.0%');
  });
});

describe('the daemon: upload, memory, targets', () => {
  const bigctx = (builder: Cell['builder'], phase: Cell['phase'], samples: number[], extra: Partial<Cell> = {}): Cell => ({
    ...cell(builder, phase, samples, extra),
    workload: 'bigctx',
  });

  it('uploadSummary: medians of the cold (first) and edit uploads of bigctx through the daemon', () => {
    const { results } = summarizeCells([
      bigctx('kiln-daemon', 'cold', [9, 9, 9], { uploadBytes: [40_000_000, 39_000_000, 41_000_000] }),
      bigctx('kiln-daemon', 'warm', [1], { uploadBytes: [300_000] }),
      bigctx('kiln-daemon', 'edit', [2, 2, 2], { uploadBytes: [400_000, 300_000, 350_000] }),
    ]);
    expect(uploadSummary(results)).toEqual({ workload: 'bigctx', firstBytes: 40_000_000, editBytes: 350_000, ratio: 350_000 / 40_000_000 });
  });

  it('uploadSummary: nothing when a side is missing or failed', () => {
    const cold = bigctx('kiln-daemon', 'cold', [9], { uploadBytes: [40_000_000] });
    expect(uploadSummary(summarizeCells([cold]).results)).toBeUndefined();
    expect(uploadSummary(summarizeCells([cold, bigctx('kiln-daemon', 'edit', [2], { uploadBytes: [1], error: 'boom' })]).results)).toBeUndefined();
  });

  it('checkTargets: daemon warm against BuildKit warm per workload, concurrent under 3 s, upload under 1%', () => {
    const { results } = summarizeCells([
      cell('kiln-daemon', 'warm', [0.2]),
      cell('buildkit', 'warm', [0.08]),
      bigctx('kiln-daemon', 'warm', [0.3]),
      bigctx('buildkit', 'warm', [0.4]),
      { ...cell('kiln-daemon', 'concurrent', [2.4]), workload: 'concurrent' },
    ]);
    const t = checkTargets(results, { workload: 'bigctx', firstBytes: 40 * 1024 ** 2, editBytes: 300 * 1024, ratio: (300 * 1024) / (40 * 1024 ** 2) });
    expect(t.map((x) => [x.what, x.met])).toEqual([
      ['hello warm: kiln (daemon) no slower than BuildKit', false],
      ['bigctx warm: kiln (daemon) no slower than BuildKit', true],
      ['concurrent: four sleep-2 builds through the daemon under 3 s', true],
      ['bigctx edit: upload under 1% of the first', true],
    ]);
    expect(formatTargets(t).split('\n')[0]).toBe('- MISSED: hello warm: kiln (daemon) no slower than BuildKit (0.20 s vs 0.08 s)');
    expect(t[3]!.value).toBe('300 KiB of 40.0 MiB = 0.73%');
  });

  it('formatDaemon: memory after the run, the largest daemon, the upload, a daemon that had to be killed', () => {
    const text = formatDaemon({
      final: { vmRssKiB: 95 * 1024, vmHwmKiB: 110 * 1024 },
      instances: [
        { startedFor: 'bigctx', builds: 9, memory: { vmRssKiB: 150 * 1024, vmHwmKiB: 200 * 1024 }, stopSeconds: 0.1, exit: 'exit 0' },
        {
          startedFor: 'hello',
          builds: 4,
          memory: { vmRssKiB: 95 * 1024, vmHwmKiB: 110 * 1024 },
          stopSeconds: 60,
          exit: 'SIGKILL (no exit within 60 s of SIGTERM)',
        },
      ],
      upload: { workload: 'bigctx', firstBytes: 40 * 1024 ** 2, editBytes: 512 * 1024, ratio: 0.0125 },
    });
    expect(text.split('\n')).toEqual([
      '- kiln (daemon) after the run: VmRSS 95 MiB, VmHWM 110 MiB; 2 daemon processes in the run (each cold run restarts it), largest VmHWM 200 MiB (the one started for bigctx).',
      '- kiln (daemon) upload, bigctx, client->daemon bytes on the socket: first (cold) 40.0 MiB, after a one-file edit 512 KiB = 1.25% of the first.',
      '- kiln daemon started for hello ended with SIGKILL (no exit within 60 s of SIGTERM) after SIGTERM (60.0 s).',
    ]);
  });
});
