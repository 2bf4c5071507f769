// The Docker Engine API door: the part of it that the Docker CLI's classic builder
// (DOCKER_BUILDKIT=0) and SDKs such as dockerode use for builds and for the images they make. A thin
// translation onto the Daemon (builds: the same line, history and limits as kiln's own API) and its
// BuildServer (the image store); nothing here builds, stores or decides.
//
// Docker's shapes: errors are {"message": "..."} with 400/404/409/500/501; a build is one streamed
// response of JSON objects ({"stream"}, {"aux": {"ID"}}, {"errorDetail", "error"}); paths may carry
// an API version prefix (/v1.41/build). Endpoints Docker has and kiln does not serve answer 501,
// anything else 404, so a client learns what is missing instead of hanging or crashing the daemon.

import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { familiarString, hostPlatform, parsePlatform, parseReference, type BuildErrorInfo, type Platform, type ProgressEvent } from '../solver/index.js';
import { ApiError, type Daemon, type DaemonLog } from './daemon.js';
import { disconnectSignal, isStream } from './http-util.js';
import { ImageLookupError, parseDuration, type PruneOptions, type StoredImageInfo } from './server.js';

/** The Engine API version kiln answers as (Docker 20.10's); clients negotiate down to it. */
export const DOCKER_API_VERSION = '1.41';
const MIN_API_VERSION = '1.12';
/**
 * Exactly this: Docker's clients parse an error body as JSON only when Content-Type is exactly
 * "application/json" (a charset parameter makes them show the raw body).
 */
const JSON_TYPE = 'application/json';

export interface DockerApiOptions {
  daemon: Daemon;
  log: DaemonLog;
  serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => Server;
  version: string;
}

/** Docker endpoints kiln does not serve: 501, so a client can tell "not here" from "no such path". */
const UNSUPPORTED =
  /^\/(containers|exec|networks|volumes|swarm|nodes|services|tasks|secrets|configs|plugins|system|info|events|auth|commit|distribution|session|grpc)(\/|$)|^\/images\/(create|load|search|prune)$|^\/images\/.+\/(push|tag|history)$/;

