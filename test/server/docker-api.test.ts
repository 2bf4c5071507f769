// `kiln daemon --docker-api`: the Docker Engine API subset, judged by the real clients. The Docker
// CLI (Debian's 20.10, classic builder) builds through kiln, lists and saves the image, and the
// saved tarball loads and runs in the test dockerd; dockerode builds, inspects and lists; anything
// else answers Docker's error JSON; a seeded fuzzing loop leaves the daemon serving.
//
// KILN_FUZZ_SEED=<n> reproduces a fuzz run (the seed is printed).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../bench/rng.js';
import { KILN, killStarted, makeContext, ping, request, startDaemon, tempDir, type DaemonProc } from '../helpers/daemon.js';
import { docker, testEnv } from '../helpers/env.js';

const RAND = randomBytes(4).toString('hex');
let d: DaemonProc;
let sock: string;
let dockerConfig: string;

beforeAll(async () => {
  sock = path.join(tempDir('kiln-docker-api-'), 'docker.sock');
  dockerConfig = tempDir('kiln-docker-config-');
  d = await startDaemon({ args: ['--docker-api', `unix://${sock}`] });
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await killStarted();
});

/** The Docker CLI against kiln's Docker API socket, classic builder, private config. */
function kdocker(args: string[], opts: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(testEnv().docker, ['-H', `unix://${sock}`, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, DOCKER_BUILDKIT: '0', DOCKER_CONFIG: dockerConfig, DOCKER_HOST: `unix://${sock}` },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 180_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 128, stdout, stderr }));
  });
}

/** A tar (optionally gzip) of the files given. */
async function tarOf(files: Record<string, string>, gzip = false): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mode: 0o644 }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  const buf = Buffer.concat(chunks);
  return gzip ? gzipSync(buf) : buf;
}

function dockerode(): Docker {
  return new Docker({ socketPath: sock });
}

/** Builds with dockerode and follows the stream to its end, as its users do. */
async function dockerodeBuild(context: Buffer, opts: Record<string, unknown>): Promise<{ err: unknown; output: Record<string, unknown>[] }> {
  const stream = await dockerode().buildImage(context as unknown as NodeJS.ReadableStream, opts);
  return new Promise((resolve) => dockerode().modem.followProgress(stream, (err: unknown, output: Record<string, unknown>[]) => resolve({ err, output })));
}

