import { describe, expect, it } from 'vitest';
import { createDisplay, PlainDisplay, RawJsonDisplay, resolveMode, TtyDisplay } from '../../src/cli/progress/index.js';
import { formatLogTime, LineSplitter, MAX_LINE } from '../../src/cli/progress/lines.js';
import { sanitize } from '../../src/cli/progress/tty.js';
import type { ProgressEvent } from '../../src/solver/progress.js';

/** A stream that remembers what was written. */
class Capture {
  text = '';
  isTTY?: boolean;
  columns?: number;
  rows?: number;
  write(s: string) {
    this.text += s;
    return true;
  }
}

const started = (id: number, name: string): ProgressEvent => ({ type: 'vertex', id, name, status: 'started' });
const log = (id: number, atMs: number, data: string): ProgressEvent => ({ type: 'log', id, stream: 'stdout', atMs, data });

describe('plain display', () => {
  it('prints a scripted build exactly in BuildKit text format', () => {
    const out = new Capture();
    const d = new PlainDisplay(out);
    const events: ProgressEvent[] = [
      started(1, '[internal] load build definition from Dockerfile'),
      { type: 'vertex', id: 1, name: '[internal] load build definition from Dockerfile', status: 'done', durationMs: 12 },
      started(2, '[1/3] FROM docker.io/library/busybox:latest'),
      { type: 'vertex', id: 2, name: '[1/3] FROM docker.io/library/busybox:latest', status: 'cached', durationMs: 0 },
      started(3, '[2/3] RUN echo hi'),
      log(3, 512, 'hello\nwor'),
      started(4, '[3/3] COPY a b'),
      log(3, 700, 'ld\n'),
      log(3, 12_340, 'late\n'),
      { type: 'message', level: 'warning', text: 'something odd' },
      { type: 'vertex', id: 3, name: '[2/3] RUN echo hi', status: 'done', durationMs: 1234, reason: 'no cache record for this step\nsecond line' },
      log(4, 5, 'partial line without newline'),
      { type: 'vertex', id: 4, name: '[3/3] COPY a b', status: 'error', durationMs: 40, error: 'failed to compute cache key: "/a" not found' },
    ];
    for (const e of events) d.event(e);
    d.finish();
    d.finish(); // idempotent
    expect(out.text).toBe(
      [
        '#1 [internal] load build definition from Dockerfile',
        '#1 DONE 0.0s',
        '',
        '#2 [1/3] FROM docker.io/library/busybox:latest',
        '#2 CACHED',
        '',
        '#3 [2/3] RUN echo hi',
        '#3 0.512 hello',
        '#3 ...',
        '',
        '#4 [3/3] COPY a b',
        '#4 ...',
        '',
        '#3 [2/3] RUN echo hi',
        '#3 0.512 world',
        '#3 12.34 late',
        '#3 ...',
        '',
        'WARN: something odd',
        '',
        '#3 [2/3] RUN echo hi',
        '#3 reason: no cache record for this step',
        '#3 DONE 1.2s',
        '',
        '#4 [3/3] COPY a b',
        '#4 0.005 partial line without newline',
        '#4 ERROR: failed to compute cache key: "/a" not found',
        '------',
        ' > [3/3] COPY a b:',
        '0.005 partial line without newline',
        '------',
        '',
      ].join('\n'),
    );
  });

  it('marks cancelled steps CANCELED and repeats no logs for them', () => {
    const out = new Capture();
    const d = new PlainDisplay(out);
    d.event(started(7, '[2/2] RUN sleep 100'));
    d.event(log(7, 100, 'zzz\n'));
    d.note('cancelling');
    d.event({ type: 'vertex', id: 7, name: '[2/2] RUN sleep 100', status: 'error', durationMs: 900, error: 'context canceled' });
    d.finish();
    expect(out.text).toBe(['#7 [2/2] RUN sleep 100', '#7 0.100 zzz', '#7 ...', '', 'cancelling', '', '#7 [2/2] RUN sleep 100', '#7 CANCELED', ''].join('\n'));
  });

  it('shows only the first line of a multi-line step error (the command prints it whole)', () => {
    const out = new Capture();
    const d = new PlainDisplay(out);
    d.event(started(2, 'RUN false'));
    d.event({ type: 'vertex', id: 2, name: 'RUN false', status: 'error', error: 'exit code: 1\n--- last lines of output ---\nboom' });
    d.finish();
    expect(out.text).toBe(['#2 RUN false', '#2 ERROR: exit code: 1', '------', ' > RUN false:', '------', ''].join('\n'));
  });

  it('repeats only the last 10 lines of a failed step', () => {
    const out = new Capture();
    const d = new PlainDisplay(out);
    d.event(started(1, 'RUN noisy'));
    for (let i = 1; i <= 15; i++) d.event(log(1, i, `line ${i}\n`));
    d.event({ type: 'vertex', id: 1, name: 'RUN noisy', status: 'error', error: 'exit code: 1' });
    d.finish();
    const block = out.text.slice(out.text.indexOf('------'));
    expect(block.split('\n').filter((l) => l.includes('line '))).toEqual(
      Array.from({ length: 10 }, (_, i) => `0.0${String(i + 6).padStart(2, '0')} line ${i + 6}`),
    );
  });
});

