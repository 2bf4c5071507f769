// The terminal display: a live view redrawn in place (cursor up, clear, draw) of every step with its
// timer, the last lines of output under each running step, CACHED / ERROR marks, and at the end one
// summary of all steps. Notes and warnings are printed above the live view, which is drawn again
// below them, so nothing is overwritten.

import type { ProgressEvent } from '../../client/client.js';
import { ERROR_TAIL_LINES, formatDuration, formatErrorBlock, formatLogTime, isCancelError, LineSplitter, Ring } from './lines.js';
import type { OutStream, ProgressDisplay } from './types.js';

/** Output lines shown under a running step. */
const TAIL_LINES = 6;
/** A kept output line is cut to this: more than any terminal shows, far less than a flood. */
const MAX_KEPT_LINE = 512;
const REDRAW_MS = 100;

const ESC = '\x1b[';
const HIDE_CURSOR = `${ESC}?25l`;
const SHOW_CURSOR = `${ESC}?25h`;
const CLEAR_DOWN = `${ESC}J`;
const RED = `${ESC}31m`;
const YELLOW = `${ESC}33m`;
const BLUE = `${ESC}34m`;
const FAINT = `${ESC}2m`;
const RESET = `${ESC}0m`;

interface TtyVertex {
  id: number;
  name: string;
  startedAt: number;
  state: 'running' | 'cached' | 'done' | 'error' | 'canceled';
  durationMs?: number;
  error?: string;
  lines: LineSplitter;
  /** Recent output, plain text, each line cut to MAX_KEPT_LINE: bounded whatever the step prints. */
  tail: Ring<string>;
}

export interface TtyOptions {
  /** Clock in ms, injectable so tests get stable timers. */
  now?: () => number;
  /** Redraw on a timer (off in tests, which call render()). */
  timer?: boolean;
}

export class TtyDisplay implements ProgressDisplay {
  private readonly vertices = new Map<number, TtyVertex>();
  private readonly order: TtyVertex[] = [];
  private readonly started: number;
  private drawnLines = 0;
  private interval: NodeJS.Timeout | undefined;
  private finished = false;
  private readonly now: () => number;

  constructor(
    private readonly out: OutStream,
    opts: TtyOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    if (opts.timer ?? true) {
      this.interval = setInterval(() => this.render(false), REDRAW_MS);
      this.interval.unref();
    }
    this.out.write(HIDE_CURSOR);
  }

  event(e: ProgressEvent): void {
    if (this.finished) return;
    if (e.type === 'message') {
      this.above(e.level === 'warning' ? `${YELLOW}WARN: ${e.text}${RESET}` : e.text);
      return;
    }
    const v = this.vertex(e.id, e.type === 'vertex' ? e.name : `#${e.id}`);
    if (e.type === 'log') {
      v.lines.push(e.data, e.atMs, (line, at) => this.keep(v, line, at));
      return;
    }
    v.name = e.name;
    if (e.status === 'started') return;
    v.lines.flush((line, at) => this.keep(v, line, at));
    v.durationMs = e.durationMs;
    if (e.status === 'error') {
      const message = (e.error ?? 'failed').split('\n', 1)[0]!;
      v.state = isCancelError(message) ? 'canceled' : 'error';
      if (v.state === 'error') v.error = message;
    } else {
      v.state = e.status;
    }
  }

  note(text: string): void {
    if (this.finished) this.out.write(text + '\n');
    else this.above(text);
  }

  finish(): void {
    if (this.finished) return;
    if (this.interval) clearInterval(this.interval);
    this.render(true);
    this.finished = true;
    for (const v of this.order) {
      if (v.state === 'error') {
        this.out.write(formatErrorBlock(v.name, v.tail.toArray().slice(-ERROR_TAIL_LINES).map(sanitize)));
      }
    }
    this.out.write(SHOW_CURSOR);
  }

  /** Draws the view in place of the previous one; `final` shows every step and no output. */
  render(final: boolean): void {
    if (this.finished) return;
    const frame = this.frame(final);
    this.out.write(this.erase() + frame.join('\n') + '\n');
    this.drawnLines = frame.length;
  }

