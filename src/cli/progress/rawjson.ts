// rawjson: every event as one line of JSON, for programs that follow a build.

import type { ProgressEvent } from '../../client/client.js';
import type { OutStream, ProgressDisplay } from './types.js';

export class RawJsonDisplay implements ProgressDisplay {
  constructor(private readonly out: OutStream) {}

  event(e: ProgressEvent): void {
    this.out.write(JSON.stringify(e) + '\n');
  }

  /** kiln's own notes are events too, so the stream stays one JSON document per line. */
  note(text: string): void {
    this.event({ type: 'message', level: 'info', text });
  }

  finish(): void {}
}

/** quiet: nothing at all (the command prints the image ID itself). */
export class QuietDisplay implements ProgressDisplay {
  event(): void {}
  note(): void {}
  finish(): void {}
}