export function createDockerApi(opts: DockerApiOptions): FastifyInstance {
  const { daemon, log } = opts;
  const headers = {
    'api-version': DOCKER_API_VERSION,
    'docker-experimental': 'false',
    ostype: 'linux',
    server: `kiln/${opts.version} (linux)`,
  };
  const app = Fastify({
    logger: false,
    bodyLimit: daemon.limits.maxRequestBodyBytes,
    serverFactory: opts.serverFactory,
    return503OnClosing: true,
    // Image names may be long (a registry, a path, a tag); nothing longer is an image name.
    routerOptions: { maxParamLength: 1024 },
    // Clients put the API version first (/v1.41/build); kiln serves every version the same.
    rewriteUrl: (req) => (req.url ?? '/').replace(/^\/v\d+(?:\.\d+)?(?=\/|\?|$)/, '') || '/',
  });

  // A build's body is its context, a tar (maybe gzip) streamed to the extractor, never buffered.
  // Other endpoints read no body: one sent anyway is drained, so the connection stays usable.
  const body = (req: FastifyRequest, payload: NodeJS.ReadableStream & NodeJS.EventEmitter, done: (err: Error | null, body?: unknown) => void) => {
    if (req.method === 'POST' && req.routeOptions.url === '/build') return done(null, payload);
    payload.resume();
    payload.once('end', () => done(null, undefined));
    // A client that goes away while sending a body nobody reads: not the daemon's fault.
    payload.once('error', (err: Error) => done(Object.assign(err, { statusCode: 400 }), undefined));
  };
  app.addContentTypeParser('*', body);
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser(['application/json', 'text/plain'], body);

  // As dockerd: a client asking for a newer API than this one (or one too old) is told so.
  app.addHook('onRequest', async (req) => {
    const m = /^\/v(\d+)\.(\d+)(?=\/|\?|$)/.exec(req.originalUrl);
    if (!m) return;
    const asked = [Number(m[1]), Number(m[2])] as const;
    if (compareVersions(asked, DOCKER_API_VERSION) > 0)
      throw new ApiError(400, `client version ${m[1]}.${m[2]} is too new. Maximum supported API version is ${DOCKER_API_VERSION}`);
    if (compareVersions(asked, MIN_API_VERSION) < 0)
      throw new ApiError(
        400,
        `client version ${m[1]}.${m[2]} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
      );
  });
  app.addHook('onSend', async (_req, reply) => {
    void reply.headers(headers);
    const ct = reply.getHeader('content-type');
    if (typeof ct === 'string' && ct.startsWith('application/json')) void reply.header('content-type', JSON_TYPE);
  });
  app.addHook('onResponse', async (req, reply) => {
    log({ msg: 'request', api: 'docker', method: req.method, path: req.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) });
  });
  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    let status: number;
    if (err instanceof ApiError) status = err.status;
    else if (err instanceof ImageLookupError) status = { missing: 404, invalid: 400, conflict: 409, unsupported: 501 }[err.kind];
    else status = err.statusCode && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    if (status >= 500 && status !== 501 && status !== 503) log({ msg: 'internal error', api: 'docker', error: err.message, stack: err.stack });
    void reply
      .code(status)
      .type(JSON_TYPE)
      .send(JSON.stringify({ message: err.message }));
  });
  app.setNotFoundHandler((req, reply) => {
    const p = req.url.split('?')[0]!;
    const message = UNSUPPORTED.test(p) ? `${req.method} ${p} is not implemented by kiln's Docker API (it serves builds and images only)` : 'page not found';
    return reply
      .code(UNSUPPORTED.test(p) ? 501 : 404)
      .type(JSON_TYPE)
      .send(JSON.stringify({ message }));
  });

  // --- the handshake ---
  app.get('/_ping', async (_req, reply) =>
    reply
      .headers({ 'builder-version': '1', 'cache-control': 'no-cache, no-store, must-revalidate', pragma: 'no-cache' })
      .type('text/plain; charset=utf-8')
      .send(daemon.accepting ? 'OK' : 'shutting down'),
  );
  app.get('/version', async () => ({
    Platform: { Name: 'kiln' },
    Components: [
      {
        Name: 'kiln',
        Version: opts.version,
        Details: { ApiVersion: DOCKER_API_VERSION, MinAPIVersion: MIN_API_VERSION, Os: 'linux', Arch: hostPlatform().architecture },
      },
    ],
    Version: opts.version,
    ApiVersion: DOCKER_API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: '',
    GoVersion: `node${process.versions.node}`,
    Os: 'linux',
    Arch: hostPlatform().architecture,
    KernelVersion: '',
    BuildTime: '',
  }));

  // --- builds ---
  app.post('/build', async (req, reply) => {
    const body = req.body;
    if (!isStream(body)) throw new ApiError(400, 'the build context must be sent as the request body (a tar archive)');
    let params;
    try {
      params = buildParams(req.query as Record<string, string | string[] | undefined>);
    } catch (err) {
      body.resume();
      throw err;
    }
    const client = String(req.headers['x-kiln-client'] ?? '').slice(0, 200) || `docker-api ${String(req.headers['user-agent'] ?? '').slice(0, 100)}`.trim();
    const signal = disconnectSignal(req, reply);
    const stream = new BuildStream(reply, headers, params.quiet);
    let outcome;
    try {
      outcome = await daemon.buildFromTar(
        terminateTar(body),
        {
          dockerfile: { name: params.dockerfile },
          buildArgs: params.buildArgs,
          target: params.target,
          platform: params.platform,
          dryRun: false,
          outputs: [{ type: 'image', names: params.tags, push: false }],
          imageId: true,
          labels: params.labels,
          network: params.network,
          noCache: params.noCache,
          pull: params.pull,
        },
        client,
        (e) => stream.event(e),
        signal,
      );
    } catch (err) {
      if (!stream.started) {
        // The rest of the context is not read: close the connection after the refusal.
        reply.raw.setHeader('connection', 'close');
        throw err;
      }
      stream.error({ message: (err as Error).message });
      return stream.end();
    }
    if (outcome.type === 'error') stream.error(outcome.error);
    else stream.success(outcome.result.image?.id ?? '', params.tags);
    stream.end();
  });

  app.post('/build/prune', async (req) => {
    const q = req.query as Record<string, string | string[] | undefined>;
    const opts: PruneOptions = { all: truthy(one(q, 'all')) };
    const keep = one(q, 'keep-storage') ?? one(q, 'reserved-space');
    if (keep !== undefined && keep !== '') {
      const n = Number(keep);
      if (!Number.isSafeInteger(n) || n < 0) throw new ApiError(400, `invalid keep-storage: ${keep}`);
      if (n > 0) opts.keepStorage = n;
    }
    const filters = jsonParam(q, 'filters') as Record<string, unknown> | undefined;
    for (const [k, v] of Object.entries(filters ?? {})) {
      const values = filterValues(v);
      if (k === 'until' || k === 'unused-for') {
        if (values.length !== 1) throw new ApiError(400, `filter ${k} takes one value`);
        try {
          opts.unusedForMs = parseDuration(values[0]!);
        } catch (err) {
          throw new ApiError(400, `invalid filter ${k}: ${(err as Error).message}`);
        }
      } else {
        throw new ApiError(400, `invalid filter '${k}'`);
      }
    }
    const report = await daemon.prune(opts);
    return { CachesDeleted: report.deleted.map((r) => r.id), SpaceReclaimed: report.reclaimed };
  });

  // --- images ---
  app.get('/images/json', async (req) => {
    const q = req.query as Record<string, string | string[] | undefined>;
    const filters = jsonParam(q, 'filters') as Record<string, unknown> | undefined;
    const refs = filterValues(filters?.reference);
    let images = await daemon.server.describeImages();
    if (refs.length > 0) images = images.filter((i) => i.names.some((n) => refs.some((r) => referenceMatches(n, r))));
    const labelFilters = filterValues(filters?.label);
    if (labelFilters.length > 0) images = images.filter((i) => labelFilters.every((l) => labelMatches(i.config.config?.Labels ?? {}, l)));
    return images.map(summary).sort((a, b) => b.Created - a.Created);
  });
  app.get('/images/get', async (req, reply) => {
    const names = many(req.query as Record<string, string | string[] | undefined>, 'names');
    return sendArchive(reply, await daemon.server.saveImages(names));
  });
  app.get('/images/*', async (req, reply) => {
    const rest = (req.params as { '*': string })['*'];
    const m = /^(.+)\/(json|get)$/.exec(rest);
    if (!m) return reply.callNotFound();
    const name = decodeName(m[1]!);
    if (m[2] === 'get') return sendArchive(reply, await daemon.server.saveImages([name]));
    const info = await daemon.server.inspectImage(name);
    if (!info) throw new ImageLookupError(`No such image: ${name}`, 'missing');
    return inspect(info);
  });
  app.delete('/images/*', async (req) => {
    const name = decodeName((req.params as { '*': string })['*']);
    const removed = await daemon.server.removeImage(name, truthy(one(req.query as Record<string, string | string[] | undefined>, 'force')));
    return removed.map((n) => ({ Untagged: familiarString(parseReference(n)) }));
  });

  return app;
}

// --- the build stream -------------------------------------------------------------------------

/**
 * kiln's progress events as the classic builder's stream: "Step N/M : INSTRUCTION" when a step
 * starts, " ---> Using cache" for a cached one, a RUN's output as it comes, then the image ID and
 * the "Successfully ..." lines, or the error. With q, only the ID (aux, and a line of its own).
 */
class BuildStream {
  started = false;
  /** The vertices announced, by id: a failed RUN's command is read back from its name. */
  private readonly names = new Map<number, string>();
  private failedRun?: string;

  constructor(
    private readonly reply: FastifyReply,
    private readonly headers: Record<string, string>,
    private readonly quiet: boolean,
  ) {}

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    this.reply.raw.writeHead(200, { ...this.headers, 'content-type': 'application/json', 'cache-control': 'no-store' });
  }

  private write(obj: unknown): void {
    this.start();
    if (!this.reply.raw.destroyed) this.reply.raw.write(JSON.stringify(obj) + '\r\n');
  }

  private say(text: string): void {
    if (!this.quiet) this.write({ stream: text });
  }

  event(e: ProgressEvent | { type: 'build'; id: string }): void {
    switch (e.type) {
      case 'build':
        // The context is unpacked and the Dockerfile found: from here on, errors travel in the stream.
        this.start();
        return;
      case 'vertex': {
        const step = /^\[(?:\S+ )?(\d+)\/(\d+)\] ([\s\S]*)$/.exec(e.name);
        if (!step) return;
        if (e.status === 'started') {
          this.names.set(e.id, step[3]!);
          this.say(`Step ${step[1]}/${step[2]} : ${step[3]}\n`);
        } else if (e.status === 'cached') {
          if (!this.names.has(e.id)) this.say(`Step ${step[1]}/${step[2]} : ${step[3]}\n`);
          this.say(' ---> Using cache\n');
        } else if (e.status === 'error' && /^RUN\s/i.test(step[3]!)) {
          this.failedRun ??= step[3];
        }
        return;
      }
      case 'log':
        this.say(e.data);
        return;
      case 'message':
        if (e.level === 'warning') this.say(`[WARNING]: ${e.text}\n`);
        return;
    }
  }

  success(id: string, tags: string[]): void {
    this.write({ aux: { ID: id } });
    if (this.quiet) {
      this.write({ stream: `${id}\n` });
      return;
    }
    this.say(`Successfully built ${id.replace(/^sha256:/, '').slice(0, 12)}\n`);
    for (const t of tags) this.say(`Successfully tagged ${familiarString(parseReference(t))}\n`);
  }

  error(info: BuildErrorInfo): void {
    let message = info.message;
    if (info.exitCode !== undefined && this.failedRun !== undefined) {
      message = `The command '${dockerCommand(this.failedRun)}' returned a non-zero code: ${info.exitCode}`;
    }
    const detail: { message: string; code?: number } = { message };
    if (info.exitCode !== undefined) detail.code = info.exitCode;
    this.write({ errorDetail: detail, error: message });
  }

  end(): void {
    if (!this.started) this.start();
    this.reply.raw.end();
  }
}

