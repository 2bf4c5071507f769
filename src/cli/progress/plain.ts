// The plain display, in BuildKit's text format: one block per vertex ("#5 [build 2/4] RUN make",
// "#5 0.512 output", "#5 DONE 1.2s"), a blank line between blocks, "#5 ..." when a block is left
// unfinished because another vertex spoke, and the header again when the vertex resumes.

import type { ProgressEvent } from '../../client/client.js';
import { ERROR_TAIL_LINES, formatDuration, formatErrorBlock, formatLogTime, isCancelError, LineSplitter, Ring } from './lines.js';
import type { OutStream, ProgressDisplay } from './types.js';

/** Longest cache-miss reason shown: it explains, it is not a log. */
const MAX_REASON = 160;

interface PlainVertex {
  id: number;
  name: string;
  lines: LineSplitter;
  /** Recent output, repeated under the error if the vertex fails. */
  tail: Ring<string>;
  error?: string;
  ended: boolean;
}

export class PlainDisplay implements ProgressDisplay {
  private readonly vertices = new Map<number, PlainVertex>();
  /** The vertex whose block is open (header printed, not ended). */
  private current: PlainVertex | undefined;
  private printedAny = false;
  private finished = false;

  constructor(private readonly out: OutStream) {}

  event(e: ProgressEvent): void {
    if (this.finished) return;
    if (e.type === 'message') {
      this.startBlock();
      this.write(e.level === 'warning' ? `WARN: ${e.text}` : e.text);
      return;
    }
    if (e.type === 'log') {
      const v = this.vertex(e.id, `#${e.id}`);
      this.switchTo(v);
      v.lines.push(e.data, e.atMs, (line, at) => this.logLine(v, line, at));
      return;
    }
    const v = this.vertex(e.id, e.name);
    v.name = e.name;
    this.switchTo(v);
    if (e.reason) this.write(`#${v.id} reason: ${shortReason(e.reason)}`);
    if (e.status === 'started') return;
    v.lines.flush((line, at) => this.logLine(v, line, at));
    v.ended = true;
    this.current = undefined;
    switch (e.status) {
      case 'cached':
        this.write(`#${v.id} CACHED`);
        break;
      case 'done':
        this.write(`#${v.id} DONE ${formatDuration(e.durationMs ?? 0)}`);
        break;
      case 'error': {
        // One line, as BuildKit's: the whole error (with any output tail the solver added) is
        // printed once, at the end, by the command.
        const message = (e.error ?? 'failed').split('\n', 1)[0]!;
        if (isCancelError(message)) {
          this.write(`#${v.id} CANCELED`);
        } else {
          v.error = message;
          this.write(`#${v.id} ERROR: ${message}`);
        }
        break;
      }
    }
  }

  note(text: string): void {
    if (this.finished) {
      this.out.write(text + '\n');
      return;
    }
    this.startBlock();
    this.write(text);
  }

  finish(): void {
    if (this.finished) return;
    for (const v of this.vertices.values()) {
      if (!v.ended) v.lines.flush((line, at) => this.logLine(v, line, at));
    }
    this.finished = true;
    for (const v of this.vertices.values()) {
      if (v.error !== undefined) this.out.write(formatErrorBlock(v.name, v.tail.toArray()));
    }
  }

  private vertex(id: number, name: string): PlainVertex {
    let v = this.vertices.get(id);
    if (!v) {
      v = { id, name, lines: new LineSplitter(), tail: new Ring(ERROR_TAIL_LINES), ended: false };
      this.vertices.set(id, v);
    }
    return v;
  }

  private logLine(v: PlainVertex, line: string, atMs: number): void {
    const stamped = `${formatLogTime(atMs)} ${line}`;
    v.tail.push(stamped);
    this.write(`#${v.id} ${stamped}`);
  }

  /** Makes `v` the open block, printing its header (again, if it was interrupted). */
  private switchTo(v: PlainVertex): void {
    if (this.current === v) return;
    this.startBlock();
    this.write(`#${v.id} ${v.name}`);
    this.current = v;
  }

  /** Leaves the open block ("#N ..." if unfinished) and separates what follows with a blank line. */
  private startBlock(): void {
    if (this.current) this.write(`#${this.current.id} ...`);
    this.current = undefined;
    if (this.printedAny) this.out.write('\n');
    this.printedAny = true;
  }

  private write(line: string): void {
    this.out.write(line + '\n');
  }
}

function shortReason(reason: string): string {
  const first = reason.split('\n', 1)[0]!.trim();
  return first.length > MAX_REASON ? first.slice(0, MAX_REASON - 3) + '...' : first;
}
