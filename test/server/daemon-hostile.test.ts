// A real `kiln daemon` under attack: malformed and hostile HTTP, malicious context uploads and tar
// contexts, the limits, TLS and plain TCP, what a RUN step can see of the daemon, and a second daemon
// on the same root. After every attack the daemon must still be there and serve a real build.
//
// The fuzzing loop is seeded: KILN_FUZZ_SEED=<n> reproduces a run (the seed is printed).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 as seededUint32 } from '../../bench/rng.js';
import { KILN, kilnClient, makeContext, minimalBuildRequest, mountsUnder, ping, request, startDaemon, tempDir, type DaemonProc } from '../helpers/daemon.js';
import { testEnv } from '../helpers/env.js';

const RAND = randomBytes(4).toString('hex');
/** Names no test may ever find outside the daemon's root. */
const MARK = `evil-marker-${RAND}`;
const MARK_FILE = `/tmp/${MARK}`;
const MARK_DIR = `/tmp/${MARK}-dir`;

const dirs: string[] = [];
function tmp(prefix: string): string {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(t),
  );
}

/** JSON request to the daemon's socket, with a deadline (a leaked lease would make it wait forever). */
function jsonReq(d: DaemonProc, method: string, p: string, body?: unknown, ms = 10_000) {
  return withTimeout(
    request(d.socket, method, p, body === undefined ? undefined : JSON.stringify(body), body === undefined ? {} : { 'content-type': 'application/json' }),
    ms,
    `${method} ${p}`,
  );
}

function message(body: string): string {
  try {
    const m = (JSON.parse(body) as { message?: unknown }).message;
    return typeof m === 'string' ? m : '';
  } catch {
    return '';
  }
}

interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  data?: string | Buffer;
  linkname?: string;
  mode?: number;
  devmajor?: number;
  devminor?: number;
}

async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const data = e.data === undefined ? undefined : Buffer.from(e.data);
    await new Promise<void>((resolve, reject) => {
      const type = e.type ?? 'file';
      const header = {
        name: e.name,
        type,
        mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
        mtime: new Date(1_700_000_000_000),
        linkname: e.linkname,
        devmajor: e.devmajor,
        devminor: e.devminor,
        size: type === 'file' ? (data?.length ?? 0) : 0,
      };
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, data ?? Buffer.alloc(0), cb);
      else pack.entry(header, cb); // size 0: tar-stream completes it by itself
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const GOOD_DOCKERFILE = 'FROM busybox\nCOPY a /a\nRUN cat /a\n';

/** A real small build through the daemon at `addr`: it must succeed and print the file it copied. */
async function realBuild(addr: string, extra: string[] = []): Promise<void> {
  const word = `served-${randomBytes(4).toString('hex')}`;
  const ctx = makeContext({ Dockerfile: GOOD_DOCKERFILE, a: `${word}\n` });
  dirs.push(ctx);
  const r = await kilnClient(['build', '--addr', addr, ...extra, '--progress', 'plain', ctx], { timeoutMs: 60_000 });
  expect(r.code, `build through ${addr} failed:\n${r.stderr}\n${r.stdout}`).toBe(0);
  expect(r.stdout + r.stderr).toMatch(new RegExp(`^#\\d+ [\\d.]+ ${word}$`, 'm'));
}

/** Everything under `dir` (no links followed) whose name contains `needle`. */
function findNamed(dir: string, needle: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let names: fs.Dirent[];
    try {
      names = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n.name);
      if (n.name.includes(needle)) out.push(p);
      if (n.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

function nothingOutside(d?: DaemonProc): void {
  expect(fs.existsSync(MARK_FILE), MARK_FILE).toBe(false);
  expect(fs.existsSync(MARK_DIR), MARK_DIR).toBe(false);
  expect(fs.readdirSync('/tmp').filter((n) => n.includes(MARK))).toEqual([]);
  expect(fs.existsSync(`/etc/${MARK}`)).toBe(false);
  expect(fs.existsSync(`/${MARK}`)).toBe(false);
  if (d) expect(findNamed(path.dirname(d.root), MARK)).toEqual([]);
}

// ---- raw connections -------------------------------------------------------------------------

interface RawReply {
  statuses: number[];
  text: string;
}

/** Writes `chunks` on a new connection to the socket; resolves with what came back until close or `ms`. */
function raw(
  target: { socket: string } | { port: number },
  chunks: (Buffer | string)[],
  opts: { end?: boolean; destroyAfterMs?: number; ms?: number } = {},
): Promise<RawReply> {
  return new Promise((resolve) => {
    const sock = 'socket' in target ? net.connect(target.socket) : net.connect(target.port, '127.0.0.1');
    const got: Buffer[] = [];
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(got).toString('latin1');
      const statuses = [...text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ statuses, text });
    };
    const timer = setTimeout(finish, opts.ms ?? 3000);
    sock.on('data', (b: Buffer) => got.push(b));
    sock.on('error', () => finish());
    sock.on('close', () => finish());
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (sock.destroyed) break;
        sock.write(c);
        await sleep(1);
      }
      if (opts.destroyAfterMs !== undefined) setTimeout(() => sock.destroy(), opts.destroyAfterMs);
      else if (opts.end !== false) sock.end();
    });
  });
}

/** http.request to the socket that never rejects: a failure is `status: 0`. */
function tryRequest(
  socket: string,
  method: string,
  p: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
  ms = 5000,
  chunked = false,
): Promise<{ status: number; body: string; error?: string }> {
  return new Promise((resolve) => {
    let done = false;
    let status = 0; // counts from the moment the head came, even if the body is cut after it
    const chunks: Buffer[] = [];
    const fin = (error?: string) => {
      if (!done) (done = true), resolve({ status, body: Buffer.concat(chunks).toString('utf8'), error });
    };
    const req = http.request({ socketPath: socket, method, path: p, headers }, (res) => {
      status = res.statusCode ?? 0;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => fin());
      res.on('error', (e) => fin(e.message));
    });
    req.setTimeout(ms, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => fin(e.message));
    if (chunked && body !== undefined) {
      req.write(body);
      req.end();
    } else req.end(body);
  });
}

// ---- a seeded PRNG ----------------------------------------------------------------------------

/** Uniform floats in [0, 1) from the bench's seeded generator (the same sequence everywhere). */
function mulberry32(seed: number): () => number {
  const next = seededUint32(seed);
  return () => next() / 4294967296;
}

// ---- the shared daemon: a unix socket and a TLS TCP port ---------------------------------------

