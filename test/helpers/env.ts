// The real test environment that scripts/test.sh (`npm test`) brings up: a registry on loopback with
// the base images, the same images as OCI layouts on disk, and a Docker daemon used as the reference
// builder and to load/run what kiln exports. Tests read it only through testEnv(), so a test run
// without it fails loudly instead of silently skipping the real checks.
import { spawn, execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, onTestFinished } from 'vitest';

export interface TestEnv {
  /** host:port of the plain-HTTP test registry, e.g. 127.0.0.1:5055 */
  registry: string;
  /** registry reference of the busybox image (tag latest; also pushed as library/busybox) */
  busybox: string;
  /** registry reference of the Debian bookworm image (also pushed as library/debian) */
  debian: string;
  /** OCI image layout directory of busybox (tag "latest"); shared and read-only: copy before changing */
  busyboxOci: string;
  /** OCI image layout directory of Debian (tag "bookworm"); shared and read-only */
  debianOci: string;
  /** DOCKER_HOST of the test daemon, unix:///run/kiln-test/docker.sock */
  dockerHost: string;
  /** the docker client to use (Debian's 20.10, matching the daemon) */
  docker: string;
}

const VARS = {
  registry: 'KILN_TEST_REGISTRY',
  busybox: 'KILN_TEST_BUSYBOX',
  debian: 'KILN_TEST_DEBIAN',
  busyboxOci: 'KILN_TEST_BUSYBOX_OCI',
  debianOci: 'KILN_TEST_DEBIAN_OCI',
  dockerHost: 'KILN_TEST_DOCKER_HOST',
  docker: 'KILN_TEST_DOCKER',
} as const satisfies Record<keyof TestEnv, string>;

/** The environment's values; throws when the tests were not started by `npm test`. */
export function testEnv(): TestEnv {
  const missing = Object.values(VARS).filter((name) => !process.env[name]);
  if (missing.length > 0) {
    throw new Error(
      `test environment missing (${missing.join(', ')} unset): run the tests with \`npm test\`, ` +
        'which starts the registry and dockerd (e.g. `npm test -- test/yourdir`), or export the ' +
        'values printed by `scripts/testenv.sh env` after `scripts/testenv.sh up`',
    );
  }
  const env = {} as TestEnv;
  for (const [key, name] of Object.entries(VARS) as [keyof TestEnv, string][]) {
    env[key] = process.env[name]!;
  }
  return env;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** exit code; a signal death is reported as 128 + signal number, like a shell */
  code: number;
}

export interface DockerOptions {
  /** written to the client's stdin (e.g. a Dockerfile for `build -`, a tarball for `load`) */
  input?: string | Buffer;
  cwd?: string;
  /** extra environment; DOCKER_BUILDKIT defaults to 1 (BuildKit is the reference builder) */
  env?: Record<string, string>;
  /** kill the client after this long (default 300 s) */
  timeoutMs?: number;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

/**
 * Run the docker client against the test daemon. Never rejects for a non-zero exit: callers assert
 * on `code` and can show `stderr`. Uses its own DOCKER_CONFIG so a host ~/.docker (credentials,
 * proxies, a default context) cannot change what the tests see.
 */
export function docker(args: string[], opts: DockerOptions = {}): Promise<RunResult> {
  const env = testEnv();
  const config = join(tmpdir(), 'kiln-test-docker-config');
  mkdirSync(config, { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn(env.docker, ['-H', env.dockerHost, ...args], {
      cwd: opts.cwd,
      env: {
        ...process.env,
        DOCKER_BUILDKIT: '1',
        DOCKER_CONFIG: config,
        ...opts.env,
        DOCKER_HOST: env.dockerHost,
      },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 300_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new Error(`docker ${args.join(' ')}: cannot run ${env.docker}: ${e.message}`)));
    child.on('close', (code, signal) => {
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code: code ?? 128 + (signal ? (SIGNALS[signal] ?? 0) : 0),
      });
    });
    // A client that exits before reading stdin (bad flag) must not crash the test with EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

const run = promisify(execFile);
const pending = new Set<string>();

async function remove(dir: string): Promise<void> {
  pending.delete(dir);
  // --one-file-system: a mount a failed test left inside (an overlay, a bind of a host directory)
  // is skipped, not emptied: deleting through it could destroy files outside the temp dir.
  await run('rm', ['-rf', '--one-file-system', '--', dir]).catch((e: Error) => {
    console.warn(`tmpDir: could not remove ${dir}: ${e.message}`);
  });
}

// Directories made outside a test (beforeAll, describe bodies) go when the file's tests are done.
afterAll(async () => {
  await Promise.all([...pending].map(remove));
});

/**
 * A fresh directory under the system temp dir, removed after the current test (or, when made
 * outside a test, after the test file).
 */
export async function tmpDir(prefix = 'kiln-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  pending.add(dir);
  try {
    onTestFinished(() => remove(dir));
  } catch {
    // Not inside a test: the afterAll above removes it.
  }
  return dir;
}
