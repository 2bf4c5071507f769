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
