// kiln's compiled command line, run as a user runs it.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const KILN = path.join(REPO, 'dist', 'bin', 'kiln.js');

export function kiln(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  if (!existsSync(KILN)) throw new Error(`${KILN} is missing: run \`npm run build\` first`);
  const r = spawnSync(process.execPath, [KILN, ...args], {
    input: opts.input ?? '',
    env: { ...process.env, BUILDKIT_PROGRESS: '', ...opts.env },
    cwd: opts.cwd ?? REPO,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
