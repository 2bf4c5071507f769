// The compiled command line (dist/bin/kiln and dist/bin/kiln.js, from `npm run build`) as a user
// runs it: what start-up loads, the certificates the command hands to kiln, help, usage errors and exit codes, and a dry run. One test builds FROM the test
// registry's busybox.
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { KILN, KILN_COMMAND, kiln, REPO } from './helpers.js';
import { makeTestTls } from '../helpers/tls.js';
import { RACY_MS } from '../../src/cache/checksum.js';
import { testEnv } from '../helpers/env.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'kiln-cli-bin-'));
  dirs.push(d);
  return d;
}

/**
 * Runs node with `args` and reports what the process loaded, from Node's own records written at
 * exit: built-in modules (process.moduleLoadList) and packages (CommonJS module cache, by path
 * below node_modules).
 */
function loaded(args: string[]): { stdout: string; stderr: string; status: number | null; builtins: Set<string>; packages: string[] } {
  const hook = path.join(tempDir(), 'loaded.mjs');
  writeFileSync(
    hook,
    [
      "import { createRequire } from 'node:module';",
      'const require = createRequire(import.meta.url);',
      "process.on('exit', () => process.stderr.write('\\nLOADED ' + JSON.stringify({",
      "  builtins: process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length)),",
      "  packages: Object.keys(require('node:module')._cache).filter((k) => k.includes('/node_modules/')).map((k) => k.slice(k.lastIndexOf('/node_modules/') + 14)),",
      '})));',
      '',
    ].join('\n'),
  );
  const r = spawnSync(process.execPath, [`--import=${hook}`, ...args], { encoding: 'utf8', env: { ...process.env, BUILDKIT_PROGRESS: '' } });
  const i = r.stderr.lastIndexOf('\nLOADED ');
  expect(i, r.stderr).toBeGreaterThanOrEqual(0);
  const got = JSON.parse(r.stderr.slice(i + '\nLOADED '.length)) as { builtins: string[]; packages: string[] };
  return { stdout: r.stdout, stderr: r.stderr.slice(0, i), status: r.status, builtins: new Set(got.builtins), packages: got.packages };
}

/** A build of `dockerfile` (with a.txt in its context) on a fresh root, then the same build again, cached: what each loaded. */
async function coldThenWarm(dockerfile: string): Promise<{ cold: ReturnType<typeof loaded>; warm: ReturnType<typeof loaded> }> {
  const ctx = tempDir();
  writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile);
  writeFileSync(path.join(ctx, 'a.txt'), 'a\n');
  // Files changed less than RACY_MS before a build are hashed again by the next one (their stamp
  // could hide a write in the same tick): let them age, so the second build is truly cached.
  await new Promise((r) => setTimeout(r, RACY_MS + 100));
  const root = tempDir();
  const cold = loaded([KILN, '--root', root, 'build', '-q', ctx]);
  expect(cold.status, cold.stderr).toBe(0);
  const warm = loaded([KILN, '--root', root, 'build', '-q', ctx]);
  expect(warm.status, warm.stderr).toBe(0);
  expect(warm.stdout).toBe(cold.stdout); // the same image ID
  return { cold, warm };
}

