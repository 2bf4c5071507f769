// What every progress display implements. A display gets the build's events in order, may be told
// an out-of-band note ("cancelling"), and is finished once, after the build settles.

import type { ProgressEvent } from '../../client/client.js';

export type ProgressMode = 'auto' | 'tty' | 'plain' | 'rawjson' | 'quiet';
export const PROGRESS_MODES: readonly ProgressMode[] = ['auto', 'tty', 'plain', 'rawjson', 'quiet'];

/** The part of a stream the displays use; process.stderr and test doubles both fit. */
export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

export interface ProgressDisplay {
  event(e: ProgressEvent): void;
  /** A line from kiln itself (e.g. "cancelling"), shown without disturbing the live view. */
  note(text: string): void;
  /** Final redraw, error logs; stops timers. Idempotent. */
  finish(): void;
}

export type { ProgressEvent };
