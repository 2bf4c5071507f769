// The second KilnClient: a kiln daemon over HTTP (docs/api.md). A build syncs the context first
// (only what the build's stages can read, only what the daemon lacks), then streams the build's
// progress, and writes the outputs that have a destination here, on the client's side, as buildx does.

import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { listDigest, syncEntries, writeWantedTar } from '../context/sync.js';
import {
  BuildFailure,
  buildErrorInfo,
  clientOutputTargets,
  contextUsage,
  findLayoutImage,
  layoutBlobPaths,
  namedContextBindings,
  planBuild,
  walkContext,
  type BuildErrorInfo,
  type BuildRequest,
  type BuildResult,
  type NamedContextSpec,
  type ProgressEvent,
} from '../server/api.js';
import type { ContextEntry } from '../context/walk.js';
import type { FileStamp } from '../context/stamp.js';
import type { DiskUsage, ImageRecord, PruneOptions, PruneReport } from '../server/server.js';
import type { KilnClient } from './client.js';
import { stickyIndex } from './sticky.js';
import { humanSize } from './units.js';
import { call, DaemonError, daemonError, jsonLines, readAll, send, upgrade, type Endpoint } from './transport.js';

type ClientOutput = { index: number; type: 'file' | 'local' | 'load' };
type SshDial = { type: 'ssh-dial'; id: string; conn: string };
type StreamLine =
  | ProgressEvent
  | SshDial
  | { type: 'build'; id: string }
  | { type: 'result'; id: string; result: BuildResult; outputs: ClientOutput[] }
  | { type: 'error'; error: BuildErrorInfo };

/**
 * A client of one daemon, or of a fleet: with several endpoints, each build goes to the one its
 * context's identity picks (sticky.ts), and images/du/prune ask the first.
 */
export function remoteClient(target: Endpoint | readonly Endpoint[]): KilnClient {
  const fleet: readonly Endpoint[] = Array.isArray(target) ? target : [target as Endpoint];
  if (fleet.length === 0) throw new Error('no kiln daemon address');
  const ep = fleet[0]!;
  return {
    build: (req, onProgress = () => undefined, signal) => remoteBuild(fleet, req, onProgress, signal),
    listImages: async () => (await call<{ images: ImageRecord[] }>(ep, 'GET', '/v1/images')).images,
    loadImages: async () => {
      throw new Error(`kiln load is not available through a daemon (${ep.text}) yet: run it on the daemon's host with --root`);
    },
    runImage: async () => {
      throw new Error(`kiln run is not available through a daemon (${ep.text}) yet: run it on the daemon's host with --root`);
    },
    diskUsage: () => call<DiskUsage>(ep, 'GET', '/v1/du'),
    prune: (opts: PruneOptions) => call<PruneReport>(ep, 'POST', '/v1/prune', { all: opts.all, keepStorage: opts.keepStorage, unusedForMs: opts.unusedForMs }),
    close: async () => undefined,
  };
}

