// The build service end to end: a real `kiln daemon` process, real `kiln` client processes, builds
// in runc from the test registry's busybox. Run with `npm test -- test/server`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, testEnv } from '../helpers/env.js';
import {
  countingProxy,
  killStarted,
  kilnClient,
  makeContext,
  mountsUnder,
  processesMentioning,
  request,
  spawnClient,
  startDaemon,
  tempDir,
  type DaemonProc,
} from '../helpers/daemon.js';

const cleanup: string[] = [];
afterAll(async () => {
  // A failed test may leave a daemon or client running: end them before their roots go.
  await killStarted();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
function ctx(files: Record<string, string>): string {
  const d = makeContext(files);
  cleanup.push(d);
  return d;
}

/** An embedded kiln's config: the same registry mirror the daemon helper configures. */
function embeddedEnv(): NodeJS.ProcessEnv {
  const dir = tempDir('kiln-embedded-');
  cleanup.push(dir);
  const config = path.join(dir, 'daemon.json');
  fs.writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
  return { KILN_CONFIG: config };
}

/** The lines of a plain-progress log that do not depend on timing or vertex numbering. */
function errorLine(stderr: string): string | undefined {
  return stderr.split('\n').find((l) => l.startsWith('ERROR: '));
}

async function builds(
  d: DaemonProc,
): Promise<{ id: string; state: string; startedAt?: string; completedAt?: string; client: string; cachedSteps: number; totalSteps: number }[]> {
  return (JSON.parse((await request(d.socket, 'GET', '/v1/builds')).body) as { builds: never[] }).builds;
}

describe('kiln daemon: builds as embedded mode does', () => {
  let d: DaemonProc;
  beforeAll(async () => {
    d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
  });

  it('same files, same .dockerignore rules, outputs written on the client side, images listed', async () => {
    const files = {
      Dockerfile: 'FROM busybox\nWORKDIR /app\nCOPY . .\nRUN find . | sort > /listing\nCMD ["cat", "/listing"]\n',
      '.dockerignore': 'secret*\n*.log\n!keep.log\n',
      'a.txt': 'alpha\n',
      'sub/b.txt': 'beta\n',
      'secret.key': 'no\n',
      'x.log': 'no\n',
      'keep.log': 'yes\n',
    };
    const c = ctx(files);
    fs.symlinkSync('sub/b.txt', path.join(c, 'link'));
    const out = tempDir('kiln-out-');
    cleanup.push(out);
    const r = await kilnClient([
      'build',
      '--addr',
      d.addr,
      '--progress',
      'plain',
      '-t',
      'daemon-same:1',
      '-o',
      `type=local,dest=${out}/rootfs`,
      '-o',
      `type=oci,dest=${out}/img.tar`,
      '--iidfile',
      `${out}/iid`,
      c,
    ]);
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/transferring context: \d+ files, [\d.]+k?B/);

    const embeddedRoot = tempDir('kiln-embedded-root-');
    cleanup.push(embeddedRoot);
    const e = await kilnClient(['build', '--root', embeddedRoot, '--progress', 'plain', '-o', `type=local,dest=${out}/embedded`, c], { env: embeddedEnv() });
    expect(e.code).toBe(0);
    const listing = fs.readFileSync(path.join(out, 'rootfs', 'listing'), 'utf8');
    expect(listing).toBe(fs.readFileSync(path.join(out, 'embedded', 'listing'), 'utf8'));
    expect(listing.split('\n')).toEqual(expect.arrayContaining(['./a.txt', './keep.log', './link', './sub/b.txt']));
    expect(listing).not.toMatch(/secret|x\.log/);
    expect(fs.readlinkSync(path.join(out, 'rootfs', 'app', 'link'))).toBe('sub/b.txt');

    // The outputs landed here, not on the daemon's side.
    const iid = fs.readFileSync(path.join(out, 'iid'), 'utf8');
    expect(iid).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(fs.statSync(path.join(out, 'img.tar')).size).toBeGreaterThan(1000);
    // With -o, -t only names the exported image (as buildx); alone, it stores it on the daemon.
    const stored = await kilnClient(['build', '--addr', d.addr, '-q', '-t', 'daemon-same:1', c]);
    expect(stored.code).toBe(0);
    expect(stored.stdout.trim()).toBe(iid);
    const images = await kilnClient(['images', '--addr', d.addr]);
    expect(images.code).toBe(0);
    expect(images.stdout).toMatch(new RegExp(`daemon-same\\s+1\\s+${iid.slice('sha256:'.length, 'sha256:'.length + 12)}`));
    // Nothing is left waiting on the daemon for this build's outputs.
    expect(fs.readdirSync(path.join(d.root, 'daemon', 'outputs')).flatMap((b) => fs.readdirSync(path.join(d.root, 'daemon', 'outputs', b)))).toEqual([]);
  });

  it('sends only what the build can read, and only what changed; a same-size rewrite with its old mtime is caught', async () => {
    const c = ctx({
      Dockerfile: 'FROM busybox\nCOPY src /src\nRUN cat /src/main.txt\n',
      'src/main.txt': 'version-1\n',
      'src/other.txt': 'other\n',
      'unused/big.bin': 'x'.repeat(200_000),
    });
    const first = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', c]);
    expect(first.code).toBe(0);
    // src/ and its two files; the Dockerfile and unused/ are not read by any step.
    expect(first.stderr).toMatch(/transferring context: 2 files, 16B/);

    const again = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', c]);
    expect(again.stderr).toMatch(/transferring context: 0 files, 0B/);
    expect(again.stderr).toMatch(/#\d+ \[2\/3\] COPY src \/src\n#\d+ CACHED/);

    const file = path.join(c, 'src', 'main.txt');
    const before = fs.statSync(file);
    fs.writeFileSync(file, 'version-2\n');
    fs.utimesSync(file, before.atime, before.mtime);
    const edited = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', c]);
    expect(edited.code).toBe(0);
    expect(edited.stderr).toMatch(/transferring context: 1 files, 10B/);
    expect(edited.stderr).toContain('version-2');
  });

  it('after a one-file edit of a 4,000-file context, the upload is under 1% of the first (bytes on the socket)', async () => {
    const files: Record<string, string> = { Dockerfile: 'FROM busybox\nCOPY . /ctx\nRUN find /ctx -type f | wc -l\n' };
    for (let i = 0; i < 4000; i++) files[`src/d${i % 40}/f${i}.txt`] = `${i} `.repeat(200 + (i % 1800));
    const c = ctx(files);
    const proxy = await countingProxy(d.socket);
    try {
      const first = await kilnClient(['build', '--addr', proxy.addr, '--progress', 'plain', c]);
      expect(first.code).toBe(0);
      const full = proxy.sent();
      proxy.reset();
      fs.writeFileSync(path.join(c, 'src', 'd7', 'f7.txt'), 'edited\n');
      const edit = await kilnClient(['build', '--addr', proxy.addr, '--progress', 'plain', c]);
      expect(edit.code).toBe(0);
      expect(edit.stderr).toMatch(/transferring context: 1 files, 7B/);
      const incremental = proxy.sent();
      console.log(`context upload: first ${full} bytes on the socket, after a one-file edit ${incremental} (${((100 * incremental) / full).toFixed(2)}%)`);
      expect(full).toBeGreaterThan(10_000_000);
      expect(incremental / full).toBeLessThan(0.01);
    } finally {
      await proxy.close();
    }
  });

  it('a failed build shows the same error as embedded mode, and the exit code', async () => {
    const c = ctx({ Dockerfile: 'FROM busybox\nRUN echo about to fail && exit 3\n' });
    const remote = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', c]);
    const embedded = await kilnClient(['build', '--root', path.join(tempDir('kiln-r-'), 'root'), '--progress', 'plain', c], { env: embeddedEnv() });
    expect(remote.code).toBe(1);
    expect(embedded.code).toBe(1);
    expect(errorLine(remote.stderr)).toBe(
      'ERROR: Dockerfile:2: RUN echo about to fail && exit 3: process "/bin/sh -c echo about to fail && exit 3" did not complete successfully: exit code: 3',
    );
    expect(errorLine(remote.stderr)).toBe(errorLine(embedded.stderr));
    // rawjson has no error block: the output tail comes with the error, from its own field.
    const raw = await kilnClient(['build', '--addr', d.addr, '--progress', 'rawjson', c]);
    expect(raw.stderr).toContain('--- last lines of output ---\nabout to fail');

    const bad = ctx({ Dockerfile: 'FROM busybox\nFOOBAR x\n' });
    const r1 = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', bad]);
    const r2 = await kilnClient(['build', '--root', path.join(tempDir('kiln-r-'), 'root'), '--progress', 'plain', bad], { env: embeddedEnv() });
    expect(r1.code).toBe(1);
    expect(errorLine(r1.stderr)).toMatch(/^ERROR: Dockerfile:2: unknown instruction: FOOBAR/);
    expect(errorLine(r1.stderr)).toBe(errorLine(r2.stderr));
  });

  it("--load goes into the client's Docker, -o - to the client's stdout, <Dockerfile>.dockerignore wins", async () => {
    const c = ctx({
      'ci/App.Dockerfile': 'FROM busybox\nCOPY . /ctx\nCMD ["ls", "-A", "/ctx"]\n',
      'ci/App.Dockerfile.dockerignore': 'ci\nsecret.txt\n',
      '.dockerignore': 'public.txt\n',
      'public.txt': 'p\n',
      'secret.txt': 's\n',
    });
    const name = `kiln-daemon-load-${process.pid}:1`;
    const env = testEnv();
    const load = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', '-f', path.join(c, 'ci/App.Dockerfile'), '--load', '-t', name, c], {
      env: { DOCKER_HOST: env.dockerHost },
    });
    expect(load.stderr).not.toContain('ERROR');
    expect(load.code).toBe(0);
    const run = await docker(['run', '--rm', '--network', 'none', name]);
    expect(run.code).toBe(0);
    // The Dockerfile's own ignore file won over the context's: public.txt came, secret.txt did not.
    expect(run.stdout.split('\n').filter(Boolean).sort()).toEqual(['.dockerignore', 'public.txt']);
    await docker(['rmi', name]);

    const tar = await kilnClient(['build', '--addr', d.addr, '--progress', 'quiet', '-o', '-', '-f', path.join(c, 'ci/App.Dockerfile'), c]);
    expect(tar.code).toBe(0);
    expect(tar.stdout).toContain('ctx/public.txt');
  });

  it('a tar context from stdin builds, and is not kept afterwards', async () => {
    const c = ctx({ Dockerfile: 'FROM busybox\nCOPY hi.txt /\nRUN cat /hi.txt\n', 'hi.txt': 'hello from a tar\n' });
    const tar = (await import('node:child_process')).execFileSync('tar', ['-C', c, '-cf', '-', '.']);
    const kept = fs.readdirSync(path.join(d.root, 'contexts')).length;
    const r = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', '-'], { input: tar });
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('hello from a tar');
    expect(fs.readdirSync(path.join(d.root, 'contexts')).length).toBe(kept);
  });

  it('logs one line per request and per build; --log-format json makes each a JSON object', async () => {
    expect(d.log()).toMatch(/ request method=POST path=\/v1\/builds status=200 ms=\d+/);
    expect(d.log()).toMatch(/ build build=[0-9a-f]{20} client=\S+ dockerfile=Dockerfile state=completed queuedMs=\d+ durationMs=\d+ steps=\d+ cached=\d+/);
    const j = await startDaemon({ args: ['--log-format', 'json'] });
    cleanup.push(path.dirname(j.socket));
    const r = await kilnClient(['build', '--addr', j.addr, '--progress', 'plain', ctx({ Dockerfile: 'FROM busybox\nRUN false\n' })]);
    expect(r.code).toBe(1);
    expect(await j.stop()).toBe(0);
    const lines = j
      .log()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ level: 'info', msg: 'kiln daemon serving', pid: j.pid });
    expect(lines.filter((l) => l.msg === 'build')).toEqual([
      expect.objectContaining({ state: 'failed', error: expect.stringContaining('Dockerfile:2: RUN false') }),
    ]);
    expect(lines.filter((l) => l.msg === 'request').map((l) => l.path)).toEqual(expect.arrayContaining(['/v1/builds']));
    expect(lines.every((l) => typeof l.time === 'string')).toBe(true);
  });

  it('du shows kept contexts as source.local; prune removes them', async () => {
    const du = await kilnClient(['du', '--addr', d.addr, '--verbose']);
    expect(du.code).toBe(0);
    expect(du.stdout).toContain('source.local');
    const pr = await kilnClient(['prune', '--addr', d.addr, '--force']);
    expect(pr.code).toBe(0);
    expect(fs.readdirSync(path.join(d.root, 'contexts')).filter((n) => !n.startsWith('.'))).toEqual([]);
    const after = await kilnClient(['du', '--addr', d.addr, '--verbose']);
    expect(after.stdout).not.toContain('source.local');
  });
});

