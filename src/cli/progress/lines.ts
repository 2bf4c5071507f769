// Shared pieces of the text displays: splitting output chunks into lines with bounded memory,
// BuildKit's timestamp format, and a small ring of recent lines.

/** A line longer than this is cut where it stands: a RUN printing megabytes without "\n" must not grow a buffer without end. */
export const MAX_LINE = 16 * 1024;

/** BuildKit's log timestamp: seconds since the vertex started, 3 decimals under 10 s, 2 under 100 s, then 1. */
export function formatLogTime(ms: number): string {
  const sec = Math.max(0, ms) / 1000;
  return sec.toFixed(sec < 10 ? 3 : sec < 100 ? 2 : 1);
}

export function formatDuration(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/**
 * Turns output chunks into whole lines. A line is stamped with the time its first byte arrived, so
 * a line written in two chunks keeps the earlier time (as BuildKit's display does).
 */
export class LineSplitter {
  private partial = '';
  private partialAt = 0;

  push(data: string, atMs: number, emit: (line: string, atMs: number) => void): void {
    let rest = data;
    for (;;) {
      const nl = rest.indexOf('\n');
      if (nl < 0) break;
      const piece = rest.slice(0, nl);
      emit(this.partial === '' ? piece : this.partial + piece, this.partial === '' ? atMs : this.partialAt);
      this.partial = '';
      rest = rest.slice(nl + 1);
    }
    if (rest === '') return;
    if (this.partial === '') this.partialAt = atMs;
    this.partial += rest;
    while (this.partial.length > MAX_LINE) {
      emit(this.partial.slice(0, MAX_LINE), this.partialAt);
      this.partial = this.partial.slice(MAX_LINE);
      this.partialAt = atMs;
    }
  }

  /** Emits what is left of an unterminated last line. */
  flush(emit: (line: string, atMs: number) => void): void {
    if (this.partial !== '') emit(this.partial, this.partialAt);
    this.partial = '';
  }
}

/** The last `size` items pushed. */
export class Ring<T> {
  private items: T[] = [];
  constructor(private readonly size: number) {}
  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.size) this.items.splice(0, this.items.length - this.size);
  }
  toArray(): T[] {
    return [...this.items];
  }
  get length(): number {
    return this.items.length;
  }
}

/** True for the error of a step that was cancelled rather than failed. */
export function isCancelError(message: string): boolean {
  return /(context canceled|cancell?ed|aborted)\W*$/i.test(message.trim());
}

/** How many of a failed step's last output lines are repeated under the build's error. */
export const ERROR_TAIL_LINES = 10;

/** The "------ > [2/2] RUN false: ... ------" block printed for each failed step after the build. */
export function formatErrorBlock(name: string, tail: string[]): string {
  return ['------', ` > ${name}:`, ...tail, '------'].join('\n') + '\n';
}
