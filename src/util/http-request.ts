// A small HTTP client over node:http and node:https, for the registry client and ADD <url>.
//
// Why not the global fetch: in Node 20 it is undici, loaded on first use (about 25 ms of a warm
// build's start), and its HTTP parser is a WebAssembly module whose background compilation holds
// the process open for tens of milliseconds after the build is done. A warm build makes one request
// (the base image's tag), so that was a fifth of its time. node:http loads in about 5 ms.
//
// What it keeps of fetch's behaviour, because the registry client relied on it: redirects are
// followed (at most 10; 303, and 301/302 after a POST, become a GET without a body), and the
// Authorization header is dropped when a redirect leaves the origin (a registry sending blobs to
// object storage must not hand that storage its token). Bodies are not decoded: no Accept-Encoding
// is sent, so servers send them as they are.

import * as http from 'node:http';
import type * as Https from 'node:https';
import type { Readable } from 'node:stream';
import { clientSecureContext } from './extra-ca.js';

export interface HttpRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  signal?: AbortSignal;
  /** Redirects followed before giving up; 0 returns the redirect itself. Default 10. */
  maxRedirects?: number;
  /**
   * The request fails when the connection stays silent this long, waiting for the answer or in the
   * middle of its body. Default 300 s, as undici's (fetch's) header and body timeouts: a registry
   * that accepts a connection and never answers must not hold a build forever.
   */
  idleTimeoutMs?: number;
}

const IDLE_TIMEOUT_MS = 300_000;

export interface HttpResponse {
  status: number;
  ok: boolean;
  /** The URL that answered, after redirects. */
  url: string;
  headers: { get(name: string): string | null };
  /** The body as a stream; read it, or call discard(). */
  body: Readable;
  text(): Promise<string>;
  /** Drops the body (frees the connection for reuse). */
  discard(): Promise<void>;
}

/** An error before any response: `code` is Node's (ECONNREFUSED, ENOTFOUND, ...). */
export class HttpRequestError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'HttpRequestError';
  }
}

// Keep-alive agents, one per scheme: a push makes many requests to one registry. Node unrefs idle
// kept sockets, so they never hold the process open. node:https (and TLS with it) is loaded on the
// first https URL: a build whose registry is plain HTTP (a local one) never needs it. Its
// connections trust Node's bundled roots and KILN_EXTRA_CA_CERTS (extra-ca.ts says why kiln, not
// Node, reads that file).
let plain: { module: typeof http; agent: http.Agent } | undefined;
let secure: Promise<{ module: typeof Https; agent: Https.Agent }> | undefined;
async function transportFor(protocol: string): Promise<{ module: typeof http | typeof Https; agent: http.Agent }> {
  if (protocol !== 'https:') return (plain ??= { module: http, agent: new http.Agent({ keepAlive: true }) });
  secure ??= Promise.all([import('node:https'), clientSecureContext()]).then(([module, secureContext]) => ({
    module,
    agent: new module.Agent({ keepAlive: true, ...(secureContext ? { secureContext } : {}) }),
  }));
  return secure;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export async function httpRequest(url: string | URL, init: HttpRequestInit = {}): Promise<HttpResponse> {
  let target = new URL(url);
  let method = (init.method ?? 'GET').toUpperCase();
  let body = init.body;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(init.headers ?? {})) headers[k.toLowerCase()] = v;
  const origin = target.origin;
  let left = init.maxRedirects ?? 10;
  for (;;) {
    const res = await once(target, method, headers, body, init.signal, init.idleTimeoutMs ?? IDLE_TIMEOUT_MS);
    const location = res.headers.location;
    if (!REDIRECTS.has(res.statusCode ?? 0) || location === undefined || left === 0) return wrap(res, target, method);
    res.resume();
    left--;
    const next = new URL(location, target);
    if (next.protocol !== 'http:' && next.protocol !== 'https:')
      throw new HttpRequestError(`${method} ${target}: redirect to unsupported URL ${next.protocol}`, undefined);
    if (res.statusCode === 303 || ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')) {
      if (method !== 'HEAD') method = 'GET';
      body = undefined;
      delete headers['content-length'];
      delete headers['content-type'];
    }
    if (next.origin !== origin) delete headers.authorization;
    target = next;
  }
}

async function once(
  target: URL,
  method: string,
  headers: Record<string, string>,
  body: Uint8Array | undefined,
  signal: AbortSignal | undefined,
  idleMs: number,
): Promise<http.IncomingMessage> {
  const sent = { ...headers };
  // fetch's defaults for a body given as bytes, and for a POST/PUT/PATCH without one.
  if (sent['content-length'] === undefined && (body !== undefined || method === 'POST' || method === 'PUT' || method === 'PATCH')) {
    sent['content-length'] = String(body?.length ?? 0);
  }
  const { module: client, agent } = await transportFor(target.protocol);
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason ?? new Error('aborted'));
      return;
    }
    let response: http.IncomingMessage | undefined;
    const req = client.request(target, { method, headers: sent, agent, signal }, (res) => {
      response = res;
      resolve(res);
    });
    // Silence before the answer fails this promise; silence in the middle of the body fails the
    // body's reader with the same error.
    req.setTimeout(idleMs, () => {
      const err = new HttpRequestError(`${method} ${target}: no data for ${Math.round(idleMs / 1000)} s`, 'ETIMEDOUT');
      response?.destroy(err);
      req.destroy(err);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err instanceof HttpRequestError) reject(err);
      else if (signal?.aborted) reject(signal.reason ?? err);
      else reject(new HttpRequestError(`${method} ${target}: ${err.code ?? err.message}`, err.code, { cause: err }));
    });
    req.end(body);
  });
}

function wrap(res: http.IncomingMessage, url: URL, method: string): HttpResponse {
  const status = res.statusCode ?? 0;
  // No body can follow: let the (empty) stream end now, so the socket goes back to the agent.
  const bodiless = method === 'HEAD' || status === 204 || status === 304;
  if (bodiless) res.resume();
  return {
    status,
    ok: status >= 200 && status < 300,
    url: url.toString(),
    headers: {
      get(name: string): string | null {
        const v = res.headers[name.toLowerCase()];
        if (v === undefined) return null;
        return Array.isArray(v) ? v.join(', ') : v;
      },
    },
    body: res,
    async text(): Promise<string> {
      const parts: Buffer[] = [];
      for await (const c of res) parts.push(c as Buffer);
      return Buffer.concat(parts).toString('utf8');
    },
    async discard(): Promise<void> {
      if (res.readableEnded || res.destroyed) return;
      // A short remainder is read to the end so the socket can be kept; a long one closes it.
      const length = Number(res.headers['content-length']);
      if (bodiless || (Number.isFinite(length) && length <= 64 * 1024)) {
        res.resume();
        await new Promise<void>((r) => {
          res.once('end', r);
          res.once('close', r);
          res.once('error', () => r());
        });
      } else {
        res.destroy();
      }
    },
  };
}