describe('kiln binary', () => {
  it('--version prints the package version and loads nothing a build needs (no worker threads, HTTP, compression or child processes)', () => {
    const version = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
    // What node loads for an empty script is the baseline; --version must add none of the modules behind a build.
    const baseline = loaded(['-e', '0']).builtins;
    const r = loaded([KILN, '--version']);
    expect(r).toMatchObject({ status: 0, stdout: `kiln version ${version}\n` });
    const heavy = ['worker_threads', 'http', 'https', 'http2', 'tls', 'zlib', 'child_process', 'crypto'];
    expect(heavy.filter((n) => r.builtins.has(n) && !baseline.has(n))).toEqual([]);
    // ...and the check can see them: a build's modules show up in a command that uses them.
    const images = loaded([KILN, '--root', tempDir(), 'images']);
    expect(heavy.filter((n) => images.builtins.has(n) && !baseline.has(n)).length).toBeGreaterThan(0);
  });

  it('a cached build loads no tar library, no xattr binding and no worker threads', async () => {
    const { cold, warm } = await coldThenWarm('FROM scratch\nCOPY a.txt /a.txt\n');
    expect(warm.packages.filter((p) => /^(tar-stream|streamx|@napi-rs\/xattr)\//.test(p))).toEqual([]);
    expect(warm.builtins.has('worker_threads')).toBe(false);
    // The cold build hashed the file in the worker pool: the check sees what a build loads.
    expect(cold.builtins.has('worker_threads')).toBe(true);
  });

  it("resolves a base image's tag with node:http, never loading fetch's undici", async () => {
    // undici costs a warm build about 25 ms to load and holds the process open for tens of
    // milliseconds after the build while its WebAssembly parser compiles (util/http-request.ts).
    const UNDICI = 'internal/deps/undici/undici';
    const probe = loaded(['-e', "fetch('http://127.0.0.1:1/').catch(() => {})"]);
    expect(probe.builtins.has(UNDICI)).toBe(true); // the check sees fetch when it is used
    const { cold, warm } = await coldThenWarm(`FROM ${testEnv().busybox}\nCOPY a.txt /a.txt\n`);
    for (const r of [cold, warm]) {
      expect(r.builtins.has('http')).toBe(true); // the tag went to the registry...
      expect(r.builtins.has(UNDICI)).toBe(false); // ...without fetch
      expect(r.builtins.has('tls')).toBe(false); // ...and, the registry being plain HTTP, without TLS
    }
  });

  it("runs its bundle with V8's code cache: one file per command, kept while V8 accepts it, replaced when it does not", () => {
    const cacheDir = tempDir();
    const run = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
      spawnSync(process.execPath, [KILN, ...args], { encoding: 'utf8', env: { ...process.env, KILN_CODE_CACHE_DIR: cacheDir, ...extra } });
    const file = path.join(cacheDir, `other-${process.version}-${process.arch}.bin`);
    expect(run(['--version'], { KILN_CODE_CACHE: 'off' }).status).toBe(0);
    expect(readdirSync(cacheDir)).toEqual([]); // off: nothing written

    expect(run(['--version']).stdout).toMatch(/^kiln version /);
    const made = statSync(file);
    expect(made.size).toBeGreaterThan(10_000);
    // Accepted: the next run reads it and leaves it as it is.
    expect(run(['--version']).status).toBe(0);
    expect(statSync(file).ino).toBe(made.ino);
    // Rejected (here: not V8's at all; likewise after a rebuild or under another Node): the run
    // compiles afresh, succeeds, and writes a good one in its place.
    writeFileSync(file, 'not a code cache');
    const r = run(['--version']);
    expect(r.stdout).toMatch(/^kiln version /);
    expect(r.stderr).toBe('');
    expect(statSync(file).size).toBeGreaterThan(10_000);
    // A failing run writes none; a build gets its own.
    expect(run(['images', '--no-such-flag'], { KILN_ROOT: tempDir() }).status).not.toBe(0);
    expect(existsSync(path.join(cacheDir, `images-${process.version}-${process.arch}.bin`))).toBe(false);
    const ctx = tempDir();
    writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nENV A=1\n');
    const b = run(['--root', tempDir(), 'build', '-q', ctx]);
    expect(b.status, b.stderr).toBe(0);
    expect(readdirSync(cacheDir).sort()).toEqual([`build-${process.version}-${process.arch}.bin`, `other-${process.version}-${process.arch}.bin`]);
    // A directory others can write is not trusted: a cache there is code anyone could have put.
    chmodSync(cacheDir, 0o777);
    writeFileSync(file, 'planted');
    const planted = run(['--version']);
    expect(planted.stdout).toMatch(/^kiln version /);
    expect(readFileSync(file, 'utf8')).toBe('planted'); // neither used nor replaced
  });

  it('the kiln command hands NODE_EXTRA_CA_CERTS to kiln: not parsed at start, trusted on the first TLS connection', async () => {
    // Node parses the file at start (and warns there when it cannot): through the command it does not.
    const missing = { ...process.env, NODE_EXTRA_CA_CERTS: path.join(tempDir(), 'missing.pem') };
    const direct = spawnSync(process.execPath, [KILN, '--version'], { encoding: 'utf8', env: missing });
    expect(direct.stderr).toMatch(/Ignoring extra certs from/);
    const command = spawnSync(KILN_COMMAND, ['--version'], { encoding: 'utf8', env: missing });
    expect(command.status, command.stderr).toBe(0);
    expect(command.stderr).toBe('');

    // Yet the certificates are trusted: ADD from an https server that only the file's CA vouches
    // for, through the command as npm installs it (a symbolic link to it).
    const dir = tempDir();
    const certs = makeTestTls(dir);
    const server = https.createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (_req, res) => res.end('over tls\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/greeting.txt`;
    const link = path.join(dir, 'kiln');
    symlinkSync(KILN_COMMAND, link);
    const ctx = tempDir();
    writeFileSync(path.join(ctx, 'Dockerfile'), `FROM scratch\nADD ${url} /greeting.txt\n`);
    const build = (extra: NodeJS.ProcessEnv, dest: string) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(link, ['--root', path.join(dir, 'root'), 'build', '--progress', 'plain', '-o', `type=local,dest=${dest}`, ctx], {
          env: { ...process.env, BUILDKIT_PROGRESS: '', NODE_EXTRA_CA_CERTS: '', ...extra },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        child.on('close', (code) => resolve({ code, stderr }));
      });
    try {
      const untrusted = await build({}, path.join(dir, 'out-untrusted'));
      expect(untrusted.code).not.toBe(0);
      expect(untrusted.stderr).toContain(`failed to fetch ${url}: unable to verify the first certificate`);
      const trusted = await build({ NODE_EXTRA_CA_CERTS: certs.ca }, path.join(dir, 'out'));
      expect(trusted.code, trusted.stderr).toBe(0);
      expect(readFileSync(path.join(dir, 'out', 'greeting.txt'), 'utf8')).toBe('over tls\n');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('prints help with exit 0, and usage with exit 1 when no command is given', () => {
    const help = kiln(['build', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: kiln build [OPTIONS] PATH');
    for (const flag of [
      '--file',
      '--tag',
      '--target',
      '--build-arg',
      '--label',
      '--platform',
      '--network',
      '--no-cache',
      '--pull',
      '--output',
      '--load',
      '--push',
      '--iidfile',
      '--metadata-file',
      '--quiet',
      '--progress',
      '--dry-run',
      '--root',
    ]) {
      expect(help.stdout).toContain(flag);
    }
    expect(kiln(['images', '--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('Usage: kiln images') });
    expect(kiln(['--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('images [options]') });
    expect(kiln([])).toMatchObject({ code: 1, stderr: expect.stringContaining('Usage: kiln') });
    expect(kiln(['frobnicate'])).toMatchObject({ code: 1, stderr: expect.stringContaining('unknown command "frobnicate"') });
  });

  it('rejects bad flag values with exit 1, naming the flag and the value', () => {
    const r = kiln(['build', '--network', 'bridge', '.']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `kiln build: invalid argument "bridge" for "--network" flag: network mode not supported (want default, host or none)\nSee 'kiln build --help'.\n`,
    );
    expect(r.stdout).toBe('');
    expect(kiln(['build', '-o', 'type=zip,dest=x', '.'])).toMatchObject({ code: 1, stderr: expect.stringContaining('unknown output type "zip"') });
    expect(kiln(['build', '/nonexistent/context'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('unable to prepare context: path "/nonexistent/context" not found'),
    });
    expect(kiln(['images', '--format', 'yaml'])).toMatchObject({ code: 1, stderr: expect.stringContaining('invalid argument "yaml" for "--format" flag') });
  });

  it('--dry-run prints the step graph on stdout and nothing of progress', () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox AS base\nARG V\nRUN echo $V\nFROM base\nCOPY x /x\n');
    const r = kiln(['build', '--dry-run', '--build-arg', 'V=1', '--target', 'base', dir]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const graph = JSON.parse(r.stdout) as { stages: unknown[]; target: number };
    expect(graph.stages.length).toBeGreaterThanOrEqual(1);

    // -f - reads the Dockerfile from stdin.
    const fromStdin = kiln(['build', '--dry-run', '-f', '-', dir], { input: 'FROM scratch\nENV A=b\n' });
    expect(fromStdin.code).toBe(0);
    expect(fromStdin.stdout).toContain('"A"');
  });

  it('a build with a bad Dockerfile fails with the location, progress on stderr only', () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nFROBNICATE x\n');
    const r = kiln(['build', '--dry-run', dir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/ERROR: .*Dockerfile.*2/);
  });

  it('refuses at once a root it cannot use: on /proc, or when not run as root', () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\n');
    const t0 = Date.now();
    const onProc = kiln(['build', dir], { env: { KILN_ROOT: '/proc/kiln-root' } });
    expect(onProc.code).toBe(1);
    expect(onProc.stderr).toContain('ERROR: kiln root /proc/kiln-root: /proc is on proc, where kiln cannot keep a root');
    expect(Date.now() - t0).toBeLessThan(20_000); // it used to spin in a recursive mkdir forever
    chmodSync(dir, 0o755); // the other user reads the Dockerfile, then is refused the root
    const reachable = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'test', '-r', KILN]);
    expect(reachable.status, `user nobody cannot read ${KILN}: run the tests from a checkout every user can read (not under /root)`).toBe(0);
    const asNobody = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, KILN, 'build', '--root', path.join(dir, 'root'), dir],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(asNobody.status).toBe(1);
    expect(asNobody.stderr).toContain('ERROR: kiln needs root to build here');
    expect(asNobody.stderr).toContain('kiln build --addr');
  });

  it('--check prints the lint findings as buildx does and builds nothing; a rule set to error fails it', () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox AS Builder\nRUN echo hi\nCMD echo a\n');
    const r = kiln(['build', '--check', dir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Check complete, 2 warnings have been found!');
    expect(r.stdout).toContain(
      "WARN: StageNameCasing - https://docs.docker.com/go/dockerfile/rule/stage-name-casing/\nStage name 'Builder' should be lowercase\nDockerfile:1\n",
    );
    expect(r.stdout).toContain('   3 | >>> CMD echo a');
    expect(r.stdout).toContain('WARN: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/');
    writeFileSync(path.join(dir, 'Dockerfile'), '# check=error=true\nFROM busybox AS Builder\n');
    const strict = kiln(['build', '--check', '--progress', 'rawjson', dir]);
    expect(strict.code).toBe(1);
    expect(JSON.parse(strict.stdout)).toEqual({
      warnings: [expect.objectContaining({ rule: 'StageNameCasing', level: 'error', location: expect.objectContaining({ line: 2 }) })],
    });
    writeFileSync(path.join(dir, 'Dockerfile'), 'FROM busybox\nCMD ["true"]\n');
    expect(kiln(['build', '--check', dir]).stdout).toBe('Check complete, no warnings found.\n');
  });
});