/** How Docker quotes a failed RUN: "/bin/sh -c CMD" for the shell form, the words for the exec form. */
function dockerCommand(instruction: string): string {
  let rest = instruction.replace(/^RUN\s+/i, '');
  while (/^--\S+/.test(rest)) rest = rest.replace(/^--\S+\s*/, '');
  if (rest.startsWith('[')) {
    try {
      const argv = JSON.parse(rest) as unknown;
      if (Array.isArray(argv) && argv.every((a) => typeof a === 'string')) return argv.join(' ');
    } catch {
      // Not JSON: the shell form after all.
    }
  }
  return `/bin/sh -c ${rest}`;
}

// --- the context tar ---------------------------------------------------------------------------

/**
 * The Docker CLI sends a context whose Dockerfile lies outside it (`docker build -f ../x.Dockerfile
 * dir`) as a tar rewritten on the fly that stops right after the last entry's data: no padding, no
 * end-of-archive blocks. dockerd's reader (Go's archive/tar) takes that; kiln's extractor rightly
 * calls a tar without its end marker truncated. This completes such a tar, and only when it stops
 * exactly after an entry's data (its padding missing or not): a stream that stops inside a header
 * or inside an entry's data is passed on as it is, for the extractor to refuse. A gzip body is
 * passed on untouched. (An HTTP body cut short by a disconnect is an error, not an end: never padded.)
 * Sizes come from the ustar header (octal, or base-256); a pax "size" record (files over 8 GiB)
 * is not read, which at worst leaves such a tar as the extractor judges it.
 */