describe('kiln daemon: many builds at once', () => {
  it('eight clients, eight different builds: all succeed, and they run side by side', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    try {
      const runs = Array.from({ length: 8 }, (_, i) =>
        kilnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: `FROM busybox\nRUN echo build-${i} && sleep 2\n` })]),
      );
      const results = await Promise.all(runs);
      results.forEach((r, i) => {
        expect(r.stderr).not.toContain('ERROR');
        expect(r.code).toBe(0);
        expect(r.stderr).toContain(`build-${i}`);
      });
      const list = (await builds(d)).filter((b) => b.state === 'completed');
      expect(list).toHaveLength(8);
      // The most builds running at one instant: the RUNs overlapped rather than queued behind a lock.
      const edges = list.flatMap((b) => [
        { t: Date.parse(b.startedAt!), d: 1 },
        { t: Date.parse(b.completedAt!), d: -1 },
      ]);
      edges.sort((a, b) => a.t - b.t || a.d - b.d);
      let now = 0;
      let most = 0;
      for (const e of edges) most = Math.max(most, (now += e.d));
      expect(most).toBeGreaterThanOrEqual(4);
      expect(new Set(list.map((b) => b.client)).size).toBe(8);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('two builds of one checkout at once do not wait for each other (a spare copy of its context)', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    try {
      const c = ctx({ Dockerfile: 'FROM busybox\nARG N\nCOPY a /a\nRUN sleep 2 && echo matrix-$N\n', a: 'x\n' });
      const runs = await Promise.all(['1', '2'].map((n) => kilnClient(['build', '--addr', d.addr, '--progress', 'plain', '--build-arg', `N=${n}`, c])));
      runs.forEach((r, i) => {
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr).toContain(`matrix-${i + 1}`);
      });
      const [a, b] = await builds(d);
      // Overlapping runs: each started before the other completed.
      expect(Date.parse(a!.startedAt!)).toBeLessThan(Date.parse(b!.completedAt!));
      expect(Date.parse(b!.startedAt!)).toBeLessThan(Date.parse(a!.completedAt!));
      expect(fs.readdirSync(path.join(d.root, 'contexts')).sort()).toEqual([
        expect.stringMatching(/^[0-9a-f]{32}$/),
        expect.stringMatching(/^[0-9a-f]{32}\.1$/),
      ]);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('the same step asked by two builds at once runs once', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    try {
      const files = { Dockerfile: `FROM busybox\nCOPY a /a\nRUN sleep 2 && echo ran-${process.pid}-$(cat /a)\n`, a: 'once\n' };
      // Two checkouts of the same content: two contexts, the same keys.
      const [r1, r2] = await Promise.all([ctx(files), ctx(files)].map((c) => kilnClient(['build', '--addr', d.addr, '--progress', 'plain', c])));
      expect([r1.code, r2.code]).toEqual([0, 0]);
      const ran = [r1, r2].filter((r) => r.stderr.includes(`ran-${process.pid}-once`));
      expect(ran).toHaveLength(1);
      // Each of the two steps made by one build and found made by the other: which build wins each
      // is a race (the one that made the COPY need not be first to the RUN), the total is not.
      const list = await builds(d);
      expect(list).toHaveLength(2);
      expect(list.reduce((n, b) => n + b.cachedSteps, 0)).toBe(2);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('one build failing or cancelled does not disturb the others', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    try {
      const ok = kilnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: 'FROM busybox\nRUN sleep 3 && echo survivor\n' })]);
      const failing = kilnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: 'FROM busybox\nRUN sleep 1 && exit 7\n' })]);
      // A marker of this test's own: other test files run builds at the same time.
      const marker = `cancel-me-${process.pid}`;
      const cancelled = spawnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: `FROM busybox\nRUN sleep 60; echo ${marker}\n` })]);
      await waitFor(() => processesMentioning(marker).length > 0, 20_000);
      cancelled.proc.kill('SIGINT');
      const [r1, r2, r3] = await Promise.all([ok, failing, cancelled.done]);
      expect(r2.code).toBe(1);
      expect(r3.code).toBe(130);
      expect(r1.stderr).not.toContain('ERROR');
      expect(r1.code).toBe(0);
      expect(r1.stderr).toContain('survivor');
      const states = (await builds(d)).map((b) => b.state).sort();
      expect(states).toEqual(['cancelled', 'completed', 'failed']);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('kiln daemon: lifecycle', () => {
  it('a client killed mid-build cancels it: no container, mount or session is left', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    try {
      const marker = `sleep-${process.pid}-kill`;
      const c = spawnClient([
        'build',
        '--addr',
        d.addr,
        '--progress',
        'plain',
        ctx({ Dockerfile: `FROM busybox\nRUN sleep 120; echo ${marker}\n`, 'f.txt': 'x' }),
      ]);
      await waitFor(() => processesMentioning(marker).length > 0 || c.proc.exitCode !== null, 30_000);
      c.proc.kill('SIGKILL');
      await c.done;
      await waitFor(() => processesMentioning(marker).length === 0, 5_000);
      await waitFor(() => mountsUnder(d.root).length === 0, 5_000);
      let list = await builds(d);
      for (let i = 0; i < 50 && list[0]?.state === 'running'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        list = await builds(d);
      }
      expect(list[0]?.state).toBe('cancelled');
      const du = JSON.parse((await request(d.socket, 'GET', '/v1/du')).body) as { records: { type: string; inUse: boolean }[] };
      expect(du.records.filter((r) => r.inUse)).toEqual([]);
      // And it still serves.
      const next = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: 'FROM busybox\nRUN echo after-the-kill\n' })]);
      expect(next.code).toBe(0);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });

  it('SIGKILL mid-build, restart on the same root, build: it works and the root is clean; a second daemon on a root refuses', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    const marker = `sleep-${process.pid}-daemon-kill`;
    const c = spawnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: `FROM busybox\nRUN sleep 120; echo ${marker}\n` })]);
    await waitFor(() => processesMentioning(marker).length > 0, 30_000);
    d.proc.kill('SIGKILL');
    await d.exited;
    const r = await c.done;
    expect(r.code).not.toBe(0);

    const again = await startDaemon({ root: d.root, socket: d.socket });
    try {
      // The restart reaped the container and the mounts the killed daemon left.
      expect(processesMentioning(marker)).toEqual([]);
      expect(mountsUnder(d.root)).toEqual([]);
      const second = await startDaemon({ root: d.root }).then(
        (x) => (x.proc.kill('SIGKILL'), 'started'),
        (err: Error) => err.message,
      );
      expect(second).toMatch(new RegExp(`kiln root ${d.root} is in use by another kiln process \\(pid ${again.pid}\\)`));
      const ok = await kilnClient(['build', '--addr', again.addr, '--progress', 'plain', ctx({ Dockerfile: `FROM busybox\nRUN echo ${marker}-retry\n` })]);
      expect(ok.stderr).not.toContain('ERROR');
      expect(ok.code).toBe(0);
    } finally {
      expect(await again.stop()).toBe(0);
    }
    expect(mountsUnder(d.root)).toEqual([]);
  });

  it('SIGTERM lets a running build finish, takes no new work, and exits 0', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    const marker = `term-${process.pid}`;
    const c = spawnClient([
      'build',
      '--addr',
      d.addr,
      '--progress',
      'plain',
      ctx({ Dockerfile: `FROM busybox\nRUN echo ${marker} && sleep 3 && echo finished-${marker}\n` }),
    ]);
    await waitFor(() => processesMentioning(marker).length > 0, 30_000);
    d.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    // No new connections: the socket is closed for new work.
    const late = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: 'FROM busybox\n' })]);
    expect(late.code).toBe(1);
    expect(late.stderr).toMatch(/cannot reach the kiln daemon|shutting down/);
    const r = await c.done;
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`finished-${marker}`);
    expect(await d.exited).toBe(0);
    expect(mountsUnder(d.root)).toEqual([]);
  });

  it('SIGTERM with a build longer than the grace period cancels it and exits cleanly', async () => {
    const d = await startDaemon({ args: ['--shutdown-grace', '1s'] });
    cleanup.push(path.dirname(d.socket));
    const marker = `grace-${process.pid}`;
    const c = spawnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: `FROM busybox\nRUN sleep 120; echo ${marker}\n` })]);
    await waitFor(() => processesMentioning(marker).length > 0, 30_000);
    const t0 = Date.now();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(20_000);
    const r = await c.done;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('ERROR: build cancelled: the kiln daemon is shutting down');
    expect(processesMentioning(marker)).toEqual([]);
    expect(mountsUnder(d.root)).toEqual([]);
  });
});

