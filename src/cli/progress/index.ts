// Picks the display for a --progress mode. auto is the live terminal view when the stream is a
// terminal (and TERM is not "dumb"), plain text otherwise, as buildx decides.

import { PlainDisplay } from './plain.js';
import { QuietDisplay, RawJsonDisplay } from './rawjson.js';
import { TtyDisplay } from './tty.js';
import type { OutStream, ProgressDisplay, ProgressMode } from './types.js';

export function resolveMode(mode: ProgressMode, out: OutStream, env: NodeJS.ProcessEnv = process.env): Exclude<ProgressMode, 'auto'> {
  if (mode !== 'auto') return mode;
  return out.isTTY && env.TERM !== 'dumb' ? 'tty' : 'plain';
}

export function createDisplay(mode: ProgressMode, out: OutStream, env: NodeJS.ProcessEnv = process.env): ProgressDisplay {
  switch (resolveMode(mode, out, env)) {
    case 'tty':
      return new TtyDisplay(out);
    case 'plain':
      return new PlainDisplay(out);
    case 'rawjson':
      return new RawJsonDisplay(out);
    case 'quiet':
      return new QuietDisplay();
  }
}

export { PlainDisplay, RawJsonDisplay, QuietDisplay, TtyDisplay };
export type { OutStream, ProgressDisplay, ProgressMode };
export { PROGRESS_MODES } from './types.js';