describe('the Docker CLI through kiln', () => {
  it('answers the handshake as a classic-builder Docker', async () => {
    const r = await request(sock, 'HEAD', '/_ping');
    expect(r.status).toBe(200);
    expect(r.headers['api-version']).toBe('1.41');
    expect(r.headers['builder-version']).toBe('1');
    expect(r.headers.ostype).toBe('linux');
    expect(r.headers['docker-experimental']).toBe('false');
    const v = await request(sock, 'GET', '/v1.41/version');
    expect(JSON.parse(v.body)).toMatchObject({ ApiVersion: '1.41', Os: 'linux' });
    const tooNew = await request(sock, 'GET', '/v1.45/version');
    expect(tooNew.status).toBe(400);
    expect(JSON.parse(tooNew.body).message).toBe('client version 1.45 is too new. Maximum supported API version is 1.41');
    expect((await request(sock, 'GET', '/v1.30/images/json')).status).toBe(200);
    // The socket is the daemon's: root and its group only, as dockerd's.
    expect(fs.statSync(sock).mode & 0o777).toBe(0o660);
  });

  it('builds with docker build -t, lists with docker images, and docker save gives an image a real dockerd loads and runs', async () => {
    const env = testEnv();
    const tag = `kiln-docker-api-${RAND}:v1`;
    const ctx = makeContext({
      Dockerfile: `FROM ${env.busybox}\nARG WHO=nobody\nCOPY msg.txt /msg.txt\nRUN echo built by $WHO\nCMD ["cat", "/msg.txt"]\n`,
      'msg.txt': `hello through the docker api ${RAND}\n`,
    });
    const b = await kdocker(['build', '-t', tag, '--build-arg', 'WHO=kiln', '--label', 'org.example.k=v', '.'], { cwd: ctx });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(b.stdout).toMatch(/Step 1\/\d+ : FROM /);
    expect(b.stdout).toContain('built by kiln');
    expect(b.stdout).toMatch(/Successfully built [0-9a-f]{12}\n/);
    expect(b.stdout).toContain(`Successfully tagged ${tag}\n`);

    const images = await kdocker(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']);
    expect(images.code, images.stderr).toBe(0);
    const line = images.stdout.split('\n').find((l) => l.startsWith(tag + ' '));
    expect(line, images.stdout).toBeDefined();
    const id = line!.split(' ')[1]!;
    expect(b.stdout).toContain(`Successfully built ${id}`);

    const inspect = await kdocker(['image', 'inspect', tag, '--format', '{{json .Config.Labels}}']);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ 'org.example.k': 'v' });

    const out = path.join(tempDir('kiln-docker-save-'), 'image.tar');
    const save = await kdocker(['save', '-o', out, tag]);
    expect(save.code, save.stderr).toBe(0);
    try {
      const load = await docker(['load', '-i', out]);
      expect(load.code, load.stderr).toBe(0);
      expect(load.stdout).toContain(tag);
      const run = await docker(['run', '--rm', '--network', 'none', tag]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toBe(`hello through the docker api ${RAND}\n`);
    } finally {
      await docker(['rmi', '-f', tag]);
    }

    const q = await kdocker(['build', '-q', '-t', tag, '.'], { cwd: ctx });
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout.trim()).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(q.stdout).not.toContain('Step');

    const rmi = await kdocker(['rmi', tag]);
    expect(rmi.code, rmi.stderr).toBe(0);
    expect(rmi.stdout).toContain(`Untagged: ${tag}`);
    const gone = await kdocker(['image', 'inspect', tag]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain(`No such image: ${tag}`);
  }, 240_000);

  it('reports a failed RUN as Docker does, with its exit code', async () => {
    const ctx = makeContext({ Dockerfile: `FROM ${testEnv().busybox}\nRUN echo before the failure && exit 3\n` });
    const b = await kdocker(['build', '-t', `kiln-docker-api-bad-${RAND}`, '.'], { cwd: ctx });
    expect(b.code).toBe(3);
    expect(b.stdout).toContain('before the failure');
    expect(b.stderr).toContain("The command '/bin/sh -c echo before the failure && exit 3' returned a non-zero code: 3");
    // A Dockerfile outside the context: the CLI adds it to the tar on the fly and sends a tar with
    // no end-of-archive blocks (dockerd accepts it, so kiln does too).
    const outside = makeContext({
      'x.Dockerfile': `FROM ${testEnv().busybox} AS first\nRUN echo from the outside > /o\nFROM ${testEnv().busybox}\nCOPY --from=first /o /o\nRUN cat /o\n`,
    });
    const o = await kdocker(['build', '-f', path.join(outside, 'x.Dockerfile'), '-t', `kiln-docker-api-outside-${RAND}`, '.'], { cwd: ctx });
    expect(o.code, o.stderr).toBe(0);
    expect(o.stdout).toContain('from the outside');
    // -f names a Dockerfile the context does not have: refused before any build, the daemon's message shown.
    const missing = await kdocker(['build', '-f', 'Nope.Dockerfile', '.'], { cwd: ctx });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/Nope\.Dockerfile/);
    // The daemon's own refusal reaches the user as Docker's clients show errors: the message, not JSON.
    const bad = await kdocker(['build', '--network', 'container:x', '.'], { cwd: ctx });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/Error response from daemon: network mode "container:x" is not supported/);
  }, 120_000);
});

