// kiln's compiled command line, run as a user runs it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const KILN = path.join(REPO, 'dist', 'bin', 'kiln.js');
/** The `kiln` command as installed (package.json "bin"): the sh script that starts KILN. */
export const KILN_COMMAND = path.join(REPO, 'dist', 'bin', 'kiln');

export function kiln(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  if (!existsSync(KILN_COMMAND)) throw new Error(`${KILN_COMMAND} is missing: run \`npm run build\` first`);
  const r = spawnSync(KILN_COMMAND, args, {
    input: opts.input ?? '',
    env: { ...process.env, BUILDKIT_PROGRESS: '', ...opts.env },
    cwd: opts.cwd ?? REPO,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
