// Compiles some of kiln's sources to JavaScript for a test that needs a separate Node process (which
// cannot load the TypeScript sources vitest runs): the process then runs what dist/ would hold.
// The output goes under node_modules/.cache so the compiled modules resolve kiln's dependencies.

import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../..');

/** Compiles `entries` (paths under src/, with what they import) into a fresh directory; returns it. */
export async function compileSources(entries: string[]): Promise<{ dir: string; cleanup: () => void }> {
  const cache = path.join(repo, 'node_modules', '.cache');
  fs.mkdirSync(cache, { recursive: true });
  const dir = fs.mkdtempSync(path.join(cache, 'kiln-test-build-'));
  const tsc = path.join(repo, 'node_modules', '.bin', 'tsc');
  const args = ['--ignoreConfig', '--outDir', dir, '--rootDir', path.join(repo, 'src'), '--module', 'nodenext', '--moduleResolution', 'nodenext'];
  args.push('--target', 'es2022', '--types', 'node', '--skipLibCheck', '--strict', ...entries.map((e) => path.join(repo, e)));
  await execFileP(tsc, args, { cwd: repo });
  // A package scope of its own: node_modules/ paths are outside kiln's "type": "module".
  fs.writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}\n');
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
