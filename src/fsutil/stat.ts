// lstat that answers "not there" with undefined instead of an error: a missing path, or a path under
// something that is not a directory (ENOTDIR), is an answer, not a failure. Never follows a final link.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';

export function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export async function lstatOrUndefined(p: string): Promise<fs.Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

export function lstatOrUndefinedSync(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/**
 * The stamp file digests are memoised under (cache/checksum-memo.ts), from a bigint lstat:
 * `dev:ino:size:mtimeNs:ctimeNs`. The walk and the pool's quick stats make it here; the worker
 * tasks, which cannot import, write the same text (workers/worker-source.ts, stampOf).
 */
export function contentStamp(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}