function terminateTar(body: NodeJS.ReadableStream): NodeJS.ReadableStream {
  let pos = 0; // bytes seen
  let next = 0; // offset of the next header
  let dataEnd = 0; // where the last entry's data ends, unpadded
  let header: Buffer[] = [];
  let headerLen = 0;
  let mode: 'unknown' | 'tar' | 'other' = 'unknown';
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (mode === 'unknown') mode = chunk[0] === 0x1f ? 'other' : 'tar';
      if (mode === 'tar') {
        let i = 0;
        while (i < chunk.length && mode === 'tar') {
          const abs = pos + i;
          if (abs < next) {
            i += Math.min(next - abs, chunk.length - i);
            continue;
          }
          const take = Math.min(512 - headerLen, chunk.length - i);
          header.push(chunk.subarray(i, i + take));
          headerLen += take;
          i += take;
          if (headerLen < 512) continue;
          const size = tarSize(Buffer.concat(header));
          header = [];
          headerLen = 0;
          if (size === undefined) mode = 'other';
          else {
            dataEnd = next + 512 + size;
            next = dataEnd + ((512 - (size % 512)) % 512);
          }
        }
      }
      pos += chunk.length;
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (mode === 'tar' && headerLen === 0 && pos >= dataEnd && pos <= next) cb(null, Buffer.alloc(next - pos + 1024));
      else cb();
    },
  });
  body.on('error', (err: Error) => t.destroy(err));
  return body.pipe(t);
}

/** The size field of a ustar header (octal, or GNU base-256); undefined when it is not one. */
function tarSize(h: Buffer): number | undefined {
  const field = h.subarray(124, 136);
  if (field[0]! & 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return Number.isSafeInteger(n) ? n : undefined;
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/g, '')
    .replace(/^[ ]+/, '');
  if (text === '') return h.every((b) => b === 0) ? 0 : undefined;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : undefined;
}