interface Tls {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  clientCert: string;
  clientKey: string;
  otherCert: string;
  otherKey: string;
  otherCa: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeTls(): Tls {
  const dir = tmp('kiln-tls-');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string) =>
    openssl(dir, [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  const leaf = (name: string, caName: string, ext: string) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(dir, ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${caName}.pem`,
      '-CAkey',
      `${caName}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ]);
  };
  ca('ca');
  ca('otherca');
  leaf('server', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  leaf('intruder', 'otherca', 'extendedKeyUsage=clientAuth\n');
  const f = (n: string) => path.join(dir, n);
  return {
    dir,
    ca: f('ca.pem'),
    cert: f('server.pem'),
    key: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    otherCert: f('intruder.pem'),
    otherKey: f('intruder.key'),
    otherCa: f('otherca.pem'),
  };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

let d: DaemonProc;
let tls: Tls;
let tlsPort: number;

beforeAll(async () => {
  testEnv();
  tls = makeTls();
  tlsPort = await freePort();
  d = await startDaemon({
    config: { 'max-request-body-size': '1MB' },
    args: ['--addr', `tcp://127.0.0.1:${tlsPort}`, '--tlscacert', tls.ca, '--tlscert', tls.cert, '--tlskey', tls.key],
  });
  dirs.push(path.dirname(d.socket));
});

afterAll(async () => {
  if (d) {
    const code = await d.stop();
    expect(code, d.log()).toBe(0);
    expect(mountsUnder(d.root)).toEqual([]);
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function daemonAlive(x: DaemonProc): void {
  expect(x.proc.exitCode, `the daemon exited:\n${x.log()}`).toBe(null);
  expect(x.proc.signalCode).toBe(null);
}

// ---- 1. fuzzing --------------------------------------------------------------------------------

describe('malformed requests', () => {
  it('never kill the daemon, never get a 5xx, and get the status each deserves', async () => {
    const seed = Number(process.env.KILN_FUZZ_SEED ?? 0x6b696c6e);
    console.log(`daemon-hostile fuzz seed: ${seed} (rerun with KILN_FUZZ_SEED=${seed})`);
    const badFields: [string, unknown][] = [
      ['context', 5],
      ['context', null],
      ['context', { type: 'dir', path: '/etc' }],
      ['context', { type: 'synced', id: 5, session: [] }],
      ['dockerfile', null],
      ['dockerfile', { name: 'Dockerfile', text: 7 }],
      ['buildArgs', [1, 2]],
      ['buildArgs', { A: 5 }],
      ['labels', { a: {} }],
      ['outputs', [{ type: 'evil' }]],
      ['outputs', 'image'],
      ['outputs', [{ type: 'image', names: [1] }]],
      ['network', 'bridge'],
      ['network', undefined],
      ['noCache', 'yes'],
      ['pull', 1],
      ['dryRun', null],
      ['target', 5],
      ['noCacheFilter', [null]],
      ['cacheFrom', [{ type: 'local', src: '/' }]],
      ['cacheTo', [{ type: 'local', dest: MARK_DIR, mode: 'max' }]],
      ['cacheFrom', 'x'],
      ['cacheTo', [{ type: 'registry' }]],
      // Named contexts never name the daemon's host (a directory, a layout) or a file:// URL.
      ['namedContexts', 'x'],
      ['namedContexts', { x: { type: 'dir', path: '/etc' } }],
      ['namedContexts', { x: { type: 'oci-layout', layout: { type: 'dir', path: '/var/lib' }, tag: 'latest' } }],
      ['namedContexts', { x: { type: 'url', url: 'file:///etc/shadow' } }],
      ['namedContexts', { x: { type: 'synced', id: 1 } }],
      ['outputs', [{ type: 'image', names: [], push: false, compressionLevel: 'max' }]],
      ['outputs', [{ type: 'image', names: [], push: false, ociMediaTypes: 'no' }]],
      ['outputs', [{ type: 'image', names: [], push: false, annotations: [{ type: 'layer', key: 'k', value: 'v' }] }]],
      ['attest', { provenance: { mode: 'everything', version: 'v1' } }],
      ['attest', 'provenance'],
    ];
    /** The generators of request i: its own PRNG, so a seed reproduces every request whatever the interleaving. */
    const makeGen = (rnd: () => number) => {
      const int = (n: number) => Math.floor(rnd() * n);
      const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
      const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
      const ascii = (n: number) => Array.from({ length: n }, () => String.fromCharCode(33 + int(94))).join('');

      const validBuild = () =>
        minimalBuildRequest({
          context: { type: 'synced', id: `fz${int(1e6)}`, session: `nosuch${int(1e6)}` },
          dockerfile: { name: 'Dockerfile', text: 'FROM busybox\n' },
        });
      const unknown = () =>
        pick([
          () => ({ method: pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']), path: `/nope/${encodeURIComponent(ascii(1 + int(20)))}` }),
          () => ({ method: pick(['GET', 'POST', 'DELETE']), path: `/v2/builds/${int(1000)}` }),
          () => ({ method: 'PATCH', path: '/v1/builds' }),
          () => ({ method: 'PUT', path: '/_ping' }),
          () => ({ method: 'GET', path: '/v1/prune' }),
          () => ({ method: 'DELETE', path: '/v1/images' }),
          () => ({ method: 'GET', path: `/v1/contexts/fz${int(1e6)}/sessions` }),
          () => ({ method: 'POST', path: `/v1/builds/${'x'.repeat(300)}/cancel` }),
          () => ({ method: 'OPTIONS', path: '/v1/builds' }),
        ])();
      const jsonPosts = () => pick([`/v1/builds`, `/v1/contexts/fz${int(1e6)}/sessions`, '/v1/prune']);
      const garbageJson = () =>
        pick([
          () => '{',
          () => '{"entries": [',
          () => JSON.stringify(validBuild()).slice(0, 1 + int(150)),
          () => bytes(1 + int(200)).toString('latin1'),
          () => '{"a":1}}',
          () => '\u0000\u0001',
          () => '['.repeat(5000),
          () => '{"__proto__": {"polluted": true}, "constructor": {"prototype": {"x": 1}}}',
          () => '',
        ])();
      return { rnd, int, pick, bytes, ascii, validBuild, unknown, jsonPosts, garbageJson };
    };
    type Gen = ReturnType<typeof makeGen>;

    let got413 = 0;
    type Outcome = { what: string; statuses: number[]; expect?: (s: number[]) => string | undefined };
    const cases: ((g: Gen) => Promise<Outcome>)[] = [
      // unknown paths and methods: 404 JSON {message}
      async (g) => {
        const { unknown } = g;
        const u = unknown();
        const r = await tryRequest(d.socket, u.method, u.path);
        return {
          what: `${u.method} ${u.path.slice(0, 60)}`,
          statuses: r.status ? [r.status] : [],
          // 414: a path parameter longer than any id (fastify's maxParamLength)
          expect: () =>
            r.status !== 404 && !(r.status === 414 && u.path.length > 200)
              ? `status ${r.status}, want 404 (${r.error ?? r.body.slice(0, 120)})`
              : message(r.body) === ''
                ? `no JSON message: ${r.body.slice(0, 120)}`
                : undefined,
        };
      },
      // bad JSON
      async (g) => {
        const { jsonPosts, garbageJson } = g;
        const p = jsonPosts();
        const body = garbageJson();
        const r = await tryRequest(d.socket, 'POST', p, body, { 'content-type': 'application/json' });
        return {
          what: `POST ${p} bad JSON ${JSON.stringify(body.slice(0, 40))}`,
          statuses: r.status ? [r.status] : [],
          expect: () => (r.status >= 400 && r.status < 500 ? undefined : `status ${r.status}, want 4xx (${r.error ?? r.body.slice(0, 120)})`),
        };
      },
      // wrong content types (a tar body where JSON belongs, text, none, nonsense)
      async (g) => {
        const { pick, bytes, ascii, validBuild, jsonPosts } = g;
        const p = jsonPosts();
        const ct = pick([
          'text/plain',
          'application/xml',
          'multipart/form-data; boundary=x',
          'application/x-tar',
          'application/octet-stream',
          'application/x-ndjson',
          ascii(10),
          '',
        ]);
        const body = pick([JSON.stringify(validBuild()), '{"entries":[]}', '{"all":true}', bytes(64).toString('latin1')]);
        const r = await tryRequest(d.socket, 'POST', p, body, ct ? { 'content-type': ct } : {});
        return {
          what: `POST ${p} content-type ${JSON.stringify(ct)}`,
          statuses: r.status ? [r.status] : [],
          expect: () => (r.status >= 400 && r.status < 500 ? undefined : `status ${r.status}, want 4xx (${r.error ?? r.body.slice(0, 120)})`),
        };
      },
      // a build request with one invalid field: 400
      async (g) => {
        const { pick, validBuild } = g;
        const [k, v] = pick(badFields);
        const b: Record<string, unknown> = validBuild();
        if (v === undefined) delete b[k];
        else b[k] = v;
        const r = await tryRequest(d.socket, 'POST', '/v1/builds', JSON.stringify(b), { 'content-type': 'application/json' });
        return {
          what: `build with ${k}=${JSON.stringify(v)}`,
          statuses: r.status ? [r.status] : [],
          expect: () => (r.status === 400 && message(r.body) ? undefined : `status ${r.status} ${r.body.slice(0, 160)}, want 400 with a message`),
        };
      },
      // a well-formed build of a session that does not exist: 404
      async (g) => {
        const { validBuild } = g;
        const r = await tryRequest(d.socket, 'POST', '/v1/builds', JSON.stringify(validBuild()), { 'content-type': 'application/json' });
        return {
          what: 'build of a session that does not exist',
          statuses: r.status ? [r.status] : [],
          expect: () => (r.status === 404 && /no upload session/.test(message(r.body)) ? undefined : `status ${r.status} ${r.body.slice(0, 160)}, want 404`),
        };
      },
      // upload to / drop of a session that does not exist, ids that are not ids
      async (g) => {
        const { int, pick, bytes } = g;
        const id = pick([`fz${int(1e6)}`, '..', '%2e%2e%2f%2e%2e', encodeURIComponent('../../etc'), 'a'.repeat(150)]);
        const m = pick(['PUT', 'DELETE', 'GET']);
        const r = await tryRequest(
          d.socket,
          m,
          `/v1/contexts/${id}/sessions/nosuch${int(1e6)}`,
          m === 'PUT' ? bytes(1024) : undefined,
          m === 'PUT' ? { 'content-type': 'application/x-tar' } : {},
        );
        return {
          what: `${m} session of ${id}`,
          statuses: r.status ? [r.status] : [],
          expect: () => (r.status >= 200 && r.status < 500 ? undefined : `status ${r.status}`),
        };
      },
      // builds, outputs, cancel of ids that do not exist
      async (g) => {
        const { int, pick, ascii } = g;
        const id = pick([ascii(20).replace(/[/?#%]/g, 'x'), '0'.repeat(20), '__proto__', 'constructor', encodeURIComponent('../../../etc/passwd')]);
        const p = pick([
          `/v1/builds/${id}`,
          `/v1/builds/${id}/outputs/${int(3)}`,
          `/v1/builds/${id}/outputs/..%2F..%2F..%2Fetc%2Fpasswd`,
          `/v1/builds/${id}/cancel`,
        ]);
        const r = await tryRequest(d.socket, p.endsWith('/cancel') ? 'POST' : 'GET', p.replace(/ /g, '%20'));
        return {
          what: `GET/POST ${p}`,
          statuses: r.status ? [r.status] : [],
          expect: () => (r.status === 404 || r.status === 400 ? undefined : `status ${r.status} ${r.body.slice(0, 100)}, want 404`),
        };
      },
      // headers over 16 KiB: 431
      async (g) => {
        const { int, pick } = g;
        const big = pick([`X-Big: ${'a'.repeat(17_000 + int(20_000))}\r\n`, Array.from({ length: 600 }, (_, i) => `X-H${i}: ${'b'.repeat(30)}\r\n`).join('')]);
        // One write: the daemon answers and closes as soon as it has read 16 KiB, and a write still
        // going then would fail (EPIPE) before the answer is read.
        const r = await raw({ socket: d.socket }, [`GET /_ping HTTP/1.1\r\nHost: kiln\r\n${big}\r\n`]);
        return { what: 'headers over 16 KiB', statuses: r.statuses, expect: (s) => (s[0] === 431 ? undefined : `statuses ${JSON.stringify(s)}, want 431`) };
      },
      // a body over max-request-body-size (1MB): 413
      async (g) => {
        const { rnd, int, pick } = g;
        const n = 1_100_000 + int(500_000);
        const chunked = rnd() < 0.5;
        const p = pick(['/v1/builds', `/v1/contexts/fz${int(1e6)}/sessions`]);
        const r = await tryRequest(d.socket, 'POST', p, `"${'x'.repeat(n)}"`, { 'content-type': 'application/json' }, 5000, chunked);
        // The daemon may answer and close before the whole body is written; the client can then see
        // EPIPE before the answer: no reply is allowed here, but every reply must be 413, and the
        // count of 413s is checked at the end.
        if (r.status === 413) got413++;
        return {
          what: `body of ${n} bytes (${chunked ? 'chunked' : 'content-length'}) to ${p}`,
          statuses: r.status ? [r.status] : [],
          expect: (s) => (s.length === 0 || s[0] === 413 ? undefined : `statuses ${JSON.stringify(s)}, want 413`),
        };
      },
      // truncated bodies: the connection ends (or is cut) before Content-Length bytes came
      async (g) => {
        const { rnd, int, pick, validBuild } = g;
        const p = pick(['/v1/builds', `/v1/contexts/fz${int(1e6)}/sessions`, `/v1/contexts/fz${int(1e6)}/sessions/nosuch`]);
        const body = JSON.stringify(validBuild());
        const cut = int(body.length);
        const r = await raw(
          { socket: d.socket },
          [
            `${p.includes('nosuch') ? 'PUT' : 'POST'} ${p} HTTP/1.1\r\nHost: kiln\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 100}\r\n\r\n`,
            body.slice(0, cut),
          ],
          rnd() < 0.5 ? { end: true, ms: 2000 } : { destroyAfterMs: int(50), ms: 2000 },
        );
        return { what: `truncated body to ${p}`, statuses: r.statuses };
      },
      // random bytes as the request line
      async (g) => {
        const { int, pick, bytes, ascii } = g;
        const line = pick([
          () => bytes(1 + int(100)),
          () => Buffer.from(`${ascii(3 + int(10))} ${ascii(int(30))} HTTP/${int(3)}.${int(3)}`),
          () => Buffer.from(`GET /${ascii(5)} HTTX/1.1`),
          () => Buffer.from('GET /_ping HTTP/1.1 extra'),
        ]);
        const r = await raw({ socket: d.socket }, [line(), '\r\nHost: kiln\r\n\r\n'], { ms: 2000 });
        return { what: 'random request line', statuses: r.statuses };
      },
      // malformed chunked encoding, bad header lines, smuggling-shaped requests
      async (g) => {
        const { pick } = g;
        const v = pick([
          'POST /v1/builds HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
          'POST /v1/builds HTTP/1.1\r\nHost: k\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}',
          'POST /v1/builds HTTP/1.1\r\nHost: k\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
          'GET /_ping HTTP/1.1\r\nHost: k\r\nBad Header Line\r\n\r\n',
          'GET /_ping HTTP/1.1\r\nHost: k\r\nX: a\u0000b\r\n\r\n',
          'GET /v1/builds/%zz HTTP/1.1\r\nHost: k\r\n\r\n',
          'GET /%E0%A4%A HTTP/1.1\r\nHost: k\r\n\r\n',
          'POST /v1/builds HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n',
          'GET /_ping HTTP/1.1\r\nHost: k\r\n\r\nGET /nope HTTP/1.1\r\nHost: k\r\n\r\nPOST /v1/builds HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{',
        ]);
        const r = await raw({ socket: d.socket }, [v], { ms: 2000 });
        return { what: `malformed framing ${JSON.stringify(v.slice(0, 50))}`, statuses: r.statuses };
      },
      // a real session, then the connection closed half way through its upload
      async (g) => {
        const { int } = g;
        const id = `fzup${int(1e9)}`;
        const size = 50_000 + int(100_000);
        const plan = await tryRequest(
          d.socket,
          'POST',
          `/v1/contexts/${id}/sessions`,
          JSON.stringify({ entries: [{ path: 'a', type: 'file', mode: 0o644, size, mtimeMs: 1 }] }),
          { 'content-type': 'application/json' },
        );
        if (plan.status !== 201)
          return { what: 'plan for a cut upload', statuses: plan.status ? [plan.status] : [], expect: () => `plan: ${plan.status} ${plan.body}` };
        const session = (JSON.parse(plan.body) as { session: string }).session;
        const whole = await makeTar([{ name: 'a', data: Buffer.alloc(size, 7) }]);
        const cut = whole.subarray(0, int(whole.length - 1));
        const r = await raw(
          { socket: d.socket },
          [`PUT /v1/contexts/${id}/sessions/${session} HTTP/1.1\r\nHost: k\r\nContent-Type: application/x-tar\r\nContent-Length: ${whole.length}\r\n\r\n`, cut],
          { destroyAfterMs: int(30), ms: 2000 },
        );
        return { what: `upload cut at ${cut.length}/${whole.length}`, statuses: r.statuses };
      },
    ];

    const failures: string[] = [];
    const seen = new Map<string, number>();
    const deadline = Date.now() + 20_000;
    let n = 0;
    const worker = async () => {
      while (n < 400 && Date.now() < deadline) {
        const i = n++;
        const g = makeGen(mulberry32((seed + Math.imul(i + 1, 0x9e3779b9)) >>> 0));
        const which = g.int(cases.length);
        const o = await cases[which]!(g);
        const key = `case ${which}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        for (const s of o.statuses) if (s >= 500) failures.push(`#${i} ${o.what}: status ${s}`);
        const bad = o.expect?.(o.statuses);
        if (bad) failures.push(`#${i} ${o.what}: ${bad}`);
        daemonAlive(d);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    console.log(`daemon-hostile fuzz: ${n} requests, ${[...seen].map(([k, v]) => `${k}: ${v}`).join(', ')}`);
    expect(failures, `seed ${seed}`).toEqual([]);
    expect(seen.size).toBe(cases.length); // every kind was tried
    expect(got413, 'no body over the limit got its 413').toBeGreaterThan(0);
    daemonAlive(d);
    expect(await ping(d.socket)).toBe(true);
    expect(d.log()).not.toMatch(/internal error/);
    await realBuild(d.addr);
  });

  it('POST /v1/prune with a body that is not a JSON object prunes nothing', async () => {
    for (const [body, ct] of [
      ['null', 'application/json'],
      ['"all"', 'application/json'],
      ['[1]', 'application/json'],
      ['garbage', 'application/x-tar'],
      ['garbage', 'application/octet-stream'],
    ] as const) {
      const r = await tryRequest(d.socket, 'POST', '/v1/prune', body, { 'content-type': ct });
      expect(r.status, `${ct} ${body}: ${r.body}`).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    }
  });
});

// ---- 2. malicious uploads ----------------------------------------------------------------------

describe('malicious context uploads', () => {
  const id = `hostile-${RAND}`;
  const entries = [
    { path: 'a', type: 'file', mode: 0o644, size: 6, mtimeMs: 1_700_000_000_000, stamp: 's0' },
    { path: 'd', type: 'dir', mode: 0o755, size: 0, mtimeMs: 1_700_000_000_000 },
  ];

  async function plan(): Promise<string> {
    // A new stamp: the kept copy never has this version of a, so the plan always asks for it.
    entries[0]!.stamp = randomBytes(6).toString('hex');
    const r = await jsonReq(d, 'POST', `/v1/contexts/${id}/sessions`, { entries });
    expect(r.status, r.body).toBe(201);
    const p = JSON.parse(r.body) as { session: string; wanted: string[] };
    expect(p.wanted).toEqual(['a']);
    return p.session;
  }

  function put(session: string, body: Buffer, ctxId = id) {
    return withTimeout(request(d.socket, 'PUT', `/v1/contexts/${ctxId}/sessions/${session}`, body, { 'content-type': 'application/x-tar' }), 10_000, 'PUT');
  }

  it('refuses hostile tars naming the entry, writes nothing outside, and keeps serving', async () => {
    const passwd = fs.statSync('/etc/passwd');
    const good = await makeTar([{ name: 'a', data: 'hello\n' }]);
    const attacks: { what: string; tar: Buffer; names?: string }[] = [
      {
        what: '../ traversal',
        tar: await makeTar([
          { name: `../../../../../../tmp/${MARK}`, data: 'hello\n' },
          { name: 'a', data: 'hello\n' },
        ]),
        names: MARK,
      },
      {
        what: 'absolute name',
        tar: await makeTar([
          { name: MARK_FILE, data: 'hello\n' },
          { name: 'a', data: 'hello\n' },
        ]),
        names: MARK,
      },
      {
        what: 'an entry not in the plan',
        tar: await makeTar([
          { name: 'a', data: 'hello\n' },
          { name: 'notplanned', data: 'hello\n' },
        ]),
        names: 'notplanned',
      },
      {
        what: 'a directory entry',
        tar: await makeTar([
          { name: 'd', type: 'directory' },
          { name: 'a', data: 'hello\n' },
        ]),
        names: '"d"',
      },
      {
        what: 'symlink then a file through it',
        tar: await makeTar([
          { name: 'd/s', type: 'symlink', linkname: MARK_DIR },
          { name: 'd/s/x', data: 'hello\n' },
          { name: 'a', data: 'hello\n' },
        ]),
        names: 'd/s',
      },
      { what: 'symlink named as the planned file', tar: await makeTar([{ name: 'a', type: 'symlink', linkname: MARK_FILE }]), names: '"a"' },
      { what: 'hard link to /etc/passwd', tar: await makeTar([{ name: 'a', type: 'link', linkname: '/etc/passwd' }]), names: '"a"' },
      {
        what: 'hard link with ..',
        tar: await makeTar([
          { name: 'hl', type: 'link', linkname: '../../../../../../etc/passwd' },
          { name: 'a', data: 'hello\n' },
        ]),
        names: 'hl',
      },
      {
        what: 'char device',
        tar: await makeTar([
          { name: 'cdev', type: 'character-device', devmajor: 1, devminor: 3 },
          { name: 'a', data: 'hello\n' },
        ]),
        names: 'cdev',
      },
      { what: 'fifo', tar: await makeTar([{ name: 'a', type: 'fifo' }]), names: '"a"' },
      {
        what: 'the planned file twice',
        tar: await makeTar([
          { name: 'a', data: 'hello\n' },
          { name: 'a', data: 'hello\n' },
        ]),
        names: '"a"',
      },
      { what: 'the planned file with another size', tar: await makeTar([{ name: 'a', data: 'hello, much longer than planned\n' }]), names: '"a"' },
      { what: 'truncated tar', tar: good.subarray(0, 600) },
      { what: 'garbage', tar: randomBytes(4096) },
      { what: 'empty body', tar: Buffer.alloc(0) },
      { what: 'only the end-of-archive blocks', tar: Buffer.alloc(1024) },
    ];
    for (const a of attacks) {
      const session = await plan();
      const r = await put(session, a.tar);
      expect(r.status, `${a.what}: ${r.body}`).toBeGreaterThanOrEqual(400);
      expect(r.status, `${a.what}: ${r.body}`).toBeLessThan(500);
      const msg = message(r.body);
      expect(msg, `${a.what}: ${r.body}`).not.toBe('');
      if (a.names) expect(msg, a.what).toContain(a.names);
      // The failed upload ended its session, and released the context for the next one.
      const again = await put(session, good);
      expect(again.status, `${a.what}: the session must be over: ${again.body}`).toBe(404);
      nothingOutside(d);
    }
    const after = fs.statSync('/etc/passwd');
    expect([after.nlink, after.size, after.mtimeMs]).toEqual([passwd.nlink, passwd.size, passwd.mtimeMs]);
    expect(findNamed(path.dirname(d.root), MARK)).toEqual([]);

    // The good upload still works on the same context; its session takes one upload only, and
    // belongs to its context.
    const session = await plan();
    expect((await put(session, good, `other-${RAND}`)).status).toBe(404);
    const ok = await put(session, good);
    expect(ok.status, ok.body).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ files: 1, bytes: 6 });
    const twice = await put(session, good);
    expect(twice.status, twice.body).toBe(409);
    expect((await jsonReq(d, 'DELETE', `/v1/contexts/${id}/sessions/${session}`)).status).toBe(204);
    daemonAlive(d);
    await realBuild(d.addr);
  });

  it('sends its refusal even when it stops reading half way through a big upload', async () => {
    // Refused at the first entry while megabytes are still coming: the client must get the 400
    // naming the entry, not a connection reset.
    const session = await plan();
    const big = await makeTar([
      { name: `../${MARK}`, data: 'x' },
      { name: 'pad', data: Buffer.alloc(8 * 1024 * 1024) },
      { name: 'a', data: 'hello\n' },
    ]);
    const r = await tryRequest(d.socket, 'PUT', `/v1/contexts/${id}/sessions/${session}`, big, { 'content-type': 'application/x-tar' }, 10_000);
    expect(r.status, r.error ?? r.body).toBe(400);
    expect(message(r.body)).toContain(`../${MARK}`);

    // A second upload to a session whose upload is still coming in is refused with a reply.
    const s2 = await plan();
    const body = await makeTar([{ name: 'a', data: 'hello\n' }]);
    const sock = net.connect(d.socket);
    await new Promise((res) => sock.once('connect', res));
    sock.on('error', () => undefined);
    sock.write(`PUT /v1/contexts/${id}/sessions/${s2} HTTP/1.1\r\nHost: k\r\nContent-Type: application/x-tar\r\nContent-Length: ${body.length}\r\n\r\n`);
    sock.write(body.subarray(0, 512));
    await sleep(200);
    const second = await tryRequest(d.socket, 'PUT', `/v1/contexts/${id}/sessions/${s2}`, body, { 'content-type': 'application/x-tar' });
    sock.destroy();
    expect(second.status, second.error ?? second.body).toBeGreaterThanOrEqual(400);
    expect(second.status).toBeLessThan(500);
    expect(message(second.body)).not.toBe('');
    // Whatever became of that session, the context is free again (no lease leaked).
    await sleep(100);
    await jsonReq(d, 'DELETE', `/v1/contexts/${id}/sessions/${s2}`);
    const again = await jsonReq(d, 'POST', `/v1/contexts/${id}/sessions`, { entries }, 5000);
    expect(again.status, again.body).toBe(201);
    expect((await jsonReq(d, 'DELETE', `/v1/contexts/${id}/sessions/${(JSON.parse(again.body) as { session: string }).session}`)).status).toBe(204);
    nothingOutside(d);
    daemonAlive(d);
  });

  it('refuses a hostile file list with 400, and the context is free again afterwards', async () => {
    const f = (p: unknown, more: Record<string, unknown> = {}) => ({ path: p, type: 'file', mode: 0o644, size: 1, mtimeMs: 1, ...more });
    const dir = (p: string) => ({ path: p, type: 'dir', mode: 0o755, size: 0, mtimeMs: 1 });
    const lists: [string, unknown][] = [
      ['..', [f('../x')]],
      ['.. inside', [dir('a'), f('a/../../x')]],
      ['absolute', [f('/etc/passwd')]],
      ['absolute dir', [dir('/tmp'), f(`/tmp/${MARK}`)]],
      ['duplicate', [f('a'), f('a')]],
      ['missing parent', [f('nodir/x')]],
      ['parent after child', [f('p/x'), dir('p')]],
      ['file as parent', [f('a'), f('a/b')]],
      ['symlink as parent', [{ path: 'l', type: 'symlink', mode: 0o777, size: 0, mtimeMs: 1, linkTarget: MARK_DIR }, f('l/x')]],
      ['dot component', [dir('a'), f('a/./b')]],
      ['empty component', [dir('a'), f('a//b')]],
      ['trailing slash', [dir('a/')]],
      ['empty path', [f('')]],
      ['NUL byte', [f('a\u0000b')]],
      ['path not a string', [f(5)]],
      ['null entry', [null]],
      ['unknown type', [{ ...f('c'), type: 'char-device' }]],
      ['hard link outside', [f('h', { hardlinkTo: '/etc/passwd' })]],
      ['hard link with ..', [f('h', { hardlinkTo: '../../etc/passwd' })]],
      ['hard link to a later entry', [f('h', { hardlinkTo: 'z' }), f('z')]],
      ['hard link to a dir', [dir('a'), f('h', { hardlinkTo: 'a' })]],
      ['mode too big', [f('a', { mode: 0o100644 })]],
      ['negative size', [f('a', { size: -1 })]],
      ['huge size', [f('a', { size: 1e300 })]],
      ['mtime not a number', [f('a', { mtimeMs: 'now' })]],
      ['symlink without target', [{ path: 'l', type: 'symlink', mode: 0o777, size: 0, mtimeMs: 1 }]],
      ['link target on a file', [f('a', { linkTarget: '/etc' })]],
      ['entries not a list', { a: 1 }],
      ['no entries', undefined],
    ];
    for (const [what, list] of lists) {
      const r = await jsonReq(d, 'POST', `/v1/contexts/${id}/sessions`, list === undefined ? {} : { entries: list });
      expect(r.status, `${what}: ${r.body}`).toBe(400);
      expect(message(r.body), what).not.toBe('');
    }
    // A lease leaked by a refused list would make this plan wait (and the request time out).
    const r = await jsonReq(d, 'POST', `/v1/contexts/${id}/sessions`, { entries }, 5000);
    expect(r.status, r.body).toBe(201);
    expect((await jsonReq(d, 'DELETE', `/v1/contexts/${id}/sessions/${(JSON.parse(r.body) as { session: string }).session}`)).status).toBe(204);
    nothingOutside(d);
    daemonAlive(d);
  });
});

// ---- 3. kiln build - -----------------------------------------------------------------------------

describe('kiln build - (a tar context on stdin)', () => {
  let embeddedRoot: string;
  let clientConfig: string;
  beforeAll(() => {
    const dir = tmp('kiln-stdin-');
    embeddedRoot = path.join(dir, 'root');
    clientConfig = path.join(dir, 'daemon.json');
    fs.writeFileSync(clientConfig, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
  });

  const ways = () => [
    { way: 'through the daemon', args: ['--addr', d.addr] },
    { way: 'embedded', args: ['--root', embeddedRoot] },
  ];
  const run = (args: string[], input: Buffer) =>
    kilnClient(['build', ...args, '--progress', 'plain', '-'], { input, env: { KILN_CONFIG: clientConfig, KILN_HOST: '' }, timeoutMs: 60_000 });

  it('builds from a good tar both ways', async () => {
    for (const { way, args } of ways()) {
      const word = `from-stdin-${randomBytes(3).toString('hex')}`;
      const input = await makeTar([
        { name: 'Dockerfile', data: GOOD_DOCKERFILE },
        { name: 'a', data: `${word}\n` },
      ]);
      const r = await run(args, input);
      expect(r.code, `${way}:\n${r.stderr}`).toBe(0);
      expect(r.stdout + r.stderr, way).toMatch(new RegExp(`^#\\d+ [\\d.]+ ${word}$`, 'm'));
    }
  });

  it('refuses hostile tars naming the entry, and writes nothing outside', async () => {
    const df = { name: 'Dockerfile', data: GOOD_DOCKERFILE };
    const a = { name: 'a', data: 'hello\n' };
    const good = await makeTar([df, a, { name: 'pad', data: Buffer.alloc(4000, 1) }]);
    const attacks: { what: string; tar: Buffer; names: string | RegExp }[] = [
      { what: 'traversal', tar: await makeTar([df, a, { name: `../../../../../../tmp/${MARK}`, data: 'pwned\n' }]), names: MARK },
      { what: 'absolute', tar: await makeTar([df, a, { name: MARK_FILE, data: 'pwned\n' }]), names: MARK },
      {
        what: 'link then write',
        tar: await makeTar([df, a, { name: 'esc', type: 'symlink', linkname: MARK_DIR }, { name: 'esc/pwned', data: 'pwned\n' }]),
        names: 'esc/pwned',
      },
      {
        what: 'link to / then write',
        tar: await makeTar([df, a, { name: 'rootlink', type: 'symlink', linkname: '/' }, { name: `rootlink/tmp/${MARK}`, data: 'pwned\n' }]),
        names: 'rootlink',
      },
      { what: 'hard link outside', tar: await makeTar([df, a, { name: 'hardlink-evil', type: 'link', linkname: '/etc/passwd' }]), names: 'hardlink-evil' },
      {
        what: 'hard link with ..',
        tar: await makeTar([df, a, { name: 'hardlink-dots', type: 'link', linkname: '../../../../etc/passwd' }]),
        names: 'hardlink-dots',
      },
      { what: 'device node', tar: await makeTar([df, a, { name: 'devnode-evil', type: 'character-device', devmajor: 1, devminor: 1 }]), names: 'devnode-evil' },
      { what: 'block device', tar: await makeTar([df, a, { name: 'blockdev-evil', type: 'block-device', devmajor: 8, devminor: 0 }]), names: 'blockdev-evil' },
      { what: 'fifo', tar: await makeTar([df, a, { name: 'fifo-evil', type: 'fifo' }]), names: 'fifo-evil' },
      {
        what: 'the Dockerfile a link out',
        tar: await makeTar([{ name: 'Dockerfile', type: 'symlink', linkname: '/etc/passwd' }, a]),
        names: /Dockerfile.*inside the context/,
      },
      { what: 'a truncated tar', tar: good.subarray(0, 2048), names: /truncated|end of data|unreadable/i },
    ];
    const passwd = fs.statSync('/etc/passwd');
    for (const { way, args } of ways()) {
      for (const at of attacks) {
        const r = await run(args, at.tar);
        expect(r.code, `${way}, ${at.what}: ${r.stderr}`).not.toBe(0);
        expect(r.code, `${way}, ${at.what}: killed?`).not.toBe(null);
        if (typeof at.names === 'string') expect(r.stderr, `${way}, ${at.what}`).toContain(at.names);
        else expect(r.stderr, `${way}, ${at.what}`).toMatch(at.names);
        expect(r.stdout + r.stderr, `${way}, ${at.what}: a build step ran`).not.toMatch(/^#\d+ \[\d\/\d\] RUN/m);
        nothingOutside(d);
      }
    }
    const after = fs.statSync('/etc/passwd');
    expect([after.nlink, after.size, after.mtimeMs]).toEqual([passwd.nlink, passwd.size, passwd.mtimeMs]);
    expect(findNamed(embeddedRoot, MARK)).toEqual([]);
    daemonAlive(d);
    await realBuild(d.addr);
  });
});

// ---- 4. limits ---------------------------------------------------------------------------------

describe('limits', () => {
  let l: DaemonProc;
  beforeAll(async () => {
    l = await startDaemon({ config: { 'max-context-size': '1MB', 'max-concurrent-uploads': 1 } });
    dirs.push(path.dirname(l.socket));
  });
  afterAll(async () => {
    if (l) expect(await l.stop(), l.log()).toBe(0);
  });

  it('refuses a context over max-context-size with a clear message, and keeps serving', async () => {
    const ctx = makeContext({ Dockerfile: 'FROM busybox\nCOPY big /big\nRUN wc -c /big\n' });
    dirs.push(ctx);
    fs.writeFileSync(path.join(ctx, 'big'), Buffer.alloc(2 * 1024 * 1024, 1));
    const r = await kilnClient(['build', '--addr', l.addr, '--progress', 'plain', ctx], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.code).not.toBe(null);
    expect(r.stderr).toMatch(/exceeds the maximum size of 1048576 bytes/);

    // A list that lies about a size cannot smuggle more than it announced.
    const plan = await jsonReq(l, 'POST', `/v1/contexts/liar-${RAND}/sessions`, { entries: [{ path: 'a', type: 'file', mode: 0o644, size: 10, mtimeMs: 1 }] });
    expect(plan.status, plan.body).toBe(201);
    const session = (JSON.parse(plan.body) as { session: string }).session;
    const put = await request(
      l.socket,
      'PUT',
      `/v1/contexts/liar-${RAND}/sessions/${session}`,
      await makeTar([{ name: 'a', data: Buffer.alloc(2 * 1024 * 1024) }]),
      { 'content-type': 'application/x-tar' },
    );
    expect(put.status, put.body).toBe(400);
    expect(message(put.body)).toMatch(/"a".*2097152 bytes, the list said 10/);
    // Nor by spreading it over files.
    const spread = await jsonReq(l, 'POST', `/v1/contexts/liar-${RAND}/sessions`, {
      entries: [0, 1, 2].map((i) => ({ path: `f${i}`, type: 'file', mode: 0o644, size: 400_000, mtimeMs: 1 })),
    });
    expect(spread.status, spread.body).toBe(400);
    expect(message(spread.body)).toMatch(/exceeds the maximum size/);

    daemonAlive(l);
    await realBuild(l.addr);
  });

  it('answers 429 to a second upload at once (on its file list, before any tar is sent), and a cut upload frees its slot', async () => {
    const size = 300_000;
    const entries = [{ path: 'a', type: 'file', mode: 0o644, size, mtimeMs: 1 }];
    const plan = (i: number) => jsonReq(l, 'POST', `/v1/contexts/conc${i}-${RAND}/sessions`, { entries });
    const first = await plan(1);
    expect(first.status, first.body).toBe(201);
    const session1 = (JSON.parse(first.body) as { session: string }).session;
    const body = await makeTar([{ name: 'a', data: Buffer.alloc(size, 3) }]);
    // Upload 1 starts and stalls half way: it holds the only upload slot.
    const sock = net.connect(l.socket);
    await new Promise((r) => sock.once('connect', r));
    sock.on('error', () => undefined);
    sock.write(
      `PUT /v1/contexts/conc1-${RAND}/sessions/${session1} HTTP/1.1\r\nHost: k\r\nContent-Type: application/x-tar\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    sock.write(body.subarray(0, 100_000));
    await sleep(300);
    const second = await withTimeout(plan(2), 10_000, 'second plan');
    expect(second.status, second.body).toBe(429);
    expect(second.headers['retry-after']).toBe('1');
    expect(message(second.body)).toMatch(/too many context uploads/);
    // The first is cut off: its slot must come back (a leaked count would refuse every upload).
    sock.destroy();
    let retry;
    for (let i = 0; i < 50; i++) {
      retry = await plan(2);
      if (retry.status !== 429) break;
      await sleep(100);
    }
    expect(retry!.status, retry!.body).toBe(201);
    const session2 = (JSON.parse(retry!.body) as { session: string }).session;
    const put = await request(l.socket, 'PUT', `/v1/contexts/conc2-${RAND}/sessions/${session2}`, body, { 'content-type': 'application/x-tar' });
    expect(put.status, put.body).toBe(200);
    expect((await jsonReq(l, 'DELETE', `/v1/contexts/conc2-${RAND}/sessions/${session2}`)).status).toBe(204);
    // The cut upload's session is over. (A small body: the 404 comes before a large one is read, and
    // writing the rest of it then fails with EPIPE before the answer is read.)
    expect(
      (await request(l.socket, 'PUT', `/v1/contexts/conc1-${RAND}/sessions/${session1}`, Buffer.alloc(1024), { 'content-type': 'application/x-tar' })).status,
    ).toBe(404);
    daemonAlive(l);
    await realBuild(l.addr);
  });
});

// ---- 5. TLS and plain TCP -------------------------------------------------------------------------

function tlsGet(port: number, opts: https.RequestOptions): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/_ping', method: 'GET', timeout: 5000, ...opts }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}` }));
    req.end();
  });
}

function plainGet(port: number): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/_ping', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: e.message }));
  });
}

describe('TCP', () => {
  it('serves a client with a certificate from the CA', async () => {
    await realBuild(`tcp://127.0.0.1:${tlsPort}`, ['--tlscacert', tls.ca, '--tlscert', tls.clientCert, '--tlskey', tls.clientKey]);
    const ok = await tlsGet(tlsPort, { ca: fs.readFileSync(tls.ca), cert: fs.readFileSync(tls.clientCert), key: fs.readFileSync(tls.clientKey) });
    expect(ok).toEqual({ status: 200, body: 'OK' });
  });

  it('refuses clients without a certificate, with one from another CA, and plain HTTP', async () => {
    const ca = fs.readFileSync(tls.ca);
    const none = await tlsGet(tlsPort, { ca });
    expect(none, 'no client certificate').toHaveProperty('error');
    const other = await tlsGet(tlsPort, { ca, cert: fs.readFileSync(tls.otherCert), key: fs.readFileSync(tls.otherKey) });
    expect(other, 'a certificate from another CA').toHaveProperty('error');
    const plain = await plainGet(tlsPort);
    expect('status' in plain && plain.status === 200, `plain HTTP: ${JSON.stringify(plain)}`).toBe(false);
    expect(JSON.stringify(plain)).not.toMatch(/"OK"|builds|images/);
    // Plain bytes to the TLS port: no HTTP answer.
    const r = await raw({ port: tlsPort }, ['GET /v1/images HTTP/1.1\r\nHost: k\r\n\r\n'], { ms: 2000 });
    expect(r.statuses.filter((s) => s < 400)).toEqual([]);
    expect(r.text).not.toContain('images');

    // The kiln client fails the same ways (and says so), building nothing.
    const ctx = makeContext({ Dockerfile: GOOD_DOCKERFILE, a: 'x\n' });
    dirs.push(ctx);
    for (const [what, extra] of [
      ['another CA', ['--tlscacert', tls.ca, '--tlscert', tls.otherCert, '--tlskey', tls.otherKey]],
      ['no TLS', []],
      ['the wrong server CA', ['--tlscacert', tls.otherCa, '--tlscert', tls.clientCert, '--tlskey', tls.clientKey]],
    ] as const) {
      const c = await kilnClient(['build', '--addr', `tcp://127.0.0.1:${tlsPort}`, ...extra, '--progress', 'plain', ctx], { timeoutMs: 30_000 });
      expect(c.code, `${what}: ${c.stderr}`).not.toBe(0);
      expect(c.code, `${what}: killed by the timeout`).not.toBe(null);
      expect(c.stderr, what).not.toMatch(/^#\d+ [\d.]+ x$/m);
    }
    daemonAlive(d);
  });

  it('refuses plain TCP without --insecure-tcp, and on a non-loopback address, before taking the root', async () => {
    const port = await freePort();
    const dir = tmp('kiln-insecure-');
    const root = path.join(dir, 'root');
    const noTls = await kilnClient(['daemon', '--root', root, '--addr', `tcp://127.0.0.1:${port}`], { timeoutMs: 15_000 });
    expect(noTls.code, noTls.stderr).toBe(1);
    expect(noTls.stderr).toMatch(/TLS/);
    expect(noTls.stderr).toMatch(/--insecure-tcp/);
    expect(fs.existsSync(root)).toBe(false);

    // In a network namespace of its own: even a daemon that wrongly listened on 0.0.0.0 would be
    // reachable from nowhere.
    const wild = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn('unshare', ['--net', process.execPath, KILN, 'daemon', '--root', root, '--addr', `tcp://0.0.0.0:${port}`, '--insecure-tcp'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        timeout: 15_000,
      });
      let stderr = '';
      p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      p.on('close', (code) => resolve({ code, stderr }));
    });
    expect(wild.code, wild.stderr).toBe(1);
    expect(wild.stderr).toMatch(/loopback/);
    expect(wild.stderr).toContain('0.0.0.0');
    expect(fs.existsSync(root)).toBe(false);
  });

  it('serves plain TCP on loopback with --insecure-tcp', async () => {
    const port = await freePort();
    const x = await startDaemon({ args: ['--addr', `tcp://127.0.0.1:${port}`, '--insecure-tcp'] });
    dirs.push(path.dirname(x.socket));
    try {
      expect(await plainGet(port)).toEqual({ status: 200, body: 'OK' });
      await realBuild(`tcp://127.0.0.1:${port}`);
    } finally {
      expect(await x.stop(), x.log()).toBe(0);
    }
  });
});

// ---- 6. isolation ------------------------------------------------------------------------------

describe('what a RUN step can reach', () => {
  it('sees neither the socket, the root nor the TLS files, and cannot use the API over TCP', async () => {
    const paths = [
      path.dirname(d.socket),
      d.socket,
      d.root,
      path.join(d.root, 'contexts'),
      tls.dir,
      tls.key,
      tls.ca,
      `/proc/${d.pid}/root${d.socket}`,
      `/proc/${d.pid}/root${tls.key}`,
      `/proc/${d.pid}/cwd`,
    ];
    const lines = paths.map((p, i) => `RUN test ! -e '${p}' && echo absent-"ok"-${i}`);
    // The marker is split in the Dockerfile so that the echoed command line cannot match it.
    const probe = (url: string, i: number, extra = '') => `if wget -T 3 -q -O- ${extra} ${url}; then echo API-"REACHED"-${i}; else echo api-"refused"-${i}; fi`;
    const net = [
      `RUN ${probe(`http://127.0.0.1:${tlsPort}/_ping`, 0)}; ${probe(`https://127.0.0.1:${tlsPort}/_ping`, 1, '--no-check-certificate')}; ${probe(`http://127.0.0.1:${tlsPort}/v1/images`, 2)}`,
    ];
    const ctx = makeContext({ Dockerfile: ['FROM busybox', ...lines, ...net, ''].join('\n') });
    dirs.push(ctx);
    const r = await kilnClient(['build', '--addr', d.addr, '--progress', 'plain', '--no-cache', ctx], { timeoutMs: 60_000 });
    const out = r.stdout + r.stderr;
    expect(r.code, out).toBe(0);
    for (let i = 0; i < paths.length; i++) expect(out, paths[i]).toMatch(new RegExp(`^#\\d+ [\\d.]+ absent-ok-${i}$`, 'm'));
    expect(out).not.toMatch(/^#\d+ [\d.]+ API-REACHED/m);
    for (let i = 0; i < 3; i++) expect(out).toMatch(new RegExp(`^#\\d+ [\\d.]+ api-refused-${i}$`, 'm'));
    daemonAlive(d);
  });
});

// ---- 7. one daemon per root --------------------------------------------------------------------

describe('a second daemon', () => {
  it('refuses to start on a root in use, naming the root and the pid, and leaves the first serving', async () => {
    const dir = tmp('kiln-second-');
    const config = path.join(dir, 'daemon.json');
    fs.writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
    const otherSocket = path.join(dir, 'other.sock');
    const second = await kilnClient(['daemon', '--root', d.root, '--addr', `unix://${otherSocket}`, '--config', config], { timeoutMs: 20_000 });
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain(d.root);
    expect(second.stderr).toContain(`pid ${d.pid}`);
    expect(fs.existsSync(otherSocket)).toBe(false);

    // Same root and the same socket: refused too, and the first one's socket is left alone.
    const same = await kilnClient(['daemon', '--root', d.root, '--addr', d.addr, '--config', config], { timeoutMs: 20_000 });
    expect(same.code, same.stderr).toBe(1);
    expect(same.stderr).toContain(d.root);

    // Another root but the first one's socket: refused, the socket not taken over.
    const otherRoot = await kilnClient(['daemon', '--root', path.join(dir, 'root2'), '--addr', d.addr, '--config', config], { timeoutMs: 20_000 });
    expect(otherRoot.code, otherRoot.stderr).toBe(1);
    expect(otherRoot.stderr).toContain(d.socket);

    expect(fs.statSync(d.socket).isSocket()).toBe(true);
    daemonAlive(d);
    expect(await ping(d.socket)).toBe(true);
    await realBuild(d.addr);
  });
});
