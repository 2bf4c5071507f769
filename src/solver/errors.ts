// A failed build as plain data: what the CLI shows and what the daemon sends to its client. The
// solver's errors carry their fields (StepError's location, exit code and output tail, a
// DockerfileError's file and line); this turns any of them into one shape so nobody has to parse a
// message to find them again.

// Leaf modules, not the rooms' indexes: a daemon's client loads this, and must start fast.
import { CopyError } from '../fileop/types.js';
import { DockerfileError } from '../frontend/errors.js';
import { StepError } from './ops/types.js';

export interface BuildErrorInfo {
  /** The whole error, as a user reads it: "Dockerfile:3: RUN false: ... exit code: 1". */
  message: string;
  /** The Dockerfile instruction it came from, when it came from one. */
  location?: { file: string; line: number };
  /** A failed RUN's exit code. */
  exitCode?: number;
  /** A failed RUN's last lines of output (a display that streamed the output need not repeat it). */
  outputTail?: string;
  /** The build was cancelled (by its caller, a disconnect, a timeout) rather than failed. */
  cancelled?: boolean;
}

export function buildErrorInfo(err: unknown, cancelled = false): BuildErrorInfo {
  const info: BuildErrorInfo = { message: err instanceof Error ? err.message : String(err) };
  if (err instanceof StepError) {
    info.location = { file: err.location.file, line: err.location.line };
    if (err.exitCode !== undefined) info.exitCode = err.exitCode;
    if (err.outputTail !== undefined) info.outputTail = err.outputTail;
  } else if (err instanceof DockerfileError) {
    info.location = { file: err.file, line: err.line };
  } else if (err instanceof CopyError && err.location) {
    info.location = { file: err.location.file, line: err.location.line };
  }
  if (cancelled) info.cancelled = true;
  return info;
}