// --- build parameters ---------------------------------------------------------------------------

interface BuildParams {
  tags: string[];
  dockerfile: string;
  buildArgs: Record<string, string | undefined>;
  labels: Record<string, string>;
  target?: string;
  platform?: Platform;
  network: 'host' | 'none';
  noCache: boolean;
  pull: boolean;
  quiet: boolean;
}

function buildParams(q: Record<string, string | string[] | undefined>): BuildParams {
  if (one(q, 'remote'))
    throw new ApiError(501, 'remote build contexts (a Git URL or a tarball URL) are not supported by kiln: send the context as the request body');
  const version = one(q, 'version');
  if (version === '2')
    throw new ApiError(501, "kiln's Docker API serves the classic builder only (set DOCKER_BUILDKIT=0); for BuildKit-style builds use kiln build");
  const tags = many(q, 't').filter((t) => t !== '');
  for (const t of tags) {
    try {
      parseReference(t);
    } catch (err) {
      throw new ApiError(400, `invalid reference format: ${t}: ${(err as Error).message}`);
    }
  }
  const buildArgs = stringMap(jsonParam(q, 'buildargs'), 'buildargs', true) as Record<string, string | undefined>;
  const labels = stringMap(jsonParam(q, 'labels'), 'labels', false) as Record<string, string>;
  const dockerfile = one(q, 'dockerfile') || 'Dockerfile';
  const target = one(q, 'target') || undefined;
  let platform: Platform | undefined;
  const p = one(q, 'platform');
  if (p) {
    // dockerd's classic builder stores one image: it has no place for an index of several.
    if (p.includes(','))
      throw new ApiError(
        400,
        `invalid platform ${p}: the Docker API builds one platform (its image store holds no image index); use kiln build --platform for several`,
      );
    try {
      platform = parsePlatform(p, hostPlatform());
    } catch (err) {
      throw new ApiError(400, `invalid platform ${p}: ${(err as Error).message}`);
    }
  }
  const mode = one(q, 'networkmode') ?? '';
  let network: 'host' | 'none';
  if (mode === '' || mode === 'default' || mode === 'host' || mode === 'bridge') network = 'host';
  else if (mode === 'none') network = 'none';
  else throw new ApiError(400, `network mode ${JSON.stringify(mode)} is not supported by kiln (default, host or none)`);
  return {
    tags,
    dockerfile,
    buildArgs,
    labels,
    target,
    platform,
    network,
    noCache: truthy(one(q, 'nocache')),
    pull: truthy(one(q, 'pull')),
    quiet: truthy(one(q, 'q')),
  };
}

function one(q: Record<string, string | string[] | undefined>, key: string): string | undefined {
  const v = q[key];
  return Array.isArray(v) ? v[v.length - 1] : v;
}

function many(q: Record<string, string | string[] | undefined>, key: string): string[] {
  const v = q[key];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Docker's boolean query values: 1/true/True are true; 0, false and absent are false. */
function truthy(v: string | undefined): boolean {
  if (v === undefined || v === '') return false;
  const s = v.toLowerCase();
  if (s === '1' || s === 'true') return true;
  if (s === '0' || s === 'false') return false;
  throw new ApiError(400, `invalid boolean value ${JSON.stringify(v)}`);
}

function jsonParam(q: Record<string, string | string[] | undefined>, key: string): unknown {
  const v = one(q, key);
  if (v === undefined || v === '') return undefined;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    throw new ApiError(400, `invalid JSON in ${key}: ${v.slice(0, 100)}`);
  }
}

function stringMap(v: unknown, key: string, nullable: boolean): Record<string, string | undefined> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new ApiError(400, `${key} must be a JSON object of strings`);
  const out: Record<string, string | undefined> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (typeof val === 'string') out[k] = val;
    // A build arg given with no value (--build-arg NAME, unset in the environment) comes as null.
    else if (val === null && nullable) out[k] = undefined;
    else throw new ApiError(400, `${key}: the value of ${JSON.stringify(k)} must be a string`);
  }
  return out;
}

/** Docker's filter values: {"reference": {"app": true}} or the older ["app"]. */
function filterValues(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  if (typeof v === 'object')
    return Object.entries(v as Record<string, unknown>)
      .filter(([, on]) => on === true)
      .map(([k]) => k);
  throw new ApiError(400, 'invalid filter');
}

