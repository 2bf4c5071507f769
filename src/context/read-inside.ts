// Reading a file named by a client inside a directory it sent (the Dockerfile of a tar context):
// never through a link that leaves the directory, never above it.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ContextError } from './walk.js';

/** The text of `name` inside `dir` (a real path), and its real path; refuses what resolves outside. */
export async function readFileInside(dir: string, name: string, what = 'file'): Promise<{ text: string; path: string }> {
  const p = path.resolve(dir, name);
  const inside = (q: string) => q === dir || q.startsWith(dir + path.sep);
  const real = await fsp.realpath(p).catch(() => undefined);
  if (!inside(p) || (real !== undefined && !inside(real))) throw new ContextError(`the ${what} ${name} must be inside the context`, name);
  if (real === undefined) throw new ContextError(`failed to read ${what}: ${name}: no such file in the build context`, name);
  const st = await fsp.stat(real);
  if (!st.isFile()) throw new ContextError(`the ${what} ${name} in the build context is not a file`, name);
  return { text: await fsp.readFile(real, 'utf8'), path: real };
}
