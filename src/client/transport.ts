// HTTP to a kiln daemon: over a unix socket, or TCP with TLS (a client certificate, the daemon's CA),
// or plain TCP on loopback when the daemon allows it. One function per request; callers read the
// reply as JSON or as a stream.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import type { Duplex, Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { parseAddress, type ListenAddress, type TlsFiles } from '../server/address.js';
// node:https (with TLS) and node:zlib are loaded when a TLS endpoint or a large body needs them:
// a client talking to a local socket, which is most warm builds, starts without them.

export interface Endpoint {
  address: ListenAddress;
  /** What the user gave (for messages). */
  text: string;
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

/** The daemon could not be reached at all (as opposed to answering with an error). */
export class UnreachableError extends Error {
  constructor(endpoint: Endpoint, cause: Error) {
    super(`cannot reach the kiln daemon at ${endpoint.text}: ${(cause as NodeJS.ErrnoException).code ?? cause.message}${hint(cause)}`, { cause });
    this.name = 'UnreachableError';
  }
}

function hint(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') return ' (is `kiln daemon` running there?)';
  if (code === 'EACCES') return ' (permission denied: the socket is for root and its group)';
  return '';
}

/** The daemon answered with an error status; `message` is its own. */
export class DaemonError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'DaemonError';
  }
}

export function endpoint(addr: string, tls: TlsFiles = {}): Endpoint {
  const address = parseAddress(addr);
  const ep: Endpoint = { address, text: addr };
  if (address.kind === 'tcp' && (tls.ca || tls.cert || tls.key)) {
    if (!tls.ca || !tls.cert || !tls.key) throw new Error('TLS needs all of --tlscacert, --tlscert and --tlskey');
    const read = (flag: string, f: string) => {
      try {
        return fs.readFileSync(f);
      } catch (err) {
        throw new Error(`${flag} ${f}: ${(err as Error).message}`);
      }
    };
    ep.tls = { ca: read('--tlscacert', tls.ca), cert: read('--tlscert', tls.cert), key: read('--tlskey', tls.key) };
  }
  return ep;
}

/** Identifies this client to the daemon, which serves the builds of different clients in turn. */
const CLIENT_ID = `${os.hostname()}/${process.pid}`;

export interface RequestOptions {
  body?: Buffer | NodeJS.ReadableStream;
  contentType?: string;
  contentEncoding?: string;
  signal?: AbortSignal;
  /** Milliseconds to wait for the connection (and, with no body, the whole reply head). */
  connectTimeoutMs?: number;
}

/** A request to the daemon over its kind of address: a unix socket, TLS TCP, or plain loopback TCP. */
async function openRequest(ep: Endpoint, base: http.RequestOptions): Promise<http.ClientRequest> {
  const a = ep.address;
  // servername '': no TLS here, and left unset the agent would work one out (an IP check whose
  // regular expression alone costs a fresh client milliseconds).
  if (a.kind === 'unix') return http.request({ ...base, socketPath: a.path, servername: '' } as http.RequestOptions);
  if (!ep.tls) return http.request({ ...base, host: a.host, port: a.port });
  const https = await import('node:https');
  // No SNI for an IP address (Node deprecates it).
  return https.request({
    ...base,
    host: a.host,
    port: a.port,
    ca: ep.tls.ca,
    cert: ep.tls.cert,
    key: ep.tls.key,
    ...(net.isIP(a.host) ? {} : { servername: a.host }),
  });
}