async function remoteBuild(fleet: readonly Endpoint[], req: BuildRequest, onProgress: (e: ProgressEvent) => void, signal?: AbortSignal): Promise<BuildResult> {
  // Translating needs no daemon: a dry run is answered here, as embedded mode would.
  // (Loaded only then: a client must start fast, and the server is most of kiln's code.)
  if (req.dryRun) return new (await import('../server/server.js')).BuildServer().build(req, onProgress, signal);
  if (req.context.type !== 'dir') throw new Error('a remote build reads its context from a directory on this host');
  let ep = fleet[0]!;
  if (fleet.length > 1) {
    // Sticky: the same context goes to the same daemon, where its kept copy and cache are.
    ep =
      fleet[
        stickyIndex(
          await contextIdentity(req.context.path),
          fleet.map((e) => e.text),
        )
      ]!;
    onProgress({ type: 'message', level: 'info', text: `building on ${ep.text} (chosen by the context's identity among ${fleet.length} daemons)` });
  }
  // Vertex numbers: the client's own first (the context, then each named directory it sends), then
  // the daemon's, shifted past them.
  const { session, graph } = await syncContext(ep, req, req.context.path, onProgress, signal);
  const sessions: Session[] = [session];
  const namedContexts: Record<string, NamedContextSpec> = {};
  let vertex = 1;
  try {
    for (const [name, spec] of Object.entries(req.namedContexts ?? {})) {
      const synced = await syncNamedContext(ep, name, spec, graph, ++vertex, onProgress, signal);
      if (synced.session) sessions.push(synced.session);
      namedContexts[name] = synced.spec;
    }
  } catch (err) {
    for (const s of sessions) await dropSession(ep, s);
    throw err;
  }
  const shift = vertex;
  const { path: _hostPath, ...dockerfile } = req.dockerfile;
  // The agents stay here: the daemon learns their ids and dials back through this client.
  const agents = new Map((req.ssh ?? []).map((s) => [s.id, s.socket]));
  const ssh = req.ssh?.map((s) => ({ id: s.id }));
  const body = {
    ...req,
    ssh,
    dockerfile,
    context: { type: 'synced', id: session.id, session: session.session, ephemeral: req.context.ephemeral },
    ...(req.namedContexts ? { namedContexts } : {}),
  };
  let res;
  try {
    res = await send(ep, 'POST', '/v1/builds', { body: Buffer.from(JSON.stringify(body)), contentType: 'application/json', signal });
  } catch (err) {
    for (const s of sessions) await dropSession(ep, s);
    throw err;
  }
  if ((res.statusCode ?? 500) >= 400) {
    for (const s of sessions) await dropSession(ep, s);
    throw daemonError(res.statusCode ?? 500, (await readAll(res)).toString('utf8'));
  }
  let outcome: StreamLine | undefined;
  let buildId = '';
  try {
    for await (const raw of jsonLines(res)) {
      const line = raw as StreamLine;
      if (line.type === 'build') buildId = line.id;
      else if (line.type === 'ssh-dial') dialBack(ep, buildId, line, agents.get(line.id));
      else if (line.type === 'vertex' || line.type === 'log') onProgress({ ...line, id: line.id + shift });
      else if (line.type === 'message') onProgress(line);
      else if (line.type === 'result' || line.type === 'error') outcome = line;
    }
  } catch (err) {
    if (signal?.aborted) throw new BuildFailure({ message: (signal.reason as Error)?.message ?? 'build cancelled', cancelled: true });
    throw new BuildFailure({ message: `lost the connection to the kiln daemon at ${ep.text} during the build: ${(err as Error).message}` });
  }
  if (!outcome)
    throw new BuildFailure({ message: `the kiln daemon at ${ep.text} closed the build's stream before its result`, cancelled: signal?.aborted || undefined });
  if (outcome.type === 'error') throw new BuildFailure(outcome.error);
  if (outcome.type !== 'result') throw new Error('unexpected reply from the kiln daemon');
  await writeOutputs(ep, outcome.id, req, outcome.outputs, signal);
  return outcome.result;
}

interface Session {
  id: string;
  session: string;
}

/** One agent connection a step made on the daemon: an upgraded request piped to the local agent. */
function dialBack(ep: Endpoint, buildId: string, dial: SshDial, socket: string | undefined): void {
  if (!socket) return; // not one of ours: the daemon's wait times out and the step sees a refused connection
  void (async () => {
    const local = net.connect(socket);
    local.on('error', () => local.destroy());
    let remote: Duplex;
    try {
      remote = await upgrade(ep, `/v1/builds/${buildId}/ssh/${dial.conn}`, 'kiln-ssh');
    } catch {
      local.destroy();
      return;
    }
    remote.on('error', () => remote.destroy());
    remote.on('close', () => local.destroy());
    local.on('close', () => remote.destroy());
    remote.pipe(local);
    local.pipe(remote);
  })();
}

/**
 * The context's identity on the daemon: this host and the context's real path, so the same
 * checkout keeps landing on the same kept copy (BuildKit's shared key does the same).
 */
async function contextIdentity(dir: string, named?: string): Promise<string> {
  const real = await fsp.realpath(dir);
  // A named context (--build-context NAME=DIR) is kept apart from the same directory as the main
  // context, or under another name: each sends its own selection of files.
  const what = named === undefined ? real : `${real}\0context:${named}`;
  return createHash('sha256').update(`${os.hostname()}\0${what}`).digest('hex').slice(0, 32);
}

type Graph = ReturnType<typeof planBuild>;

