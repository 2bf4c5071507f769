// kiln's HTTP API, version 1: a thin translation of HTTP requests onto the Daemon (and through it the
// same BuildServer embedded mode calls). docs/api.md describes it for clients.
//
// HTTP/1.1, with a build's progress as a chunked stream of JSON lines: it works over a unix socket
// and through every proxy, curl can read it, and a client's disconnect is the connection closing,
// which cancels its build. (HTTP/2 would multiplex, but each build is one long stream anyway and
// uploads are single bodies; see docs/api.md.)
//
// fastify does the routing, JSON bodies with a size limit, and the error replies for malformed
// requests (bad JSON, wrong content type, unknown paths and methods), so none of them can throw
// past the door.

import { createReadStream } from 'node:fs';
import { STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import type { PruneOptions } from './server.js';
import { ApiError, type Daemon, type DaemonLog } from './daemon.js';
import { disconnectSignal, isStream } from './http-util.js';
import { SSH_UPGRADE_PROTOCOL } from './ssh-dial.js';

export const API_VERSION = 'v1';

/** How long a context upload may send nothing before the daemon gives up on it. */
const UPLOAD_IDLE_MS = 60_000;

export interface ApiOptions {
  daemon: Daemon;
  log: DaemonLog;
  /** Makes the node server (http, https with client certificates...) that fastify routes on. */
  serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => Server;
  version: string;
}

export function createApi(opts: ApiOptions): FastifyInstance {
  const { daemon, log } = opts;
  const app = Fastify({
    logger: false,
    bodyLimit: daemon.limits.maxRequestBodyBytes,
    serverFactory: opts.serverFactory,
    return503OnClosing: true,
    // Context ids and build ids are short; anything longer is not ours.
    routerOptions: { maxParamLength: 200 },
  });

  // A tar body is handed on as the raw stream (never buffered): the upload streams to disk.
  app.addContentTypeParser(['application/x-tar', 'application/octet-stream'], (_req, payload, done) => done(null, payload));

  // A context's file list is sent on every build and compresses about tenfold: clients may gzip
  // request bodies. The limit on bodies applies to what comes out, so a small bomb cannot pass.
  app.addHook('preParsing', async (req, _reply, payload) => {
    const encoding = req.headers['content-encoding'];
    if (encoding === undefined || encoding === 'identity') return payload;
    if (encoding !== 'gzip') throw new ApiError(415, `unsupported Content-Encoding: ${encoding} (gzip is)`);
    const gunzip = createGunzip();
    let received = 0;
    payload.on('data', (c: Buffer) => (received += c.length));
    payload.on('error', (err) => gunzip.destroy(err));
    const out = payload.pipe(gunzip) as typeof gunzip & { receivedEncodedLength?: number };
    // fastify compares what it read with Content-Length: the compressed count is the one to compare.
    Object.defineProperty(out, 'receivedEncodedLength', { get: () => received });
    return out;
  });

  app.addHook('onResponse', async (req, reply) => {
    log({ msg: 'request', method: req.method, path: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) });
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err instanceof ApiError ? err.status : err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status === 429 || status === 503) void reply.header('retry-after', '1');
    if (status >= 500 && !(err instanceof ApiError)) log({ msg: 'internal error', error: err.message, stack: err.stack });
    void reply.code(status).send({ message: err.message });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ message: `no such endpoint: ${req.method} ${req.url.split('?')[0]}` });
  });

  // SSH agent connections dialled back by a build's client (ssh-dial.ts): HTTP Upgrade to a raw stream.
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const m = /^\/v1\/builds\/([0-9a-f]{20})\/ssh\/([0-9a-f]{32})$/.exec((req.url ?? '').split('?')[0]!);
    const refuse = (status: number, text: string) => {
      const body = JSON.stringify({ message: text });
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    };
    socket.on('error', () => socket.destroy());
    if (!m || req.method !== 'GET' || String(req.headers.upgrade).toLowerCase() !== SSH_UPGRADE_PROTOCOL) {
      refuse(m ? 400 : 404, m ? `upgrade to ${SSH_UPGRADE_PROTOCOL} with GET` : `no such endpoint: ${req.method} ${(req.url ?? '').split('?')[0]}`);
      return;
    }
    const take = daemon.sshDials.claim(m[1]!, m[2]!);
    if (!take) {
      refuse(404, 'no step of that build is waiting for this ssh connection');
      return;
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: ${SSH_UPGRADE_PROTOCOL}\r\nconnection: Upgrade\r\n\r\n`);
    if (head.length > 0) socket.unshift(head);
    take(socket);
    log({ msg: 'request', method: req.method, path: '/v1/builds/{id}/ssh/{conn}', status: 101 });
  });

  app.get('/_ping', async (_req, reply) => reply.type('text/plain').send(daemon.accepting ? 'OK' : 'shutting down'));
  app.get(`/${API_VERSION}/version`, async () => ({ version: opts.version, api: API_VERSION }));

  // --- context uploads ---
  app.post<{ Params: { id: string }; Body: { entries?: unknown; digest?: unknown } }>(`/${API_VERSION}/contexts/:id/sessions`, async (req, reply) => {
    const body = req.body as { entries?: unknown; digest?: unknown } | undefined;
    const plan = await daemon.planUpload(req.params.id, body?.entries, disconnectSignal(req, reply), body?.digest);
    // 200 without a session: the list itself is needed (a second request sends it).
    return reply.code('listWanted' in plan ? 200 : 201).send(plan);
  });
  app.put<{ Params: { id: string; session: string } }>(`/${API_VERSION}/contexts/:id/sessions/:session`, async (req, reply) => {
    if (!isStream(req.body)) throw new ApiError(415, 'the files of an upload are sent as a tar stream (Content-Type: application/x-tar)');
    // The receiver gets its own end of the body: when it refuses an upload it stops reading and
    // destroys the stream it was given, and destroying the request itself would close the socket
    // before the refusal (naming the entry) is sent. The client going away still reaches it.
    const raw = req.body as NodeJS.ReadableStream & NodeJS.EventEmitter;
    // A stalled upload holds an upload slot: one that sends nothing for a minute is cut off.
    req.raw.setTimeout(UPLOAD_IDLE_MS, () => req.raw.destroy(new Error(`context upload stalled: nothing received for ${UPLOAD_IDLE_MS / 1000} s`)));
    const body = new PassThrough();
    const onError = (err: Error) => body.destroy(err);
    raw.on('error', onError);
    raw.pipe(body);
    try {
      return reply.send(await daemon.receiveUpload(req.params.id, req.params.session, body));
    } catch (err) {
      raw.unpipe(body);
      // The rest of the body is not read: close the connection after the reply instead of reading it.
      reply.raw.setHeader('connection', 'close');
      throw err;
    } finally {
      raw.off('error', onError);
    }
  });
  app.delete<{ Params: { id: string; session: string } }>(`/${API_VERSION}/contexts/:id/sessions/:session`, async (req, reply) => {
    await daemon.dropSession(req.params.session);
    return reply.code(204).send();
  });

  // --- builds ---
  app.post(`/${API_VERSION}/builds`, async (req, reply) => {
    const client = String(req.headers['x-kiln-client'] ?? '').slice(0, 200) || 'anonymous';
    const signal = disconnectSignal(req, reply);
    // Checks that fail before the stream starts get a plain error status.
    let started = false;
    const write = (obj: unknown) => {
      if (!started) {
        started = true;
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
      }
      if (!reply.raw.destroyed) reply.raw.write(JSON.stringify(obj) + '\n');
    };
    try {
      const outcome = await daemon.build(req.body, client, write, signal);
      write(outcome);
    } catch (err) {
      if (!started) throw err;
      write({ type: 'error', error: { message: (err as Error).message } });
    }
    if (started) reply.raw.end();
  });
  app.get(`/${API_VERSION}/builds`, async () => ({ builds: daemon.history.list() }));
  app.get<{ Params: { id: string } }>(`/${API_VERSION}/builds/:id`, async (req) => {
    const r = daemon.history.get(req.params.id);
    if (!r) throw new ApiError(404, `no build ${req.params.id}`);
    return r;
  });
  app.post<{ Params: { id: string } }>(`/${API_VERSION}/builds/:id/cancel`, async (req, reply) => {
    if (!daemon.cancel(req.params.id)) throw new ApiError(404, `no running build ${req.params.id}`);
    return reply.code(202).send({ cancelled: req.params.id });
  });
  app.get<{ Params: { id: string; n: string } }>(`/${API_VERSION}/builds/:id/outputs/:n`, async (req, reply) => {
    const out = await daemon.outputFile(req.params.id, req.params.n);
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(out.size) });
    try {
      await pipeline(createReadStream(out.file), reply.raw);
      await out.remove();
    } catch {
      reply.raw.destroy();
    }
  });

  // --- the store ---
  app.get(`/${API_VERSION}/images`, async () => ({ images: await daemon.server.listImages() }));
  app.get(`/${API_VERSION}/du`, async () => daemon.diskUsage());
  app.post(`/${API_VERSION}/prune`, async (req) => daemon.prune(pruneOptions(req.body)));

  return app;
}

function pruneOptions(body: unknown): PruneOptions {
  // No body is the defaults. Anything else must be a JSON object: a body of another type (a tar
  // stream, JSON null) must not read as "no options" and prune with the defaults.
  if (body === undefined) return {};
  if (isStream(body)) throw new ApiError(415, 'a prune request is a JSON object (Content-Type: application/json)');
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, 'the body must be a JSON object');
  const b = body as Record<string, unknown>;
  const opts: PruneOptions = {};
  if (b.all !== undefined) {
    if (typeof b.all !== 'boolean') throw new ApiError(400, '"all" must be true or false');
    opts.all = b.all;
  }
  for (const k of ['keepStorage', 'unusedForMs'] as const) {
    const v = b[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ApiError(400, `"${k}" must be a non-negative integer`);
    opts[k] = v;
  }
  return opts;
}