  /** The lines of one frame (exported behaviour for tests: no cursor movement in here). */
  frame(final: boolean): string[] {
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const height = Math.max(4, this.out.rows ?? 24);
    const now = this.now();
    const completed = this.order.filter((v) => v.state !== 'running').length;
    const allDone = completed === this.order.length && completed > 0;
    const header = `[+] Building ${formatDuration(now - this.started)} (${completed}/${this.order.length})${final && allDone ? ' FINISHED' : ''}`;

    const blocks = this.order.map((v) => {
      const lines = [this.stepLine(v, now, width)];
      if (!final && v.state === 'running') {
        for (const l of v.tail.toArray().slice(-TAIL_LINES)) lines.push(`${FAINT}${cut(` => => # ${sanitize(l)}`, width)}${RESET}`);
      }
      return { v, lines };
    });
    if (final) return [header, ...blocks.flatMap((b) => b.lines)];

    // Too tall for the terminal: drop finished steps from the top first, then output tails, so the
    // running steps stay in view.
    const budget = height - 2;
    let total = blocks.reduce((n, b) => n + b.lines.length, 0);
    for (let i = 0; i < blocks.length && total > budget; i++) {
      if (blocks[i]!.v.state !== 'running') {
        total -= blocks[i]!.lines.length;
        blocks[i]!.lines = [];
      }
    }
    for (let i = 0; i < blocks.length && total > budget; i++) {
      total -= blocks[i]!.lines.length - Math.min(1, blocks[i]!.lines.length);
      blocks[i]!.lines = blocks[i]!.lines.slice(0, 1);
    }
    const lines = blocks.flatMap((b) => b.lines);
    return [header, ...lines.slice(Math.max(0, lines.length - budget))];
  }

  private stepLine(v: TtyVertex, now: number, width: number): string {
    const mark = v.state === 'cached' ? 'CACHED ' : v.state === 'error' ? 'ERROR ' : v.state === 'canceled' ? 'CANCELED ' : '';
    const ms = v.state === 'cached' ? 0 : v.state === 'running' ? now - v.startedAt : (v.durationMs ?? 0);
    const timer = ` ${formatDuration(ms)}`;
    const name = cut(` => ${mark}${v.name.replace(/\t/g, ' ')}`, width - timer.length - 1);
    const line = name.padEnd(width - timer.length) + timer;
    if (v.state === 'error') return RED + line + RESET;
    if (v.state === 'canceled') return YELLOW + line + RESET;
    if (v.state !== 'running') return BLUE + line + RESET;
    return line;
  }

  private above(text: string): void {
    this.out.write(this.erase() + text + '\n');
    this.drawnLines = 0;
    this.render(false);
  }

  /** Cursor to the start of the previous frame, and everything below it cleared. */
  private erase(): string {
    return this.drawnLines > 0 ? `${ESC}${this.drawnLines}F${CLEAR_DOWN}` : `\r${CLEAR_DOWN}`;
  }

  private vertex(id: number, name: string): TtyVertex {
    let v = this.vertices.get(id);
    if (!v) {
      v = { id, name, startedAt: this.now(), state: 'running', lines: new LineSplitter(), tail: new Ring(Math.max(TAIL_LINES, ERROR_TAIL_LINES)) };
      this.vertices.set(id, v);
      this.order.push(v);
    }
    return v;
  }

  private keep(v: TtyVertex, line: string, atMs: number): void {
    // Cleaned when drawn (ten times a second), not per line: a flooding step costs little.
    v.tail.push(`${formatLogTime(atMs)} ${line.slice(0, MAX_KEPT_LINE)}`);
  }
}

/** Output shown inside the view must not move the cursor: escape sequences and control characters go. */
export function sanitize(line: string): string {
  // A carriage return redraws a progress bar in place: keep what the terminal would end up showing.
  const trimmed = line.replace(/\r+$/, '');
  const lastCr = trimmed.lastIndexOf('\r');
  const visible = lastCr >= 0 ? trimmed.slice(lastCr + 1) : trimmed;
  return visible
    .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
    .replace(/\x1b[\]PX^_][^\x07\x1b]*(\x07|\x1b\\)?/g, '')
    .replace(/\t/g, ' ')
    .replace(/[\x00-\x1f\x7f]/g, '');
}

function cut(s: string, width: number): string {
  return s.length > width ? s.slice(0, Math.max(0, width)) : s;
}
