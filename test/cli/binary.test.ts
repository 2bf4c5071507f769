// The compiled command line (dist/bin/kiln.js, from `npm run build`) as a user runs it: what
// start-up loads, help, usage errors and exit codes, and a dry run. Needs no registry.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { KILN, kiln, REPO } from './helpers.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'kiln-cli-bin-'));
  dirs.push(d);
  return d;
}

describe('kiln binary', () => {
  it('--version prints the package version and loads nothing a build needs (no worker threads, HTTP, compression or child processes)', () => {
    const version = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
    // Node's own list of the built-in modules a process loaded, written at exit. What node loads
    // for an empty script is the baseline; --version must add none of the modules behind a build.
    const hook = path.join(tempDir(), 'modules.mjs');
    writeFileSync(hook, "process.on('exit', () => process.stderr.write('MODULES ' + JSON.stringify(process.moduleLoadList)));\n");
    const loaded = (args: string[]) => {
      const r = spawnSync(process.execPath, [`--import=${hook}`, ...args], { encoding: 'utf8' });
      const m = /MODULES (.*)$/.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      return { stdout: r.stdout, status: r.status, modules: new Set(JSON.parse(m![1]!) as string[]) };
    };
    const baseline = loaded(['-e', '0']).modules;
    const r = loaded([KILN, '--version']);
    expect(r).toMatchObject({ status: 0, stdout: `kiln version ${version}\n` });
    const heavy = ['worker_threads', 'http', 'https', 'http2', 'tls', 'zlib', 'child_process', 'crypto'].map((n) => `NativeModule ${n}`);
    expect(heavy.filter((n) => r.modules.has(n) && !baseline.has(n))).toEqual([]);
    // ...and the check can see them: a build's modules show up in a command that uses them.
    const images = loaded([KILN, '--root', tempDir(), 'images']);
    expect(heavy.filter((n) => images.modules.has(n) && !baseline.has(n)).length).toBeGreaterThan(0);
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
