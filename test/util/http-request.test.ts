// util/http-request.ts against real loopback servers: redirects as fetch follows them (and the
// Authorization header kept from any other origin), bodies, errors and aborts.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpRequestError, httpRequest } from '../../src/util/http-request.js';

type Seen = { method: string; url: string; headers: http.IncomingHttpHeaders; body: string };

function serve(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void,
): Promise<{ server: http.Server; base: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString();
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      handler(req, res, body);
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen })),
  );
}

let storage: Awaited<ReturnType<typeof serve>>;
let front: Awaited<ReturnType<typeof serve>>;

beforeAll(async () => {
  // "storage" is another origin (another port), as object storage is for a registry's blobs.
  storage = await serve((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`stored ${req.url}`);
  });
  front = await serve((req, res, body) => {
    const u = new URL(req.url!, 'http://x');
    if (u.pathname === '/elsewhere') return void res.writeHead(307, { location: `${storage.base}/blob` }).end();
    if (u.pathname === '/here') return void res.writeHead(302, { location: '/echo' }).end();
    if (u.pathname === '/see-other') return void res.writeHead(303, { location: '/echo' }).end();
    if (u.pathname === '/loop') return void res.writeHead(302, { location: '/loop' }).end();
    if (u.pathname === '/big')
      return void res.writeHead(200, { 'content-length': String(1 << 20) }).end(req.method === 'HEAD' ? undefined : Buffer.alloc(1 << 20, 1));
    if (u.pathname === '/multi') {
      res.setHeader('www-authenticate', ['Bearer realm="a"', 'Basic realm="b"']);
      return void res.end();
    }
    res.setHeader('x-method', req.method!);
    res.end(`echo ${req.method} ${body}`);
  });
});
afterAll(async () => {
  for (const s of [storage, front]) await new Promise((r) => s.server.close(r));
});

describe('httpRequest', () => {
  it('follows a redirect to another origin without the Authorization header, and keeps it within the origin', async () => {
    const away = await httpRequest(`${front.base}/elsewhere`, { headers: { Authorization: 'Bearer secret', 'x-other': '1' } });
    expect(away.status).toBe(200);
    expect(away.url).toBe(`${storage.base}/blob`);
    expect(await away.text()).toBe('stored /blob');
    const atStorage = storage.seen.at(-1)!;
    expect(atStorage.headers.authorization).toBeUndefined();
    expect(atStorage.headers['x-other']).toBe('1');

    const near = await httpRequest(`${front.base}/here`, { headers: { authorization: 'Bearer secret' } });
    expect(await near.text()).toBe('echo GET ');
    expect(front.seen.at(-1)!.headers.authorization).toBe('Bearer secret');
  });

  it('turns a POST into a bodiless GET on 303, as fetch does', async () => {
    const res = await httpRequest(`${front.base}/see-other`, { method: 'POST', body: Buffer.from('payload'), headers: { 'content-type': 'text/plain' } });
    expect(await res.text()).toBe('echo GET ');
    expect(front.seen.at(-2)).toMatchObject({ method: 'POST', body: 'payload' });
    expect(front.seen.at(-2)!.headers['content-length']).toBe('7');
    expect(front.seen.at(-1)!.headers['content-type']).toBeUndefined();
  });

  it('sends Content-Length: 0 for a POST without a body (registries require it)', async () => {
    const res = await httpRequest(`${front.base}/echo`, { method: 'POST' });
    expect(res.ok).toBe(true);
    await res.discard();
    expect(front.seen.at(-1)!.headers['content-length']).toBe('0');
  });

  it('stops after ten redirects with the last redirect as the answer, or at once with maxRedirects 0', async () => {
    const before = front.seen.length;
    const res = await httpRequest(`${front.base}/loop`);
    expect(res.status).toBe(302);
    expect(front.seen.length - before).toBe(11);
    await res.discard();
    const none = await httpRequest(`${front.base}/here`, { maxRedirects: 0 });
    expect(none.status).toBe(302);
    expect(none.headers.get('Location')).toBe('/echo');
    await none.discard();
  });

  it('answers HEAD without a body, streams a large body, and joins repeated headers', async () => {
    const head = await httpRequest(`${front.base}/big`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(1 << 20));
    await head.discard();
    const big = await httpRequest(`${front.base}/big`);
    let n = 0;
    for await (const c of big.body) n += (c as Buffer).length;
    expect(n).toBe(1 << 20);
    const multi = await httpRequest(`${front.base}/multi`);
    expect(multi.headers.get('WWW-Authenticate')).toBe('Bearer realm="a", Basic realm="b"');
    expect(multi.headers.get('x-absent')).toBeNull();
    await multi.discard();
  });

  it('fails a request whose server goes silent, before the answer or in the middle of the body', async () => {
    const sockets: import('node:net').Socket[] = [];
    const stall = await serve((req, res) => {
      if (req.url === '/half') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('only part of it'); // and never the rest
      }
      // '/never': no answer at all
    });
    stall.server.on('connection', (s) => sockets.push(s));
    try {
      await expect(httpRequest(`${stall.base}/never`, { idleTimeoutMs: 200 })).rejects.toThrow(`GET ${stall.base}/never: no data for 0 s`);
      const half = await httpRequest(`${stall.base}/half`, { idleTimeoutMs: 200 });
      expect(half.status).toBe(200);
      await expect(half.text()).rejects.toThrow(/no data for 0 s/);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => stall.server.close(r));
    }
  });

  it('speaks TLS to an https URL, and refuses a certificate nobody vouches for, naming why', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-https-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-keyout',
          path.join(dir, 'key.pem'),
          '-out',
          path.join(dir, 'cert.pem'),
        ],
        {
          stdio: 'ignore',
        },
      );
      let reached = 0;
      const server = https.createServer({ key: fs.readFileSync(path.join(dir, 'key.pem')), cert: fs.readFileSync(path.join(dir, 'cert.pem')) }, (_req, res) => {
        reached++;
        res.end('secret');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/v2/`;
      try {
        const err = await httpRequest(url).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(HttpRequestError);
        expect((err as HttpRequestError).code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
        expect((err as Error).message).toBe(`GET ${url}: DEPTH_ZERO_SELF_SIGNED_CERT`);
        expect(reached).toBe(0); // the handshake failed before any request went out
      } finally {
        await new Promise((r) => server.close(r));
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the method, the URL and the code when nothing answers; an abort rejects with its reason', async () => {
    const closed = await serve(() => undefined);
    const dead = closed.base;
    await new Promise((r) => closed.server.close(r));
    const err = await httpRequest(`${dead}/x`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpRequestError);
    expect((err as HttpRequestError).code).toBe('ECONNREFUSED');
    expect((err as Error).message).toBe(`GET ${dead}/x: ECONNREFUSED`);

    const ac = new AbortController();
    ac.abort(new Error('cancelled by the build'));
    await expect(httpRequest(`${front.base}/echo`, { signal: ac.signal })).rejects.toThrow('cancelled by the build');
    await expect(httpRequest('ftp://127.0.0.1/x')).rejects.toThrow();
  });
});
