// Named build contexts (--build-context) end to end, through the real `kiln` binary: embedded (its
// own root) and through a real `kiln daemon` (each named directory synced like the main context).
// Directories with their own .dockerignore, docker-image:// pinning, an OCI layout kiln itself
// exported, an https archive from a loopback server with its own CA.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { makeTestTls } from '../helpers/tls.js';
import { killStarted, kilnClient, makeContext, startDaemon, tempDir, type ClientRun, type DaemonProc } from '../helpers/daemon.js';

const cleanup: string[] = [];
afterAll(async () => {
  await killStarted();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
function ctx(files: Record<string, string>): string {
  const d = makeContext(files);
  cleanup.push(d);
  return d;
}
function tmp(prefix: string): string {
  const d = tempDir(prefix);
  cleanup.push(d);
  return d;
}

const tls = makeTestTls(tmp('kiln-tls-'));
/** Every process that downloads (the embedded client, the daemon) trusts the test CA. */
const caEnv = { NODE_EXTRA_CA_CERTS: tls.ca };

/** A loopback https server of fixed files; counts requests per path. */
let archives: https.Server;
let archiveBase = '';
const served: Record<string, Buffer> = {};
beforeAll(async () => {
  archives = https.createServer({ cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) }, (req, res) => {
    const body = served[req.url ?? ''];
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => archives.listen(0, '127.0.0.1', r));
  archiveBase = `https://127.0.0.1:${(archives.address() as AddressInfo).port}`;
  // A gzip tarball with a directory, a file and a symlink, made by tar as a user would.
  const src = ctx({ 'pkg/bin/tool': '#!/bin/sh\necho tool\n', 'pkg/README': 'from the archive\n' });
  fs.chmodSync(path.join(src, 'pkg', 'bin', 'tool'), 0o755);
  fs.symlinkSync('bin/tool', path.join(src, 'pkg', 'tool-link'));
  const tarball = path.join(tmp('kiln-archive-'), 'pkg.tar.gz');
  execFileSync('tar', ['-C', src, '-czf', tarball, 'pkg']);
  served['/pkg.tar.gz'] = fs.readFileSync(tarball);
});
afterAll(() => new Promise<void>((r) => archives.close(() => r())));

type Mode = 'embedded' | 'daemon';

describe.each<Mode>(['embedded', 'daemon'])('--build-context (%s)', (mode) => {
  let d: DaemonProc | undefined;
  let where: string[];
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    const config = path.join(tmp('kiln-config-'), 'daemon.json');
    fs.writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
    if (mode === 'daemon') {
      // The daemon downloads https contexts: it is the one that must trust the test CA.
      const saved = process.env.NODE_EXTRA_CA_CERTS;
      process.env.NODE_EXTRA_CA_CERTS = tls.ca;
      try {
        d = await startDaemon();
      } finally {
        if (saved === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
        else process.env.NODE_EXTRA_CA_CERTS = saved;
      }
      cleanup.push(path.dirname(d.socket), d.root);
      where = ['--addr', d.addr];
      env = {};
    } else {
      where = ['--root', tmp('kiln-root-')];
      env = { KILN_CONFIG: config, ...caEnv };
    }
  });
  afterAll(async () => {
    if (d) expect(await d.stop()).toBe(0);
  });

  const build = (args: string[]): Promise<ClientRun> => kilnClient(['build', ...where, '--progress', 'plain', ...args], { env });
  const ok = (r: ClientRun) => {
    expect(r.stderr).not.toMatch(/^ERROR/m);
    expect(r.code).toBe(0);
  };

  it('FROM, COPY --from and RUN --mount=from= a directory, with its own .dockerignore', async () => {
    const main = ctx({
      Dockerfile: [
        'FROM extra AS files',
        'FROM busybox',
        'COPY --from=extra / /copied/',
        'COPY --from=files /sub/s.txt /from-stage.txt',
        'RUN --mount=from=extra,target=/m cat /m/a.txt /m/sub/s.txt > /mounted',
        'COPY main.md /',
      ].join('\n'),
      // The main context's rules are its own: they do not reach the named context.
      '.dockerignore': 'a.txt\n',
      'main.md': 'main\n',
    });
    const extra = ctx({ 'a.txt': 'alpha\n', 'notes.md': 'notes\n', 'secret.txt': 'never\n', 'sub/s.txt': 'sub\n', '.dockerignore': 'secret.txt\n' });
    const out = tmp('kiln-out-');
    const r = await build(['--build-context', `extra=${extra}`, '-o', `type=local,dest=${out}`, main]);
    ok(r);
    expect(fs.readdirSync(path.join(out, 'copied')).sort()).toEqual(['.dockerignore', 'a.txt', 'notes.md', 'sub']);
    expect(fs.readFileSync(path.join(out, 'from-stage.txt'), 'utf8')).toBe('sub\n');
    expect(fs.readFileSync(path.join(out, 'mounted'), 'utf8')).toBe('alpha\nsub\n');
    expect(fs.readFileSync(path.join(out, 'main.md'), 'utf8')).toBe('main\n');

    // Keyed by content: the same files are cached; a changed file runs what reads it again.
    const again = await build(['--build-context', `extra=${extra}`, main]);
    ok(again);
    expect(again.stderr).toMatch(/#\d+ \[stage-1 2\/5\] COPY --from=extra \/ \/copied\/\n#\d+ CACHED/);
    fs.writeFileSync(path.join(extra, 'sub', 's.txt'), 'sub-2\n');
    const changed = await build(['--build-context', `extra=${extra}`, '-o', `type=local,dest=${out}/2`, main]);
    ok(changed);
    expect(changed.stderr).not.toMatch(/COPY --from=extra \/ \/copied\/\n#\d+ CACHED/);
    expect(fs.readFileSync(path.join(out, '2', 'mounted'), 'utf8')).toBe('alpha\nsub-2\n');
    expect(fs.readFileSync(path.join(out, '2', 'from-stage.txt'), 'utf8')).toBe('sub-2\n');
  });

  it("docker-image:// pins an image the Dockerfile names in FROM; a stage of the context's name is replaced", async () => {
    const main = ctx({
      Dockerfile: ['FROM busybox AS deps', 'RUN exit 1', 'FROM alpine:latest', 'COPY --from=deps /x /x', 'RUN echo pinned > /p && cat /x >> /p'].join('\n'),
    });
    const deps = ctx({ x: 'from the directory\n' });
    // The test registry has no alpine: without the pin this build cannot resolve its base.
    const unpinned = await build(['--build-context', `deps=${deps}`, main]);
    expect(unpinned.code).not.toBe(0);
    expect(unpinned.stderr).toMatch(/alpine/);
    const out = tmp('kiln-out-');
    const r = await build([
      '--build-context',
      `alpine=docker-image://${testEnv().busybox}`,
      '--build-context',
      `deps=${deps}`,
      '-o',
      `type=local,dest=${out}`,
      main,
    ]);
    ok(r);
    expect(r.stderr).not.toContain('RUN exit 1');
    expect(fs.readFileSync(path.join(out, 'p'), 'utf8')).toBe('pinned\nfrom the directory\n');
  });

  it('oci-layout:// takes an image (config too) from a layout kiln exported, by tag or by digest', async () => {
    const work = tmp('kiln-layout-');
    const baseCtx = ctx({ Dockerfile: 'FROM busybox\nENV FROM_LAYOUT=yes\nRUN echo layered > /layered\n' });
    ok(await build(['-o', `type=oci,dest=${work}/base.tar`, '-t', 'layout-base:v1', baseCtx]));
    const layout = path.join(work, 'layout');
    fs.mkdirSync(layout);
    execFileSync('tar', ['-C', layout, '-xf', path.join(work, 'base.tar')]);
    const index = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    const digest = index.manifests[0]!.digest;

    const main = ctx({ Dockerfile: 'FROM base\nRUN cat /layered > /seen && echo "$FROM_LAYOUT" >> /seen\n' });
    for (const value of [`oci-layout://${layout}`, `oci-layout://${layout}@${digest}`]) {
      const out = tmp('kiln-out-');
      const r = await build(['--build-context', `base=${value}`, '-o', `type=local,dest=${out}`, main]);
      ok(r);
      expect(fs.readFileSync(path.join(out, 'seen'), 'utf8')).toBe('layered\nyes\n');
    }
    const wrong = await build(['--build-context', `base=oci-layout://${layout}:nosuchtag`, main]);
    // One image in the layout: buildx takes it whatever the tag (resolveDigest's single-image rule).
    ok(wrong);
    const missing = await build(['--build-context', `base=oci-layout://${layout}@sha256:${'0'.repeat(64)}`, main]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/--build-context base=oci-layout:\/\/.*has no blob sha256:0{64}/);
  });

  it('an https archive is unpacked as a context of files', async () => {
    const main = ctx({ Dockerfile: 'FROM busybox\nCOPY --from=pkg / /opt/\nRUN /opt/pkg/tool-link > /ran\n' });
    const out = tmp('kiln-out-');
    const r = await build(['--build-context', `pkg=${archiveBase}/pkg.tar.gz`, '-o', `type=local,dest=${out}`, main]);
    ok(r);
    expect(fs.readFileSync(path.join(out, 'opt', 'pkg', 'README'), 'utf8')).toBe('from the archive\n');
    expect(fs.readlinkSync(path.join(out, 'opt', 'pkg', 'tool-link'))).toBe('bin/tool');
    expect(fs.readFileSync(path.join(out, 'ran'), 'utf8')).toBe('tool\n');
    const gone = await build(['--build-context', `pkg=${archiveBase}/missing.tar`, main]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/missing\.tar: HTTP 404/);
    // As in BuildKit, a context no step uses is never loaded: neither fetched nor able to fail.
    const unused = await build(['--build-context', `pkg=${archiveBase}/pkg.tar.gz`, '--build-context', `other=${archiveBase}/missing.tar`, main]);
    expect(unused.stderr).not.toContain('[context other]');
    ok(unused);
  });

  it('a bad value is an error naming the flag, before anything is built', async () => {
    const main = ctx({ Dockerfile: 'FROM busybox\n' });
    const missing = await build(['--build-context', `x=${path.join(main, 'nope')}`, main]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/--build-context x: path ".*nope" not found/);
    const scheme = await build(['--build-context', 'x=ftp://example.com/a.tar', main]);
    expect(scheme.code).toBe(1);
    expect(scheme.stderr).toMatch(/invalid argument "x=ftp:\/\/example.com\/a.tar" for "--build-context" flag: unknown context scheme/);
  });
});

describe('--build-context through a daemon: the named directory is kept between builds', () => {
  it('the second build sends only the changed file of the named context, and only what steps read', async () => {
    const d = await startDaemon();
    cleanup.push(path.dirname(d.socket), d.root);
    try {
      const main = ctx({ Dockerfile: 'FROM busybox\nCOPY --from=lib src/ /lib/\nRUN cat /lib/one.txt\n' });
      const lib = ctx({
        'src/one.txt': 'one\n',
        'src/two.txt': 'two\n',
        'unused/big.bin': 'x'.repeat(100_000),
        'src/skip.tmp': 'no\n',
        '.dockerignore': '*/*.tmp\n',
      });
      const run = () => kilnClient(['build', '--addr', d.addr, '--progress', 'plain', '--build-context', `lib=${lib}`, main]);
      const transfer = (r: ClientRun) => {
        const id = /#(\d+) \[context lib\] load from client/.exec(r.stderr)?.[1];
        expect(id, r.stderr).toBeDefined();
        return new RegExp(`#${id} [\\d.]+ transferring context: (\\d+) files, (\\S+)`).exec(r.stderr)?.slice(1);
      };
      const first = await run();
      expect(first.code, first.stderr).toBe(0);
      // src/ and its two files read by COPY; not unused/ nor the ignored .tmp.
      expect(transfer(first)).toEqual(['2', '8B']);
      const again = await run();
      expect(again.code).toBe(0);
      expect(transfer(again)).toEqual(['0', '0B']);
      fs.writeFileSync(path.join(lib, 'src', 'two.txt'), 'two, changed\n');
      const edited = await run();
      expect(edited.code).toBe(0);
      expect(transfer(edited)).toEqual(['1', '13B']);
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });
});