describe('dockerode through kiln', () => {
  it('buildImage, getImage().inspect() and listImages()', async () => {
    const tag = `kiln-dockerode-${RAND}:latest`;
    const context = await tarOf(
      {
        'build.Dockerfile': `FROM ${testEnv().busybox}\nARG GREETING\nRUN echo "$GREETING" > /greeting\nLABEL from=dockerfile\n`,
      },
      true,
    );
    const { err, output } = await dockerodeBuild(context, {
      t: tag,
      dockerfile: 'build.Dockerfile',
      buildargs: { GREETING: 'hi dockerode' },
      labels: { extra: 'label' },
    });
    expect(err).toBeNull();
    const aux = output.find((o) => o.aux) as { aux: { ID: string } } | undefined;
    expect(aux?.aux.ID, JSON.stringify(output)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(output.some((o) => typeof o.stream === 'string' && (o.stream as string).includes('Successfully tagged'))).toBe(true);

    const info = await dockerode().getImage(tag).inspect();
    expect(info.Id).toBe(aux!.aux.ID);
    expect(info.RepoTags).toEqual([tag]);
    expect(info.Os).toBe('linux');
    expect(info.Config.Labels).toMatchObject({ from: 'dockerfile', extra: 'label' });
    expect(info.RootFS.Type).toBe('layers');
    expect(info.RootFS.Layers!.length).toBeGreaterThanOrEqual(2);
    expect(Number.isNaN(Date.parse(info.Created))).toBe(false);

    const list = await dockerode().listImages();
    const entry = list.find((i) => i.Id === aux!.aux.ID);
    expect(entry?.RepoTags).toContain(tag);
    expect(typeof entry?.Created).toBe('number');
    expect(entry?.Size).toBeGreaterThan(0);
    const filtered = await dockerode().listImages({ filters: JSON.stringify({ reference: [`kiln-dockerode-${RAND}`] }) });
    expect(filtered.map((i) => i.Id)).toEqual([aux!.aux.ID]);

    await expect(dockerode().getImage(`no-such-image-${RAND}`).inspect()).rejects.toMatchObject({
      statusCode: 404,
      json: { message: `No such image: no-such-image-${RAND}` },
    });
  }, 120_000);

  it('reports a failing build as an errorDetail', async () => {
    const context = await tarOf({ Dockerfile: `FROM ${testEnv().busybox}\nRUN exit 7\n` });
    const { output } = await dockerodeBuild(context, { t: `kiln-dockerode-bad-${RAND}` });
    const last = output[output.length - 1] as { error?: string; errorDetail?: { message: string; code?: number } };
    expect(last.errorDetail).toEqual({ message: "The command '/bin/sh -c exit 7' returned a non-zero code: 7", code: 7 });
    expect(last.error).toBe(last.errorDetail!.message);
    expect(output.some((o) => o.aux)).toBe(false);
  }, 120_000);

  it('builds from a Dockerfile with a syntax error: errorDetail names it', async () => {
    const context = await tarOf({ Dockerfile: 'FROM\n' });
    const { output } = await dockerodeBuild(context, {});
    const last = output[output.length - 1] as { errorDetail?: { message: string } };
    expect(last.errorDetail?.message).toMatch(/Dockerfile/);
  }, 60_000);
});

describe('the --docker-api flag', () => {
  it('follows --addr rules: plain TCP only on loopback with --insecure-tcp', () => {
    const dir = tempDir('kiln-docker-api-flag-');
    const run = (args: string[]) =>
      spawnSync(process.execPath, [KILN, 'daemon', '--root', path.join(dir, 'root'), '--addr', `unix://${path.join(dir, 'k.sock')}`, ...args], {
        encoding: 'utf8',
        timeout: 30_000,
      });
    const plain = run(['--docker-api', 'tcp://0.0.0.0:23750']);
    expect(plain.status).toBe(1);
    expect(plain.stderr).toContain('TCP is served only with TLS');
    const remote = run(['--docker-api', 'tcp://10.1.2.3:23750', '--insecure-tcp']);
    expect(remote.status).toBe(1);
    expect(remote.stderr).toContain('loopback addresses only');
    const relative = run(['--docker-api', 'unix://docker.sock']);
    expect(relative.status).toBe(1);
    expect(relative.stderr).toContain('must be absolute');
  });
});

describe('what kiln does not serve', () => {
  it('answers Docker error JSON with 404 or 501, and 400 for bad parameters', async () => {
    const cases: [string, string, number][] = [
      ['GET', '/v1.41/containers/json', 501],
      ['POST', '/v1.41/containers/create', 501],
      ['GET', '/info', 501],
      ['POST', '/v1.41/images/create?fromImage=busybox', 501],
      ['POST', '/images/load', 501],
      ['GET', '/v1.41/no/such/thing', 404],
      ['PATCH', '/v1.41/build', 404],
      ['GET', `/v1.41/images/no-such-${RAND}/json`, 404],
      ['DELETE', `/v1.41/images/no-such-${RAND}`, 404],
      ['GET', `/v1.41/images/get?names=no-such-${RAND}`, 404],
      ['POST', '/v1.41/build?buildargs=%7Bnot-json', 400],
      ['POST', '/v1.41/build?networkmode=container:abc', 400],
      ['POST', '/v1.41/build?t=Invalid%20Tag', 400],
      ['POST', '/v1.41/build?version=2', 501],
      ['POST', '/v1.41/build?remote=https://example.invalid/x.git', 501],
    ];
    for (const [method, p, status] of cases) {
      const r = await request(sock, method, p, method === 'POST' ? await tarOf({ Dockerfile: 'FROM scratch\n' }) : undefined, {
        'content-type': 'application/x-tar',
      });
      expect(r.status, `${method} ${p}: ${r.body}`).toBe(status);
      expect(JSON.parse(r.body), `${method} ${p}`).toEqual({ message: expect.any(String) });
    }
    // A context that is not a tar: a 400 that says so.
    const bad = await request(sock, 'POST', '/build', Buffer.from('this is not a tar archive at all'.repeat(20)), { 'content-type': 'application/x-tar' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).message).toMatch(/context/);
    const prune = await request(sock, 'POST', '/v1.41/build/prune?filters=%7B%22until%22%3A%7B%22240h%22%3Atrue%7D%7D');
    expect(prune.status).toBe(200);
    expect(JSON.parse(prune.body)).toEqual({ CachesDeleted: expect.any(Array), SpaceReclaimed: expect.any(Number) });
  }, 60_000);

  it('keeps serving after a seeded fuzzing loop over the Docker API socket', async () => {
    const seed = Number(process.env.KILN_FUZZ_SEED ?? 0x646f636b);
    console.log(`docker-api fuzz seed: ${seed} (rerun with KILN_FUZZ_SEED=${seed})`);
    const rng = mulberry32(seed);
    const pick = <T>(xs: readonly T[]): T => xs[rng() % xs.length]!;
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
    const paths = [
      '/_ping',
      '/version',
      '/build',
      '/build/prune',
      '/images/json',
      '/images/get',
      '/images/x/json',
      '/images/x/get',
      '/images/x',
      '/containers/json',
      '/info',
      '/session',
      '/',
    ];
    const junk = () => {
      const n = rng() % 40;
      let s = '';
      for (let i = 0; i < n; i++) s += String.fromCharCode(32 + (rng() % 95));
      return s;
    };
    const bodies = async (): Promise<Buffer | undefined> => {
      switch (rng() % 6) {
        case 0:
          return undefined;
        case 1:
          return Buffer.from(junk());
        case 2:
          return Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytesFrom(rng, 200)]);
        case 3:
          return (await tarOf({ Dockerfile: pick(['FROM scratch\n', 'FROM\n', 'RUN x\n', junk()]) })).subarray(0, rng() % 1200);
        case 4:
          return await tarOf({ [pick(['../evil', '/abs', 'a/../../b', 'Dockerfile'])]: 'FROM scratch\n' });
        default:
          return randomBytesFrom(rng, rng() % 3000);
      }
    };
    const seen = new Map<number, number>();
    const notJson: string[] = [];
    const deadline = Date.now() + 10_000;
    let n = 0;
    while (n < 200 && Date.now() < deadline) {
      const batch = [];
      for (let i = 0; i < 4; i++, n++) {
        const method = pick(methods);
        let p = (rng() % 2 ? pick(['/v1.41', '/v1.40', '/v1.24', '/v1.12', `/v${rng() % 3}.${rng() % 60}`]) : '') + pick(paths);
        if (rng() % 3 === 0) p += '/' + encodeURIComponent(junk());
        if (rng() % 2)
          p += `?${pick(['t', 'q', 'nocache', 'buildargs', 'labels', 'filters', 'names', 'platform', 'networkmode', 'dockerfile', 'force'])}=${encodeURIComponent(junk())}`;
        const body = await bodies();
        const headers: Record<string, string> = {};
        if (rng() % 2) headers['content-type'] = pick(['application/x-tar', 'application/json', 'text/plain', 'application/tar', junk() || 'x/y']);
        if (rng() % 5 === 0) headers['content-encoding'] = pick(['gzip', 'br', junk() || 'zz']);
        batch.push(
          fuzzRequest(method, p, body, headers, rng() % 7 === 0).then(({ status, text, type }) => {
            seen.set(status, (seen.get(status) ?? 0) + 1);
            if (status >= 400 && method !== 'HEAD' && (type !== 'application/json' || typeof (JSON.parse(text) as { message?: unknown }).message !== 'string'))
              notJson.push(`${method} ${p}: ${status} ${type} ${text}`);
          }),
        );
      }
      await Promise.all(batch);
    }
    console.log(`docker-api fuzz: ${n} requests, statuses ${JSON.stringify(Object.fromEntries(seen))}`);
    expect(notJson).toEqual([]);
    // Nothing the fuzz sent is a bug in kiln (a 5xx other than 501/503 is logged as an internal error).
    expect(
      d
        .log()
        .split('\n')
        .filter((l) => l.includes('internal error')),
    ).toEqual([]);
    expect(
      seen.get(500) ?? 0,
      d
        .log()
        .split('\n')
        .filter((l) => l.includes('internal error'))
        .join('\n'),
    ).toBe(0);
    expect(await ping(sock), JSON.stringify(await request(sock, 'GET', '/_ping').catch((e: Error) => e.message))).toBe(true);
    expect(await ping(d.socket)).toBe(true);
    expect(d.proc.exitCode).toBeNull();
    // Still builds.
    const { err, output } = await dockerodeBuild(await tarOf({ Dockerfile: `FROM ${testEnv().busybox}\nRUN echo after the fuzz\n` }), {});
    expect(err).toBeNull();
    expect(output.some((o) => o.aux)).toBe(true);
  }, 120_000);
});

function randomBytesFrom(rng: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rng() & 0xff;
  return b;
}

/** One request; `abort` drops the connection halfway. Resolves with the status (0: no answer). */
function fuzzRequest(
  method: string,
  p: string,
  body: Buffer | undefined,
  headers: Record<string, string>,
  abort: boolean,
): Promise<{ status: number; text: string; type?: string }> {
  const none = { status: 0, text: '' };
  return new Promise((resolve) => {
    const req = http.request({ socketPath: sock, method, path: p, headers, timeout: 8000, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, type: res.headers['content-type'] }));
      res.on('error', () => resolve(none));
    });
    req.on('error', () => resolve(none));
    req.on('timeout', () => (req.destroy(), resolve(none)));
    if (abort) {
      req.write(body ?? Buffer.from('x'));
      setTimeout(() => req.destroy(), 5);
      return;
    }
    req.end(body);
  });
}
