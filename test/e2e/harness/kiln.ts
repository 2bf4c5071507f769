// The side under test: run kiln's CLI (dist/bin/kiln, built by `npm run build`) as a user would.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { testEnv, type RunResult } from '../../helpers/env.js';
import { REPO_ROOT } from './cases.js';

export const KILN_CLI = join(REPO_ROOT, 'dist', 'bin', 'kiln');

/**
 * A kiln config in Docker's daemon.json style that sends Docker Hub names to the test registry, as
 * the test daemon's --registry-mirror does, so `FROM busybox` means the same image to both builders.
 */
export async function writeKilnConfig(dir: string): Promise<string> {
  const file = join(dir, 'kiln-config.json');
  await writeFile(file, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }) + '\n');
  return file;
}

export interface KilnBuildOptions {
  root: string; // kiln's state directory (--root)
  config: string; // KILN_CONFIG file
  dockerfile: string;
  context: string;
  output?: string; // --output value
  buildArgs?: Record<string, string>;
  target?: string;
  extra?: string[]; // more flags, e.g. ['--push', '-t', ref]
  timeoutMs?: number;
  /** Extra environment for kiln (e.g. DOCKER_HOST for --load). */
  env?: Record<string, string>;
}

export function kilnBuildArgs(o: KilnBuildOptions): string[] {
  const args = ['build', '--root', o.root, '-f', o.dockerfile];
  if (o.output) args.push('--output', o.output);
  for (const [k, v] of Object.entries(o.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
  if (o.target) args.push('--target', o.target);
  args.push(...(o.extra ?? []), o.context);
  return args;
}

/** Run `kiln build`; never rejects for a non-zero exit (callers show the output). */
export function kilnBuild(o: KilnBuildOptions): Promise<RunResult> {
  if (!existsSync(KILN_CLI)) {
    return Promise.reject(new Error(`${KILN_CLI} is missing: run \`npm run build\` (scripts/testenv.sh up does)`));
  }
  const args = kilnBuildArgs(o);
  return new Promise((resolve, reject) => {
    const child = spawn(KILN_CLI, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, KILN_CONFIG: o.config, ...o.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: o.timeoutMs ?? 600_000,
      killSignal: 'SIGKILL',
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new Error(`kiln ${args.join(' ')}: ${e.message}`)));
    child.on('close', (code, signal) =>
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8') + (signal ? `\n[kiln killed by ${signal}]` : ''),
        code: code ?? 137,
      }),
    );
  });
}
