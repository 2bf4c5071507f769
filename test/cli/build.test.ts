// Real builds through the compiled binary: busybox from the test registry, RUN in runc, the image
// in a fresh kiln root. Run with `npm test -- test/cli` (it starts the registry).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { testEnv, tmpDir } from '../helpers/env.js';
import { KILN, kiln } from './helpers.js';

let root: string;
let ctx: string;
let slowCtx: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  const dir = await tmpDir('kiln-cli-build-');
  root = path.join(dir, 'root');
  ctx = path.join(dir, 'ctx');
  slowCtx = path.join(dir, 'slow');
  for (const d of [ctx, slowCtx]) spawnSync('mkdir', ['-p', d]);
  writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo hello && echo to-stderr >&2\nLABEL stage=test\n');
  writeFileSync(path.join(slowCtx, 'Dockerfile'), 'FROM busybox\nRUN echo start; sleep 60; echo never\n');
  const config = path.join(dir, 'kiln-config.json');
  // Docker Hub names come from the test registry, as the e2e harness does it.
  writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
  env = { KILN_CONFIG: config };
});

describe('kiln build (real builds)', () => {
  it('plain progress, -t into the store, --iidfile and --metadata-file, then kiln images', () => {
    const dir = path.dirname(root);
    const iid = path.join(dir, 'iid');
    const meta = path.join(dir, 'meta.json');
    const r = kiln(['build', '--root', root, '--progress', 'plain', '-t', 'cli-test:1', '--iidfile', iid, '--metadata-file', meta, ctx], { env });
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    // BuildKit's text blocks: header, timestamped output lines, DONE, blank lines between blocks.
    expect(r.stderr).toMatch(/^#1 \[internal\] load build definition from Dockerfile\n#1 DONE \d+\.\ds\n\n/);
    // stdout and stderr reach kiln through two pipes, so their lines may come in either order.
    expect(r.stderr).toMatch(
      /\n#(\d+) \[2\/2\] RUN echo hello && echo to-stderr >&2\n(?:#\1 \d\.\d{3} hello\n#\1 \d\.\d{3} to-stderr|#\1 \d\.\d{3} to-stderr\n#\1 \d\.\d{3} hello)\n#\1 DONE \d+\.\ds\n/,
    );

    const id = readFileSync(iid, 'utf8');
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    const metadata = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, string>;
    expect(metadata['containerimage.config.digest']).toBe(id);
    expect(metadata['containerimage.digest']).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(metadata['image.name']).toBe('docker.io/library/cli-test:1');

    const images = kiln(['images', '--root', root]);
    expect(images.code).toBe(0);
    expect(images.stdout).toMatch(
      new RegExp(
        `^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE\\ncli-test +1 +${id.slice(7, 19)} +(\\d+ seconds|Less than a second|1 second|About a minute) ago +[\\d.]+[kM]?B\\n$`,
      ),
    );
    expect(kiln(['--root', root, 'images', '-q']).stdout).toBe(id.slice(7, 19) + '\n');
    expect(JSON.parse(kiln(['images', '--root', root, '--format', 'json']).stdout)).toMatchObject({ Repository: 'cli-test', Tag: '1', ID: id.slice(7, 19) });
  });

  it('-q prints only the image ID on stdout and nothing on stderr', () => {
    const r = kiln(['build', '--root', root, '-q', ctx], { env });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
  });

  it('rawjson writes one progress event per line on stderr', () => {
    const r = kiln(['build', '--root', root, '--no-cache', '--progress', 'rawjson', ctx], { env });
    expect(r.code).toBe(0);
    const events = r.stderr
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; data?: string; status?: string });
    expect(events.every((e) => ['vertex', 'log', 'message'].includes(e.type))).toBe(true);
    expect(events.some((e) => e.type === 'log' && e.data?.includes('hello'))).toBe(true);
    expect(events.filter((e) => e.type === 'vertex' && e.status === 'started').length).toBeGreaterThanOrEqual(3);
  });

  it('-o - writes the filesystem as a tarball on stdout', () => {
    const r = spawnSync(process.execPath, [KILN, 'build', '--root', root, '--progress', 'quiet', '-o', '-', ctx], {
      env: { ...process.env, ...env },
      maxBuffer: 64 << 20,
    });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);
    const list = spawnSync('tar', ['-t'], { input: r.stdout, encoding: 'utf8' });
    expect(list.status).toBe(0);
    expect(list.stdout.split('\n').map((l) => l.replace(/^\.\//, ''))).toContain('bin/busybox');
  });

  it('the first Ctrl-C cancels the build: "cancelling", the step CANCELED, exit 130', async () => {
    const child = spawn(process.execPath, [KILN, 'build', '--root', root, '--no-cache', '--progress', 'plain', slowCtx], { env: { ...process.env, ...env } });
    let stderr = '';
    const started = performance.now();
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (b: Buffer) => {
        stderr += b.toString();
        if (/#\d+ \d\.\d{3} start\n/.test(stderr)) resolve();
      });
      child.on('close', () => reject(new Error(`kiln exited before the RUN started:\n${stderr}`)));
    });
    child.kill('SIGINT');
    const code = await exited;
    expect(code).toBe(130);
    expect(stderr).toContain('cancelling');
    expect(stderr).toMatch(/#\d+ CANCELED\n/);
    expect(stderr).not.toMatch(/#\d+ [\d.]+ never/);
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  it('tty progress redraws in a real terminal (tmux) and ends with the summary', async () => {
    const session = `kiln-cli-${process.pid}`;
    const done = path.join(path.dirname(root), 'tty-exit');
    const command = `cd ${JSON.stringify(process.cwd())} && KILN_CONFIG=${JSON.stringify(env.KILN_CONFIG)} ${JSON.stringify(process.execPath)} ${JSON.stringify(KILN)} build --root ${JSON.stringify(root)} --no-cache ${JSON.stringify(ctx)}; echo $? > ${JSON.stringify(done)}; sleep 60`;
    expect(spawnSync('tmux', ['new-session', '-d', '-s', session, '-x', '100', '-y', '30', command]).status).toBe(0);
    try {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline && spawnSync('test', ['-s', done]).status !== 0) await new Promise((r) => setTimeout(r, 200));
      expect(readFileSync(done, 'utf8').trim()).toBe('0');
      const screen = spawnSync('tmux', ['capture-pane', '-p', '-t', session], { encoding: 'utf8' }).stdout;
      const lines = screen.split('\n').filter((l) => l.trim() !== '');
      expect(lines[0]).toMatch(/^\[\+\] Building \d+\.\ds \((\d+)\/\1\) FINISHED$/);
      expect(lines).toContainEqual(expect.stringMatching(/^ => \[2\/2\] RUN echo hello && echo to-stderr >&2 +\d+\.\ds$/));
      // The live view's output tails are gone from the final summary.
      expect(screen).not.toContain('=> => #');
    } finally {
      spawnSync('tmux', ['kill-session', '-t', session]);
    }
  });
});