/** Sends one request; resolves with the response head (status checked by the caller). */
export async function send(ep: Endpoint, method: string, path: string, opts: RequestOptions = {}): Promise<http.IncomingMessage> {
  const headers: Record<string, string> = { 'x-kiln-client': CLIENT_ID };
  if (opts.contentType) headers['content-type'] = opts.contentType;
  if (opts.contentEncoding) headers['content-encoding'] = opts.contentEncoding;
  if (Buffer.isBuffer(opts.body)) headers['content-length'] = String(opts.body.length);
  const req = await openRequest(ep, { method, path, headers, signal: opts.signal });
  return new Promise((resolve, reject) => {
    let connected = false;
    req.once('socket', (s) => {
      const mark = () => (connected = true);
      if ((s as { connecting?: boolean }).connecting === false) mark();
      else s.once(ep.tls ? 'secureConnect' : 'connect', mark);
    });
    const timer = opts.connectTimeoutMs
      ? setTimeout(() => !connected && req.destroy(Object.assign(new Error('timed out connecting'), { code: 'ETIMEDOUT' })), opts.connectTimeoutMs)
      : undefined;
    let responded = false;
    req.once('response', (res) => {
      responded = true;
      clearTimeout(timer);
      resolve(res);
    });
    req.on('error', (err) => {
      // The daemon may answer (a refusal) before it has read the whole body: its answer counts,
      // not the broken pipe that writing the rest of the body then meets.
      if (responded) return;
      clearTimeout(timer);
      if (opts.signal?.aborted) reject(opts.signal.reason);
      else reject(connected ? err : new UnreachableError(ep, err));
    });
    if (opts.body === undefined) req.end();
    else if (Buffer.isBuffer(opts.body)) req.end(opts.body);
    else {
      const body = opts.body as NodeJS.ReadableStream;
      body.once('error', (err) => req.destroy(err as Error));
      body.pipe(req);
    }
  });
}

/** A GET upgraded to `protocol` (101): resolves with the raw bidirectional stream. */
export async function upgrade(ep: Endpoint, path: string, protocol: string): Promise<Duplex> {
  const headers = { 'x-kiln-client': CLIENT_ID, connection: 'Upgrade', upgrade: protocol };
  const req = await openRequest(ep, { method: 'GET', path, headers });
  return new Promise((resolve, reject) => {
    req.once('upgrade', (_res, socket, head) => {
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('response', (res) => {
      void readAll(res).then((b) => reject(daemonError(res.statusCode ?? 500, b.toString('utf8'))), reject);
    });
    req.on('error', reject);
    req.end();
  });
}

export async function readAll(res: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A JSON request and reply; an error status becomes DaemonError with the daemon's message. A large
 * body (a context's file list) goes gzip-compressed (a few ms for a 10,000-entry list, a sixth of
 * the bytes).
 */
export async function call<T>(ep: Endpoint, method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  if (body === undefined) return replyJson<T>(await send(ep, method, path, { signal }));
  let data: Buffer = Buffer.from(JSON.stringify(body));
  let encoding: string | undefined;
  if (data.length > 16 * 1024) {
    const zlib = await import('node:zlib');
    data = await new Promise<Buffer>((resolve, reject) => zlib.gzip(data, { level: 6 }, (err, out) => (err ? reject(err) : resolve(out))));
    encoding = 'gzip';
  }
  return replyJson<T>(await send(ep, method, path, { body: data, contentType: 'application/json', contentEncoding: encoding, signal }));
}

export async function replyJson<T>(res: http.IncomingMessage): Promise<T> {
  const text = (await readAll(res)).toString('utf8');
  if ((res.statusCode ?? 500) >= 400) throw daemonError(res.statusCode ?? 500, text);
  return (text === '' ? undefined : JSON.parse(text)) as T;
}

export function daemonError(status: number, text: string): DaemonError {
  let message = text.trim();
  try {
    const parsed = JSON.parse(text) as { message?: unknown };
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    /* not JSON: keep the text */
  }
  return new DaemonError(status, message || `HTTP ${status}`);
}

/** JSON lines of a streamed reply, as they arrive. */
export async function* jsonLines(res: Readable): AsyncGenerator<unknown> {
  // A character may be split between chunks: decode across them.
  const decoder = new StringDecoder('utf8');
  let buf = '';
  for await (const chunk of res) {
    buf += decoder.write(chunk as Buffer);
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() !== '') yield JSON.parse(line);
    }
  }
  buf += decoder.end();
  if (buf.trim() !== '') yield JSON.parse(buf);
}
