// ADD of a git repository through a whole build (embedded server, real RUN in runc): the cache key
// is the resolved commit, so an unchanged ref is a hit, a moved branch a miss, and --checksum or a
// sha in place of the branch name hits the same entry; errors name the Dockerfile line. Also ADD
// --checksum of an http URL through a build.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildFailure } from '../../src/server/api.js';
import type { BuildServer } from '../../src/server/server.js';
import { commitFiles, initRepo, publish, push, startGitDaemon, startHttpBackend, type GitServer } from '../helpers/git-server.js';
import { filesContaining } from '../helpers/secret-bytes.js';
import { build, cachedSteps, kilnRoot, makeContext, ranSteps, server } from './helpers.js';

const cleanup: string[] = [];
let base: string;
let work: string;
let bare: string;
let daemon: GitServer;
let httpd: GitServer & { requests: string[] };
let authd: GitServer;
let tokend: GitServer;
const TOKEN = `ghp-${process.pid}-t0k3n`;
let root: string;
const PASSWORD = `gitpw-${process.pid}-s3cr3t`;
let first: string;
let srv: BuildServer;
let files: http.Server;
let filesUrl: string;

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-gitbuild-'));
  cleanup.push(base);
  const repos = path.join(base, 'repos');
  fs.mkdirSync(repos);
  work = path.join(base, 'work');
  first = initRepo(work, { 'v.txt': 'one\n', 'bin/tool.sh': '#!/bin/sh\necho tool\n' });
  bare = publish(work, repos, 'app.git');
  daemon = await startGitDaemon(repos);
  httpd = await startHttpBackend(repos);
  authd = await startHttpBackend(repos, { user: 'ci', password: PASSWORD });
  tokend = await startHttpBackend(repos, { user: 'x-access-token', password: TOKEN });
  files = http.createServer((_req, res) => res.writeHead(200).end('payload\n'));
  await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
  filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
  root = kilnRoot();
  cleanup.push(root);
  srv = server(root);
});
afterAll(async () => {
  await srv?.close();
  await daemon?.stop();
  await httpd?.stop();
  await authd?.stop();
  await tokend?.stop();
  await new Promise((r) => files?.close(r));
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

function ctxWith(dockerfile: string): string {
  const dir = makeContext({ Dockerfile: dockerfile });
  cleanup.push(dir);
  return dir;
}

async function failure(dockerfile: string): Promise<string> {
  const err = await build(srv, ctxWith(dockerfile)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BuildFailure);
  return (err as BuildFailure).info.message;
}

describe('ADD of a git repository in a build', () => {
  it('is keyed by the resolved commit: unchanged hits, a moved branch misses, --checksum and the sha hit', async () => {
    const df = (src: string) => `FROM busybox\nADD ${src} /app\nRUN cat /app/v.txt && /app/bin/tool.sh && test ! -e /app/.git\n`;
    const onMain = ctxWith(df(`${daemon.url}/app.git#main`));
    const b1 = await build(srv, onMain);
    expect(ranSteps(b1)).toEqual([`[2/3] ADD ${daemon.url}/app.git#main /app`, expect.stringContaining('[3/3] RUN')]);
    expect(b1.logs).toContain('one\ntool\n');
    expect(b1.logs).toContain(`${first}\trefs/heads/main\n`);

    const b2 = await build(srv, onMain);
    expect(ranSteps(b2)).toEqual([]);
    expect(cachedSteps(b2)).toContain(`[2/3] ADD ${daemon.url}/app.git#main /app`);

    // The same commit through another ref, another transport, or with --checksum: the same step.
    const b3 = await build(srv, ctxWith(df(`--checksum=${first.slice(0, 12)} ${httpd.url}/app.git#${first}`)));
    expect(ranSteps(b3)).toEqual([]);

    commitFiles(work, { 'v.txt': 'two\n' }, 'second');
    push(work, bare);
    const b4 = await build(srv, onMain);
    expect(ranSteps(b4)).toHaveLength(2);
    expect(JSON.stringify(b4.events)).toContain(`git ${daemon.url}/app.git#main changed`);
    expect(b4.logs).toContain('two\ntool\n');
  });

  it('one ref named by several steps is resolved once per build (they agree on the commit)', async () => {
    const url = `${httpd.url}/app.git#main`;
    const before = httpd.requests.length;
    const b = await build(srv, ctxWith(`FROM busybox\nADD ${url} /a\nADD ${url} /b\nRUN cmp /a/v.txt /b/v.txt\n`), { noCache: true });
    expect(ranSteps(b)).toHaveLength(3);
    const adverts = httpd.requests.slice(before).filter((r) => r.startsWith('GET /app.git/info/refs')).length;
    // One ls-remote for both keys, then one fetch per checkout.
    expect(adverts).toBe(3);
  });

  it('a ref the repository lacks fails on its line, naming the ref', async () => {
    const msg = await failure(`FROM busybox\nRUN true\nADD ${daemon.url}/app.git#no-such-branch /app\n`);
    expect(msg).toContain(`Dockerfile:3: ADD ${daemon.url}/app.git#no-such-branch /app: repository ${daemon.url}/app.git does not contain ref no-such-branch`);
  });

  it('a --checksum that is not the commit fails on its line with both shas', async () => {
    const wrong = 'ab'.repeat(20);
    const msg = await failure(`FROM busybox\nADD --checksum=${wrong} ${daemon.url}/app.git#${first} /app\n`);
    expect(msg).toContain(`Dockerfile:2:`);
    expect(msg).toContain(`expected checksum to match ${wrong}, got ${first}`);
  });

  it('--keep-git-dir keeps a .git the image can use', async () => {
    const b = await build(
      srv,
      ctxWith(`FROM busybox\nADD --keep-git-dir ${httpd.url}/app.git#${first} /app\nRUN test -f /app/.git/HEAD && cat /app/.git/HEAD\n`),
    );
    expect(b.logs).toContain(first);
  });
});

describe('credentials in a git URL', () => {
  it("authenticate the fetch and reach no byte of the image, the progress or kiln's root", async () => {
    const host = authd.url.slice('http://'.length);
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-gitcred-'));
    cleanup.push(out);
    const b = await build(srv, ctxWith(`FROM busybox\nADD --keep-git-dir http://ci:${PASSWORD}@${host}/app.git#main /app\nRUN cat /app/.git/config\n`), {
      outputs: [{ type: 'oci', names: ['gitcred:1'], dest: path.join(out, 'image.tar') }],
    });
    expect(b.logs).toContain(`url = http://ci:xxxxx@${host}/app.git`);
    expect(JSON.stringify(b.events)).not.toContain(PASSWORD);
    expect(JSON.stringify(b.events)).toContain(`ADD --keep-git-dir http://ci:xxxxx@${host}/app.git#main /app`);
    expect(filesContaining(out, PASSWORD)).toEqual([]);
    expect(filesContaining(out, 'http://ci:xxxxx@')).not.toEqual([]);
    expect(filesContaining(root, PASSWORD)).toEqual([]);
    const msg = await failure(`FROM busybox\nADD http://ci:${PASSWORD}@${host}/app.git#nope /app\n`);
    expect(msg).toContain(`http://ci:xxxxx@${host}/app.git`);
    expect(msg).not.toContain(PASSWORD);
  });
});

describe('GIT_AUTH_TOKEN and GIT_AUTH_HEADER build secrets', () => {
  it('authenticate http(s) remotes, per host or for all, and leave no trace', async () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const df = (url: string) => `FROM busybox\nADD ${url}/app.git#main /app\nRUN cat /app/v.txt\n`;
    // Without the secret: refused by the server, a clear failure (no prompt).
    expect(await failure(df(tokend.url))).toMatch(/Dockerfile:2: .*failed to fetch remote/);
    const withToken = await build(srv, ctxWith(df(tokend.url)), { noCache: true, secrets: { GIT_AUTH_TOKEN: b64(TOKEN) } });
    expect(withToken.logs).toMatch(/one|two/);
    // A per-host header wins over the general token; here the token alone would be refused.
    const host = authd.url.slice('http://'.length);
    const header = `basic ${b64(`ci:${PASSWORD}`)}`;
    const withHeader = await build(srv, ctxWith(df(authd.url) + 'RUN true\n'), {
      noCache: true,
      secrets: { [`GIT_AUTH_HEADER.${host}`]: b64(header), GIT_AUTH_TOKEN: b64(TOKEN) },
    });
    expect(withHeader.logs).toMatch(/one|two/);
    for (const b of [withToken, withHeader]) expect(JSON.stringify(b.events)).not.toContain(TOKEN);
    expect(filesContaining(root, TOKEN)).toEqual([]);
    expect(filesContaining(root, PASSWORD)).toEqual([]);
  });
});

describe('ADD --checksum of an http URL in a build', () => {
  it('passes when the bytes match and fails on its line with both digests when not', async () => {
    const sha = createHash('sha256').update('payload\n').digest('hex');
    const ok = await build(srv, ctxWith(`FROM busybox\nADD --checksum=sha256:${sha} ${filesUrl}/f.txt /f.txt\nRUN cat /f.txt\n`));
    expect(ok.logs).toContain('payload');
    const wrong = `sha256:${'0'.repeat(64)}`;
    const msg = await failure(`FROM busybox\nRUN true\nADD --checksum=${wrong} ${filesUrl}/g.txt /g.txt\n`);
    expect(msg).toContain('Dockerfile:3:');
    expect(msg).toContain(`expected ${wrong}, got sha256:${sha}`);
  });
});