/** `docker images app`, `app:1.0`, `app*`: a familiar name or name:tag, with * as a wildcard. */
function referenceMatches(fullName: string, pattern: string): boolean {
  let ref;
  try {
    ref = parseReference(fullName);
  } catch {
    return false;
  }
  const familiar = familiarString(ref);
  const repo = familiar.replace(/:[^:/]*$/, '');
  const re = new RegExp(
    '^' +
      pattern
        .split('*')
        .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*') +
      '$',
  );
  return re.test(familiar) || re.test(repo) || re.test(fullName);
}

function labelMatches(labels: Record<string, string>, filter: string): boolean {
  const i = filter.indexOf('=');
  return i < 0 ? filter in labels : labels[filter.slice(0, i)] === filter.slice(i + 1);
}

// --- image shapes ---------------------------------------------------------------------------------

function familiarTags(info: StoredImageInfo): string[] {
  return info.names.flatMap((n) => {
    try {
      return [familiarString(parseReference(n))];
    } catch {
      return [];
    }
  });
}

function createdMs(info: StoredImageInfo): number {
  const t = Date.parse(info.config.created ?? info.records[0]?.created ?? '');
  return Number.isFinite(t) ? t : 0;
}

function imageSize(info: StoredImageInfo): number {
  return info.image.layers.reduce((n, l) => n + l.size, 0);
}

/** One entry of GET /images/json. */
function summary(info: StoredImageInfo) {
  const size = imageSize(info);
  return {
    Containers: -1,
    Created: Math.floor(createdMs(info) / 1000),
    Id: info.id,
    Labels: info.config.config?.Labels ?? null,
    ParentId: '',
    RepoDigests: [] as string[],
    RepoTags: familiarTags(info),
    SharedSize: -1,
    Size: size,
    VirtualSize: size,
  };
}

/** GET /images/{name}/json: `docker image inspect`'s shape. */
function inspect(info: StoredImageInfo) {
  const c = info.config.config ?? {};
  const size = imageSize(info);
  const config = {
    Hostname: '',
    Domainname: '',
    User: c.User ?? '',
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    ExposedPorts: c.ExposedPorts ?? null,
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: c.Env ?? null,
    Cmd: c.Cmd ?? null,
    Healthcheck: c.Healthcheck,
    ArgsEscaped: c.ArgsEscaped,
    Image: '',
    Volumes: c.Volumes ?? null,
    WorkingDir: c.WorkingDir ?? '',
    Entrypoint: c.Entrypoint ?? null,
    OnBuild: c.OnBuild ?? null,
    Labels: c.Labels ?? null,
    StopSignal: c.StopSignal,
    Shell: c.Shell,
  };
  return {
    Id: info.id,
    RepoTags: familiarTags(info),
    RepoDigests: [] as string[],
    Parent: '',
    Comment: '',
    Created: new Date(createdMs(info)).toISOString(),
    Container: '',
    ContainerConfig: { ...config, Cmd: null, Entrypoint: null, Env: null, Labels: null },
    DockerVersion: '',
    Author: info.config.author ?? '',
    Config: config,
    Architecture: info.config.architecture,
    Variant: info.config.variant,
    Os: info.config.os,
    Size: size,
    VirtualSize: size,
    GraphDriver: { Data: null, Name: 'kiln' },
    RootFS: { Type: 'layers', Layers: info.config.rootfs?.diff_ids ?? [] },
    Metadata: { LastTagTime: info.records[0]?.created ?? '0001-01-01T00:00:00Z' },
  };
}

async function sendArchive(reply: FastifyReply, archive: NodeJS.ReadableStream & { destroy(err?: Error): void }): Promise<void> {
  reply.hijack();
  reply.raw.writeHead(200, { 'api-version': DOCKER_API_VERSION, 'docker-experimental': 'false', ostype: 'linux', 'content-type': 'application/x-tar' });
  try {
    await pipeline(archive, reply.raw);
  } catch {
    // The archive failed (a missing blob) or the client went away: the tarball is cut short, and
    // the client sees a broken archive rather than a complete one.
    archive.destroy();
    reply.raw.destroy();
  }
}

// --- plumbing -----------------------------------------------------------------------------------

function decodeName(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new ApiError(400, 'invalid image name encoding');
  }
}

function compareVersions(a: readonly [number, number], b: string): number {
  const [major, minor] = b.split('.').map(Number) as [number, number];
  return a[0] !== major ? a[0] - major : a[1] - minor;
}