describe('line splitting', () => {
  it('stamps a line with the time of its first chunk and cuts floods', () => {
    const got: [string, number][] = [];
    const s = new LineSplitter();
    const emit = (l: string, at: number) => got.push([l, at]);
    s.push('ab', 1, emit);
    s.push('c\nd', 2, emit);
    s.push('\n\n', 3, emit);
    expect(got).toEqual([
      ['abc', 1],
      ['d', 2],
      ['', 3],
    ]);
    got.length = 0;
    s.push('x'.repeat(MAX_LINE * 2 + 5), 4, emit);
    expect(got.map(([l]) => l.length)).toEqual([MAX_LINE, MAX_LINE]);
    s.flush(emit);
    expect(got.at(-1)).toEqual(['xxxxx', 4]);
  });

  it('formats log times as BuildKit: 3, 2, then 1 decimals', () => {
    expect([formatLogTime(0), formatLogTime(512), formatLogTime(9_999), formatLogTime(12_340), formatLogTime(123_456)]).toEqual([
      '0.000',
      '0.512',
      '9.999',
      '12.34',
      '123.5',
    ]);
  });
});

describe('rawjson display', () => {
  it('writes each event as one JSON line, notes as info messages', () => {
    const out = new Capture();
    const d = new RawJsonDisplay(out);
    const events = [started(1, 'RUN x'), log(1, 3, 'a\nb'), { type: 'vertex', id: 1, name: 'RUN x', status: 'done', durationMs: 5 } as ProgressEvent];
    for (const e of events) d.event(e);
    d.note('cancelling');
    d.finish();
    const lines = out.text.trimEnd().split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual([...events, { type: 'message', level: 'info', text: 'cancelling' }]);
  });
});

describe('mode selection', () => {
  it('auto is tty on a terminal, plain otherwise or with TERM=dumb', () => {
    expect(resolveMode('auto', { write: () => true, isTTY: true }, {})).toBe('tty');
    expect(resolveMode('auto', { write: () => true, isTTY: true }, { TERM: 'dumb' })).toBe('plain');
    expect(resolveMode('auto', { write: () => true }, {})).toBe('plain');
    expect(resolveMode('rawjson', { write: () => true, isTTY: true }, {})).toBe('rawjson');
  });

  it('quiet writes nothing', () => {
    const out = new Capture();
    const d = createDisplay('quiet', out, {});
    d.event(started(1, 'x'));
    d.note('n');
    d.finish();
    expect(out.text).toBe('');
  });
});