async function syncContext(
  ep: Endpoint,
  req: BuildRequest,
  dir: string,
  onProgress: (e: ProgressEvent) => void,
  signal?: AbortSignal,
): Promise<{ session: Session; graph: Graph }> {
  const started = Date.now();
  const name = '[internal] load build context';
  onProgress({ type: 'vertex', id: 1, name, status: 'started' });
  try {
    const fileStamps = new Map<string, FileStamp>();
    const all = await walkContext(dir, { fileStamps, ...(req.dockerfile.path ? { dockerfile: req.dockerfile.path } : {}) });
    let graph;
    try {
      graph = planBuild({
        dockerfile: req.dockerfile,
        buildArgs: req.buildArgs,
        target: req.target,
        targetPlatform: req.platform,
        namedContexts: namedContextBindings(req.namedContexts),
      });
    } catch (err) {
      throw new BuildFailure(buildErrorInfo(err));
    }
    // Only what the build's stages can read travels.
    const session = await upload(ep, dir, await contextIdentity(dir), contextUsage(graph, all), 1, started, onProgress, signal, fileStamps);
    onProgress({ type: 'vertex', id: 1, name, status: 'done', durationMs: Date.now() - started });
    return { session, graph };
  } catch (err) {
    onProgress({ type: 'vertex', id: 1, name, status: 'error', durationMs: Date.now() - started, error: (err as Error).message });
    throw err;
  }
}

/**
 * A named context the daemon cannot reach by itself: a directory (its own .dockerignore, only what
 * the build reads of it) or an OCI layout (only the blobs of the image it names) is synced like the
 * main context and kept between builds; an image reference or a URL goes as it is.
 */
async function syncNamedContext(
  ep: Endpoint,
  name: string,
  spec: NamedContextSpec,
  graph: Graph,
  vertex: number,
  onProgress: (e: ProgressEvent) => void,
  signal?: AbortSignal,
): Promise<{ spec: NamedContextSpec; session?: Session }> {
  if (spec.type !== 'dir' && !(spec.type === 'oci-layout' && spec.layout.type === 'dir')) return { spec };
  const started = Date.now();
  const title = `[context ${name}] load from client`;
  onProgress({ type: 'vertex', id: vertex, name: title, status: 'started' });
  try {
    let result: { spec: NamedContextSpec; session: Session };
    if (spec.type === 'dir') {
      const fileStamps = new Map<string, FileStamp>();
      const all = await walkContext(spec.path, { fileStamps });
      const session = await upload(
        ep,
        spec.path,
        await contextIdentity(spec.path, name),
        contextUsage(graph, all, name),
        vertex,
        started,
        onProgress,
        signal,
        fileStamps,
      );
      result = { spec: { type: 'synced', id: session.id, session: session.session }, session };
    } else {
      const dir = (spec as { layout: { path: string } }).layout.path;
      const oci = spec as Extract<NamedContextSpec, { type: 'oci-layout' }>;
      const desc = await findLayoutImage(dir, { tag: oci.tag, digest: oci.digest }, `--build-context ${name}=oci-layout://${dir}`);
      const wanted = new Set(['index.json', 'oci-layout', 'blobs', 'blobs/sha256', ...(await layoutBlobPaths(dir, desc))]);
      const all = (await walkContext(dir, { excludes: [] })).filter((e: ContextEntry) => wanted.has(e.path));
      const session = await upload(ep, dir, await contextIdentity(dir, name), all, vertex, started, onProgress, signal);
      // The image is pinned by digest here, where the layout was read: the daemon finds that one.
      result = {
        spec: { type: 'oci-layout', layout: { type: 'synced', id: session.id, session: session.session }, tag: oci.tag, digest: desc.digest },
        session,
      };
    }
    onProgress({ type: 'vertex', id: vertex, name: title, status: 'done', durationMs: Date.now() - started });
    return result;
  } catch (err) {
    onProgress({ type: 'vertex', id: vertex, name: title, status: 'error', durationMs: Date.now() - started, error: (err as Error).message });
    throw err;
  }
}

