// Replacing a small file whole: written under a temporary name of its own, then renamed over the
// old one, so a reader sees the old content or the new, never part of one.
//
// The temporary name carries the pid and random bytes: a daemon runs many builds in one process,
// and two of them replacing the same record at once (two builds of one checkout reaching the same
// step) must not share a temporary file (one rename would take the other's away).

import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

/** `mkdir`: make the directory first (with `mkdir.mode` for what it creates); `mode`: the new file's. */
export async function replaceFile(file: string, data: string | Uint8Array, opts: { mkdir?: boolean | { mode: number }; mode?: number } = {}): Promise<void> {
  if (opts.mkdir) await fsp.mkdir(path.dirname(file), { recursive: true, ...(typeof opts.mkdir === 'object' ? { mode: opts.mkdir.mode } : {}) });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.writeFile(tmp, data, opts.mode !== undefined ? { mode: opts.mode } : {});
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined); // the write's error is the one to report
    throw err;
  }
}