describe('kiln daemon: limits and the automatic GC', () => {
  it('a build over --build-timeout is cancelled, saying so; gc-keep-storage removes the least recently used kept contexts', async () => {
    const d = await startDaemon({ args: ['--build-timeout', '2s'], config: { 'gc-keep-storage': '1MB' } });
    cleanup.push(path.dirname(d.socket));
    try {
      const slow = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', ctx({ Dockerfile: 'FROM busybox\nRUN sleep 60\n' })]);
      expect(slow.code).toBe(1);
      expect(slow.stderr).toContain("ERROR: build cancelled: it ran longer than the daemon's build-timeout (2 s)");
      // Two contexts of 600 kB each: after the second build, 1MB of cache cannot hold both.
      const first = ctx({ Dockerfile: 'FROM busybox\nCOPY big /big\n', big: 'a'.repeat(600_000) });
      const second = ctx({ Dockerfile: 'FROM busybox\nCOPY big /big\n', big: 'b'.repeat(600_000) });
      for (const c of [first, second]) expect((await kilnClient(['build', '--addr', d.addr, '-q', c])).code).toBe(0);
      const du = JSON.parse((await request(d.socket, 'GET', '/v1/du')).body) as { records: { type: string; lastUsedAt: string }[] };
      const kept = du.records.filter((r) => r.type === 'source.local');
      expect(kept.length).toBeLessThanOrEqual(1);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });
});

describe('kiln daemon: entitlements', () => {
  it('grants network.host to a build that asks only when the daemon allows it', async () => {
    const c = ctx({ Dockerfile: 'FROM busybox\nRUN --network=host echo host-net-granted\n' });
    const strict = await startDaemon();
    cleanup.push(path.dirname(strict.socket));
    try {
      const r = await kilnClient(['build', '--addr', strict.addr, '--progress', 'plain', '--allow', 'network.host', c]);
      expect(r.code).toBe(1);
      expect(errorLine(r.stderr)).toMatch(/^ERROR: granting entitlement network\.host is not allowed by kiln's configuration/);
    } finally {
      expect(await strict.stop()).toBe(0);
    }
    const open = await startDaemon({ args: ['--allow-insecure-entitlement', 'network.host'] });
    cleanup.push(path.dirname(open.socket));
    try {
      const notAsked = await kilnClient(['build', '--addr', open.addr, '--progress', 'plain', c]);
      expect(notAsked.code).toBe(1);
      expect(errorLine(notAsked.stderr)).toMatch(/^ERROR: Dockerfile:2: RUN --network=host needs the network\.host entitlement/);
      const asked = await kilnClient(['build', '--addr', open.addr, '--progress', 'plain', '--allow', 'network.host', c]);
      expect(asked.stderr).not.toContain('ERROR');
      expect(asked.code).toBe(0);
      expect(asked.stderr).toMatch(/#\d+ [\d.]+ host-net-granted/);
    } finally {
      expect(await open.stop()).toBe(0);
    }
  });
});

describe('kiln client: which server', () => {
  it('uses the daemon on the default socket when one answers, embedded mode otherwise; an unreachable --addr fails clearly', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
    try {
      const c = ctx({ Dockerfile: 'FROM busybox\nRUN echo which-server\n' });
      const viaDefault = await kilnClient(['build', '--progress', 'plain', c], { env: { KILN_DEFAULT_SOCKET: d.socket, KILN_ROOT: undefined } });
      expect(viaDefault.code).toBe(0);
      expect((await builds(d)).length).toBe(1);

      const noDaemon = path.join(tempDir('kiln-nodaemon-'), 'none.sock');
      const root = path.join(tempDir('kiln-emb-'), 'root');
      const embedded = await kilnClient(['build', '--progress', 'plain', c], { env: { ...embeddedEnv(), KILN_DEFAULT_SOCKET: noDaemon, KILN_ROOT: root } });
      expect(embedded.code).toBe(0);
      expect(fs.existsSync(path.join(root, 'kiln.lock')) || fs.existsSync(root)).toBe(true);
      expect((await builds(d)).length).toBe(1);

      const unreachable = await kilnClient(['build', '--addr', `unix://${noDaemon}`, c]);
      expect(unreachable.code).toBe(1);
      expect(unreachable.stderr).toContain(`cannot reach the kiln daemon at unix://${noDaemon}: ENOENT`);
      const viaEnv = await kilnClient(['images'], { env: { KILN_HOST: `unix://${noDaemon}` } });
      expect(viaEnv.code).not.toBe(0);
      expect(viaEnv.stderr).toContain('cannot reach the kiln daemon');
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });
});