/** Sends `used` (entries of `dir`) to the daemon's kept copy `id`: only what it lacks travels. */
async function upload(
  ep: Endpoint,
  dir: string,
  id: string,
  used: ContextEntry[],
  vertex: number,
  started: number,
  onProgress: (e: ProgressEvent) => void,
  signal?: AbortSignal,
  fileStamps?: Map<string, FileStamp>,
): Promise<Session> {
  const entries = await syncEntries(dir, used, fileStamps);
  type Plan = { session: string; wanted: string[]; bytes: number; received?: true };
  // The list's digest first: a daemon whose kept copy already equals the list says so at once
  // (nothing to compare or send; the warm case in one small request). Otherwise the list follows.
  // A daemon from before digests refuses this body (400): it gets the list, as it always did.
  const quick = await call<Plan | { listWanted: true }>(ep, 'POST', `/v1/contexts/${id}/sessions`, { digest: listDigest(entries) }, signal).catch(
    (err: unknown) => {
      if (err instanceof DaemonError && err.status === 400) return { listWanted: true as const };
      throw err;
    },
  );
  const plan =
    'listWanted' in quick
      ? await withUploadSlot(
          () => call<Plan>(ep, 'POST', `/v1/contexts/${id}/sessions`, { entries }, signal),
          () => onProgress({ type: 'log', id: vertex, stream: 'stdout', atMs: Date.now() - started, data: 'waiting for an upload slot on the daemon\n' }),
          signal,
        )
      : quick;
  const session = { id, session: plan.session };
  try {
    let got = { files: 0, bytes: 0 };
    if (!plan.received) {
      const body = new PassThrough();
      const upload = send(ep, 'PUT', `/v1/contexts/${id}/sessions/${plan.session}`, { body, contentType: 'application/x-tar', signal });
      const [sent, res] = await Promise.all([writeWantedTar(dir, entries, plan.wanted, body), upload]);
      got = await (async () => {
        const text = (await readAll(res)).toString('utf8');
        if ((res.statusCode ?? 500) >= 400) throw daemonError(res.statusCode ?? 500, text);
        return sent;
      })();
    }
    onProgress({
      type: 'log',
      id: vertex,
      stream: 'stdout',
      atMs: Date.now() - started,
      data: `transferring context: ${got.files} files, ${humanSize(got.bytes)}\n`,
    });
  } catch (err) {
    await dropSession(ep, session);
    throw err;
  }
  return session;
}

/** A daemon at its limit of uploads answers 429: wait and ask again, as long as the build is wanted. */
async function withUploadSlot<T>(attempt: () => Promise<T>, onWait: () => void, signal?: AbortSignal): Promise<T> {
  for (let delay = 100, told = false; ; delay = Math.min(delay * 2, 2000)) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof DaemonError && err.status === 429)) throw err;
      if (!told) onWait();
      told = true;
    }
    await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
    if (signal?.aborted) throw signal.reason;
  }
}

async function dropSession(ep: Endpoint, s: Session): Promise<void> {
  await send(ep, 'DELETE', `/v1/contexts/${s.id}/sessions/${s.session}`)
    .then((res) => readAll(res))
    .catch(() => undefined);
}

/** Writes each output with a destination here: a file as is, a directory export unpacked, --load into Docker. */
async function writeOutputs(ep: Endpoint, buildId: string, req: BuildRequest, outputs: ClientOutput[], signal?: AbortSignal): Promise<void> {
  const targets = clientOutputTargets(req.outputs);
  for (const o of outputs) {
    const target = targets[o.index]?.target;
    if (!target) throw new Error(`the kiln daemon sent output ${o.index}, which the request does not have`);
    const res = await send(ep, 'GET', `/v1/builds/${buildId}/outputs/${o.index}`, { signal });
    if ((res.statusCode ?? 500) >= 400) throw daemonError(res.statusCode ?? 500, (await readAll(res)).toString('utf8'));
    if (target.kind === 'load') {
      await (await import('../server/outputs.js')).loadIntoDocker(res);
      continue;
    }
    if (target.kind === 'file') {
      await writeAtomic(target.dest, res);
      continue;
    }
    // A directory export comes as a tarball: unpack it at dest with the same extractor ADD uses
    // (nothing lands outside dest, owners kept).
    const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-output-'));
    try {
      const file = path.join(tmp, 'rootfs.tar');
      await pipeline(res, createWriteStream(file));
      await fsp.mkdir(target.dest, { recursive: true });
      await (await import('../server/outputs.js')).extractArchive(file, 'none', target.dest, '/');
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }
}

async function writeAtomic(dest: string, data: NodeJS.ReadableStream): Promise<void> {
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.kiln-${process.pid}`);
  try {
    await pipeline(data, createWriteStream(tmp));
    await fsp.rename(tmp, dest);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