/** Just enough of a terminal to replay the tty display: CR, LF, ESC[nF, ESC[J, colours ignored. */
function screen(ansi: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  for (let i = 0; i < ansi.length; ) {
    const csi = /^\x1b\[([0-9;?]*)([A-Za-z])/.exec(ansi.slice(i, i + 16));
    if (csi) {
      const n = Number(csi[1]) || 1;
      if (csi[2] === 'F') {
        row = Math.max(0, row - n);
        col = 0;
      } else if (csi[2] === 'J') {
        lines[row] = lines[row]!.slice(0, col);
        lines.length = row + 1;
      } else if (csi[2] !== 'm' && csi[2] !== 'l' && csi[2] !== 'h') {
        throw new Error(`unexpected escape ${JSON.stringify(csi[0])}`);
      }
      i += csi[0].length;
      continue;
    }
    const c = ansi[i]!;
    if (c === '\r') col = 0;
    else if (c === '\n') {
      row++;
      col = 0;
      if (lines[row] === undefined) lines[row] = '';
    } else {
      const l = lines[row]!.padEnd(col);
      lines[row] = l.slice(0, col) + c + l.slice(col + 1);
      col++;
    }
    i++;
  }
  return lines;
}

describe('tty display', () => {
  function setup(columns = 60, rows = 24) {
    const out = new Capture();
    out.isTTY = true;
    out.columns = columns;
    out.rows = rows;
    let now = 1_000;
    const d = new TtyDisplay(out, { now: () => now, timer: false });
    return { out, d, tick: (ms: number) => (now += ms) };
  }

  it('redraws running steps with timers and output tails in place, then collapses to a summary', () => {
    const { out, d, tick } = setup();
    d.event(started(1, '[1/3] FROM busybox'));
    d.event({ type: 'vertex', id: 1, name: '[1/3] FROM busybox', status: 'cached' });
    d.event(started(2, '[2/3] RUN make'));
    tick(1500);
    for (let i = 1; i <= 8; i++) d.event(log(2, 100 * i, `cc file${i}.c\n`));
    d.render(false);
    expect(screen(out.text).slice(0, -1)).toEqual([
      '[+] Building 1.5s (1/2)',
      ' => CACHED [1/3] FROM busybox                          0.0s',
      ' => [2/3] RUN make                                     1.5s',
      ' => => # 0.300 cc file3.c',
      ' => => # 0.400 cc file4.c',
      ' => => # 0.500 cc file5.c',
      ' => => # 0.600 cc file6.c',
      ' => => # 0.700 cc file7.c',
      ' => => # 0.800 cc file8.c',
    ]);
    d.event({ type: 'message', level: 'warning', text: 'base image is old' });
    tick(500);
    d.event({ type: 'vertex', id: 2, name: '[2/3] RUN make', status: 'done', durationMs: 2000 });
    d.event(started(3, '[3/3] COPY out /'));
    d.event({ type: 'vertex', id: 3, name: '[3/3] COPY out /', status: 'done', durationMs: 40 });
    d.finish();
    expect(screen(out.text).slice(0, -1)).toEqual([
      'WARN: base image is old',
      '[+] Building 2.0s (3/3) FINISHED',
      ' => CACHED [1/3] FROM busybox                          0.0s',
      ' => [2/3] RUN make                                     2.0s',
      ' => [3/3] COPY out /                                   0.0s',
    ]);
    expect(out.text.endsWith('\x1b[?25h')).toBe(true);
  });

  it('keeps running steps in view on a short terminal and errors after the summary', () => {
    const { out, d } = setup(50, 6);
    for (let i = 1; i <= 6; i++) {
      d.event(started(i, `step ${i}`));
      if (i < 6) d.event({ type: 'vertex', id: i, name: `step ${i}`, status: 'done', durationMs: 100 });
    }
    d.event(log(6, 50, 'working\n'));
    d.render(false);
    const live = screen(out.text).slice(0, -1);
    expect(live).toHaveLength(5);
    expect(live[0]).toBe('[+] Building 0.0s (5/6)');
    expect(live.slice(-2)).toEqual([' => step 6                                   0.0s', ' => => # 0.050 working']);
    d.event({ type: 'vertex', id: 6, name: 'step 6', status: 'error', durationMs: 300, error: 'exit code: 2' });
    d.finish();
    const final = screen(out.text).slice(0, -1);
    expect(final).toEqual([
      '[+] Building 0.0s (6/6) FINISHED',
      ...[1, 2, 3, 4, 5].map((i) => ` => step ${i}`.padEnd(45) + '0.1s'),
      ' => ERROR step 6                             0.3s',
      '------',
      ' > step 6:',
      '0.050 working',
      '------',
    ]);
  });

  it('keeps bounded memory for a step that floods its output', () => {
    const { out, d } = setup();
    d.event(started(1, 'RUN yes'));
    const chunk = 'y\n'.repeat(50_000) + 'z'.repeat(100_000);
    for (let i = 0; i < 50; i++) d.event(log(1, i, chunk));
    d.render(false);
    const v = (d as unknown as { vertices: Map<number, { tail: { toArray(): string[] } }> }).vertices.get(1)!;
    const kept = v.tail.toArray();
    expect(kept.length).toBeLessThanOrEqual(10);
    expect(Math.max(...kept.map((l) => l.length))).toBeLessThanOrEqual(600);
    expect(screen(out.text).every((l) => l.length <= 60)).toBe(true);
  });

  it('strips what would move the cursor out of output lines', () => {
    expect(sanitize('\x1b[31mred\x1b[0m\tx')).toBe('red x');
    expect(sanitize('10%\r50%\r100%')).toBe('100%');
    expect(sanitize('dos line\r')).toBe('dos line');
    expect(sanitize('\x1b]0;title\x07bell\x07')).toBe('bell');
  });
});
