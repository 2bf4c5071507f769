// Replacing a small file whole: written under a temporary name of its own, then renamed over the
// old one, so a reader sees the old content or the new, never part of one.
//
// The temporary name carries the pid and random bytes: a daemon runs many builds in one process,
// and two of them replacing the same record at once (two builds of one checkout reaching the same
// step) must not share a temporary file (one rename would take the other's away).

import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

export async function replaceFile(file: string, data: string | Uint8Array, opts: { mkdir?: boolean } = {}): Promise<void> {
  if (opts.mkdir) await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
