// The daemon's state behind its HTTP door: one BuildServer on one root, the contexts clients synced,
// the line of builds waiting for a slot, their history, and the outputs waiting for their clients.
// It speaks in plain data and errors with an HTTP status (ApiError); http-api.ts only translates.

import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { directoryContext, listedContext, type BuildErrorInfo, type ContextSource, type ProgressEvent, type SshAgents } from '../solver/index.js';
import { extractContextTar, readFileInside } from '../context/index.js';
import { BuildFailure, clientOutputTargets, ENTITLEMENTS, type BuildRequest, type BuildResult, type OutputSpec } from './api.js';
import { imageOptionsProblem } from './image-outputs.js';
import type { KilnConfig } from './config.js';
import { SshDials, type SshDialEvent } from './ssh-dial.js';
import { KeptContexts, type ContextLease } from './contexts.js';
import { BuildHistory, type BuildRecord } from './history.js';
import { FairScheduler } from './scheduler.js';
import { BuildServer, summarize, type CacheRecord, type DiskUsage, type PruneOptions, type PruneReport } from './server.js';
import type { SyncEntry } from '../context/sync.js';

/** A request the daemon refuses, with the HTTP status that says why. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** One line of the daemon's log: a request or a build. */
export type LogLine = Record<string, unknown> & { msg: string };
export type DaemonLog = (line: LogLine) => void;

/** An output the client writes on its side: the daemon made it into a file, the client fetches it. */
export interface ClientOutput {
  index: number;
  /** What the client does with the bytes: write them to `dest`, unpack them there, or docker-load them. */
  type: 'file' | 'local' | 'load';
}

/** What the daemon sends in the last line of a build's stream. */
export type BuildOutcome = { type: 'result'; id: string; result: BuildResult; outputs: ClientOutput[] } | { type: 'error'; id: string; error: BuildErrorInfo };

/** A context upload between its file list and the build that reads it. */
interface UploadSession {
  id: string;
  contextId: string;
  lease: ContextLease;
  received: boolean;
  claimed: boolean;
  /** It has files to send and holds one of the upload slots until they came (or it ends). */
  uploadSlot: boolean;
  /** Its files are being received right now: a second upload to it is refused, not raced. */
  receiving: boolean;
  expiry?: NodeJS.Timeout;
}

/**
 * An upload session not claimed by a build within this long is dropped (its lease released). A
 * client goes from plan to upload to build in milliseconds; one killed in between must not keep
 * the next build of the same context waiting long.
 */
const SESSION_IDLE_MS = 30_000;
/** Copies of one context kept for builds of it that run at the same time. */
const SPARE_CONTEXT_COPIES = 3;
/** A finished build's outputs wait this long for their client before they are removed. */
const OUTPUT_KEEP_MS = 600_000;

export interface DaemonOptions {
  root: string;
  config: KilnConfig;
  log: DaemonLog;
}

export class Daemon {
  readonly server: BuildServer;
  readonly contexts: KeptContexts;
  readonly history = new BuildHistory();
  private readonly scheduler: FairScheduler;
  private readonly sessions = new Map<string, UploadSession>();
  private readonly builds = new Map<string, { abort: AbortController; done: Promise<unknown> }>();
  /** Steps' SSH agent connections waiting for their client to dial back. */
  readonly sshDials = new SshDials();
  private readonly outputsDir: string;
  /** Contexts that came as a tar in a build request, each for the length of its build. */
  private readonly tarContextsDir: string;
  private uploads = 0;
  private draining = false;
  private sweeper?: NodeJS.Timeout;

  private constructor(private readonly opts: DaemonOptions) {
    this.server = new BuildServer({ root: opts.root, config: opts.config });
    this.contexts = new KeptContexts(path.join(opts.root, 'contexts'), { maxContextBytes: opts.config.daemon.maxContextBytes });
    this.scheduler = new FairScheduler(opts.config.daemon.maxConcurrentBuilds);
    this.outputsDir = path.join(opts.root, 'daemon', 'outputs');
    this.tarContextsDir = path.join(opts.root, 'daemon', 'tar-contexts');
  }

  /**
   * Takes the root (refusing, not waiting, when another process holds it), reaps what a killed
   * daemon left (containers, mounts, half-received contexts, undelivered outputs) and is ready.
   */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const d = new Daemon(opts);
    await d.server.start();
    try {
      await d.contexts.cleanup();
      for (const dir of [d.outputsDir, d.tarContextsDir]) {
        await fsp.rm(dir, { recursive: true, force: true });
        await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
      }
    } catch (err) {
      await d.server.close();
      throw err;
    }
    d.sweeper = setInterval(() => void d.sweepOutputs(), 60_000).unref();
    return d;
  }

  get limits(): KilnConfig['daemon'] {
    return this.opts.config.daemon;
  }

  get accepting(): boolean {
    return !this.draining;
  }

  // --- context uploads ------------------------------------------------------------------------

  /**
   * Step 1 of an upload: the client's file list. Leases the kept context (a second upload of the
   * same identity waits until the first build using it is done) and says which files to send.
   */
  async planUpload(
    contextId: string,
    entries: unknown,
    signal: AbortSignal,
    digest?: unknown,
  ): Promise<{ session: string; wanted: string[]; bytes: number; received?: true } | { listWanted: true }> {
    this.refuseWhileDraining();
    const digestOnly = entries === undefined && digest !== undefined;
    if (digestOnly && typeof digest !== 'string') throw new ApiError(400, 'the body\'s "digest" must be a string: the digest of the context\'s file list');
    if (!digestOnly && !Array.isArray(entries)) throw new ApiError(400, 'the body must be {"entries": [...]}: the context\'s file list');
    let lease: ContextLease;
    try {
      lease = await this.leaseContext(contextId, signal);
    } catch (err) {
      throw signal.aborted ? err : new ApiError(400, (err as Error).message);
    }
    if (digestOnly) {
      // The warm case in one request: the kept tree is known to equal that list, so there is
      // nothing to compare, send or apply, and the session is ready for its build.
      if (!(await lease.reuse(digest as string))) {
        await lease.release();
        return { listWanted: true };
      }
      const session: UploadSession = { id: randomId(), contextId, lease, received: true, claimed: false, uploadSlot: false, receiving: false };
      this.sessions.set(session.id, session);
      this.expireLater(session);
      return { session: session.id, wanted: [], bytes: 0, received: true };
    }
    let plan;
    try {
      plan = await lease.plan(entries as SyncEntry[]);
    } catch (err) {
      await lease.release();
      throw new ApiError(400, (err as Error).message);
    }
    // The upload limit is taken here, on the small request, so a refusal never cuts a tar stream
    // short: the client waits and asks again (429), its files not yet sent.
    const uploadSlot = plan.wanted.length > 0;
    if (uploadSlot && this.uploads >= this.limits.maxConcurrentUploads) {
      await lease.release();
      throw new ApiError(429, `too many context uploads at once (the limit is ${this.limits.maxConcurrentUploads}); try again shortly`);
    }
    if (uploadSlot) this.uploads++;
    // Even with no file wanted the receive step follows: it applies the list (removals, links, modes).
    const session: UploadSession = { id: randomId(), contextId, lease, received: false, claimed: false, uploadSlot, receiving: false };
    this.sessions.set(session.id, session);
    this.expireLater(session);
    return { session: session.id, wanted: plan.wanted, bytes: plan.bytes };
  }

  /**
   * The kept copy of a context for one build. Two builds of the same checkout at once (a CI matrix)
   * must not wait for each other: when the context's copy is in use, a spare copy of it is taken
   * (`ID.1`, `ID.2`, ...; a first use of one is a full upload), and only when those are busy too
   * does the build wait for the first, as BuildKit falls back to a new ref for a shared key in use.
   */
  private async leaseContext(contextId: string, signal: AbortSignal): Promise<ContextLease> {
    const spares = Array.from({ length: SPARE_CONTEXT_COPIES }, (_, i) => `${contextId}.${i + 1}`).filter((id) => id.length <= 128);
    for (const candidate of [contextId, ...spares]) {
      const lease = await this.contexts.tryLease(candidate);
      if (lease) return lease;
    }
    return this.contexts.lease(contextId, signal);
  }

  /** Step 2: the files the plan asked for, as a tar stream. */
  async receiveUpload(contextId: string, sessionId: string, body: NodeJS.ReadableStream): Promise<{ files: number; bytes: number }> {
    const session = this.session(contextId, sessionId);
    if (session.claimed || session.received || session.receiving)
      throw new ApiError(409, `upload session ${sessionId} has already received its files, or is receiving them`);
    session.receiving = true;
    clearTimeout(session.expiry);
    try {
      const got = await session.lease.receive(body);
      session.received = true;
      return got;
    } catch (err) {
      // A broken upload leaves the kept context to be sent whole next time; this session is over.
      await this.dropSession(session.id);
      throw new ApiError(400, `context upload failed: ${(err as Error).message}`);
    } finally {
      session.receiving = false;
      this.freeUploadSlot(session);
      if (this.sessions.has(session.id)) this.expireLater(session);
    }
  }

  private freeUploadSlot(session: UploadSession): void {
    if (!session.uploadSlot) return;
    session.uploadSlot = false;
    this.uploads--;
  }

  async dropSession(sessionId: string): Promise<void> {
    const session = this.sessions.get(sessionId);
    if (!session) return;
    this.sessions.delete(sessionId);
    clearTimeout(session.expiry);
    this.freeUploadSlot(session);
    await session.lease.release();
  }

  private session(contextId: string, sessionId: string): UploadSession {
    const session = this.sessions.get(sessionId);
    if (!session || session.contextId !== contextId)
      throw new ApiError(404, `no upload session ${sessionId} for context ${contextId} (expired or never started)`);
    return session;
  }

  private expireLater(session: UploadSession): void {
    clearTimeout(session.expiry);
    session.expiry = setTimeout(() => void this.dropSession(session.id), SESSION_IDLE_MS).unref();
  }

  // --- builds ---------------------------------------------------------------------------------

  /**
   * Runs a build for a client: waits for a slot (fairly among clients), builds from the synced
   * context, and leaves the outputs the client writes on its side as files to fetch. `signal` is
   * the client's connection: a disconnect cancels the build.
   */
  async build(
    raw: unknown,
    client: string,
    sink: (e: ProgressEvent | { type: 'build'; id: string } | SshDialEvent) => void,
    signal: AbortSignal,
  ): Promise<BuildOutcome> {
    this.refuseWhileDraining();
    const req = checkRequest(raw);
    if (req.context.type !== 'synced')
      throw new ApiError(400, 'a daemon builds only from a context the client synced ({"type":"synced"}), never from a path on its host');
    // The main context's upload and each named context's (--build-context NAME=DIR, an OCI layout).
    const named: [string, { id: string; session: string }][] = [];
    for (const [name, spec] of Object.entries(req.namedContexts ?? {})) {
      if (spec.type === 'synced') named.push([name, spec]);
      else if (spec.type === 'oci-layout' && spec.layout.type === 'synced') named.push([name, spec.layout]);
    }
    const claimed: UploadSession[] = [];
    let session!: UploadSession;
    try {
      for (const [name, ref] of [['', req.context] as const, ...named]) {
        const s = this.session(ref.id, ref.session);
        if (claimed.includes(s)) throw new ApiError(400, `invalid build request: upload session ${s.id} is named twice`);
        if (s.claimed) throw new ApiError(409, `upload session ${s.id} is already used by a build`);
        if (!s.received) throw new ApiError(409, `upload session ${s.id} has not received its files yet`);
        s.claimed = true;
        clearTimeout(s.expiry);
        claimed.push(s);
        if (name === '') session = s;
      }
    } catch (err) {
      // What was claimed is released: the build never started.
      for (const s of claimed) await this.dropSession(s.id);
      throw err;
    }
    // Each tree equals the list the client sent: its entries are known without walking it.
    const synced = (s: UploadSession) => listedContext(s.lease.dir, `synced:${s.contextId}`, s.lease.entries(), s.lease.token());
    const namedContexts = Object.fromEntries(named.map(([name], i) => [name, synced(claimed[i + 1]!)]));

    try {
      return await this.admit(req, client, sink, signal, () => synced(session), namedContexts);
    } finally {
      for (const s of claimed) await this.dropSession(s.id);
      // A one-off context (a tar from stdin) would only fill the disk: no later upload reuses it.
      if (req.context.ephemeral) await this.contexts.remove(session.lease.id).catch(() => undefined);
      await this.collectContexts();
    }
  }

  /**
   * A build whose context comes whole as a tar in the request (the Docker Engine API's POST
   * /build): unpacked into a private directory by the safe extractor, the Dockerfile read from
   * inside it (`req.dockerfile.name`, a path in the context), removed when the build is done.
   */
  async buildFromTar(
    body: NodeJS.ReadableStream,
    req: Omit<BuildRequest, 'context' | 'dockerfile'> & { dockerfile: { name: string } },
    client: string,
    sink: (e: ProgressEvent | { type: 'build'; id: string }) => void,
    signal: AbortSignal,
  ): Promise<BuildOutcome> {
    this.refuseWhileDraining();
    const dir = path.join(this.tarContextsDir, randomId());
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      try {
        await extractContextTar(body, dir, { maxBytes: this.limits.maxContextBytes });
      } catch (err) {
        throw new ApiError(400, `unable to prepare context: ${(err as Error).message}`);
      }
      let dockerfile;
      try {
        dockerfile = await readFileInside(dir, req.dockerfile.name, 'Dockerfile');
      } catch (err) {
        throw new ApiError(400, (err as Error).message);
      }
      const full: BuildRequest = { ...req, context: { type: 'dir', path: dir }, dockerfile: { name: req.dockerfile.name, text: dockerfile.text } };
      // Docker's API has no way back to the client's SSH agent: never dialled here.
      const { ssh: _ssh, ...noSsh } = full;
      return await this.admit(
        noSsh,
        client,
        (e) => e.type !== 'ssh-dial' && sink(e),
        signal,
        () => directoryContext(dir, { dockerfile: dockerfile.path, identity: 'tar' }),
      );
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }

  /** A checked request from here on: a place in line, the build, its history and its log line. */
  private async admit(
    req: BuildRequest,
    client: string,
    sink: (e: ProgressEvent | { type: 'build'; id: string } | SshDialEvent) => void,
    signal: AbortSignal,
    context: () => ContextSource,
    namedContexts?: Record<string, ContextSource>,
  ): Promise<BuildOutcome> {
    // The daemon's default cache (daemon.json `cache-from`, `cache-to`) for a build that names none,
    // import and export each on its own: a request's own list is kept as it is.
    const cache = this.opts.config.cache;
    if (cache?.from.length && !req.cacheFrom?.length) req = { ...req, cacheFrom: cache.from };
    if (cache?.to.length && !req.cacheTo?.length) req = { ...req, cacheTo: cache.to };
    const id = randomId();
    const record = this.history.add({ id, client, dockerfile: req.dockerfile.name, target: req.target, names: outputNames(req.outputs) });
    sink({ type: 'build', id });
    const abort = new AbortController();
    const onDisconnect = () => abort.abort(new Error('build cancelled: the client disconnected'));
    signal.addEventListener('abort', onDisconnect, { once: true });
    if (signal.aborted) onDisconnect();
    const timeout =
      this.limits.buildTimeoutMs > 0
        ? setTimeout(
            () => abort.abort(new Error(`build cancelled: it ran longer than the daemon's build-timeout (${this.limits.buildTimeoutMs / 1000} s)`)),
            this.limits.buildTimeoutMs,
          )
        : undefined;
    // The client's agents: each connection a step makes is dialled back over this build's stream.
    const sshAgents = req.ssh?.length
      ? this.sshDials.agentsFor(
          id,
          req.ssh.map((s) => s.id),
          sink,
        )
      : undefined;
    const done = this.runBuild(req, record, context, client, sink, abort, sshAgents, namedContexts);
    this.builds.set(id, { abort, done: done.catch(() => undefined) });
    try {
      return await done;
    } finally {
      clearTimeout(timeout);
      signal.removeEventListener('abort', onDisconnect);
      this.builds.delete(id);
    }
  }

  private async runBuild(
    req: BuildRequest,
    record: BuildRecord,
    context: () => ContextSource,
    client: string,
    sink: (e: ProgressEvent) => void,
    abort: AbortController,
    sshAgents?: SshAgents,
    namedContexts?: Record<string, ContextSource>,
  ): Promise<BuildOutcome> {
    const dir = path.join(this.outputsDir, record.id);
    let slot;
    try {
      slot = await this.scheduler.acquire(client, abort.signal, (ahead) =>
        sink({ type: 'message', level: 'info', text: `waiting for a build slot: ${ahead} build(s) ahead` }),
      );
    } catch (err) {
      const error = { message: (err as Error).message, cancelled: true };
      this.finished(record, { error });
      return { type: 'error', id: record.id, error };
    }
    this.history.started(record);
    try {
      const { outputs, client: clientOutputs } = await this.outputsFor(req.outputs, dir);
      const result = await this.server.build({ ...req, outputs }, (e) => (this.history.event(record, e), sink(e)), abort.signal, {
        context: context(),
        sshAgents,
        namedContexts,
      });
      this.finished(record, { imageId: result.image?.id });
      if (clientOutputs.length === 0) await fsp.rm(dir, { recursive: true, force: true });
      else setTimeout(() => void fsp.rm(dir, { recursive: true, force: true }), OUTPUT_KEEP_MS).unref();
      return { type: 'result', id: record.id, result, outputs: clientOutputs };
    } catch (err) {
      await fsp.rm(dir, { recursive: true, force: true });
      let error: BuildErrorInfo = err instanceof BuildFailure ? err.info : { message: (err as Error).message };
      // Cancelled from here (disconnect, timeout, shutdown, the API): say why, not just "cancelled".
      if (abort.signal.aborted) error = { ...error, message: (abort.signal.reason as Error)?.message ?? error.message, cancelled: true };
      this.finished(record, { error });
      return { type: 'error', id: record.id, error };
    } finally {
      slot.release();
    }
  }

  private finished(record: BuildRecord, outcome: { imageId?: string; error?: BuildErrorInfo }): void {
    this.history.finished(record, outcome);
    // One line per build, when it ends: what ran, for whom, how it ended.
    this.opts.log({
      msg: 'build',
      build: record.id,
      client: record.client,
      dockerfile: record.dockerfile,
      target: record.target,
      state: record.state,
      queuedMs: record.startedAt ? Date.parse(record.startedAt) - Date.parse(record.createdAt) : undefined,
      durationMs: record.durationMs,
      steps: record.totalSteps,
      cached: record.cachedSteps,
      ...(record.error ? { error: record.error.message } : {}),
    });
  }

  /**
   * Outputs with a destination are the client's: here each becomes a file under the build's output
   * directory (a directory export becomes a tarball, --load a docker archive) for the client to
   * fetch, numbered as clientOutputTargets numbers them. A `dest` in the request is never used as a
   * path on this host.
   */
  private async outputsFor(outputs: OutputSpec[], dir: string): Promise<{ outputs: OutputSpec[]; client: ClientOutput[] }> {
    const local: OutputSpec[] = outputs.filter((o) => o.type === 'image');
    const client = clientOutputTargets(outputs).map(({ target, output }, index) => {
      const dest = path.join(dir, String(index));
      if (output.type === 'docker') local.push({ ...output, dest, load: false });
      else if (output.type === 'local') local.push({ type: 'tar', dest });
      else if (output.type !== 'image') local.push({ ...output, dest });
      return { index, type: target.kind === 'file' ? 'file' : target.kind } satisfies ClientOutput;
    });
    if (client.length > 0) await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return { outputs: local, client };
  }

  /** The file of a finished build's output, for its client to fetch once. */
  async outputFile(buildId: string, index: string): Promise<{ file: string; size: number; remove: () => Promise<void> }> {
    if (!/^[0-9a-f]{20}$/.test(buildId) || !/^\d{1,4}$/.test(index)) throw new ApiError(404, `no output ${index} of build ${buildId}`);
    const file = path.join(this.outputsDir, buildId, index);
    const st = await fsp.lstat(file).catch(() => undefined);
    if (!st?.isFile()) throw new ApiError(404, `no output ${index} of build ${buildId} (never made, already fetched or expired)`);
    return { file, size: st.size, remove: () => fsp.rm(file, { force: true }) };
  }

  private async sweepOutputs(): Promise<void> {
    const now = Date.now();
    for (const name of await fsp.readdir(this.outputsDir).catch(() => [] as string[])) {
      if (this.builds.has(name)) continue;
      const st = await fsp.stat(path.join(this.outputsDir, name)).catch(() => undefined);
      if (st && now - st.mtimeMs > OUTPUT_KEEP_MS) await fsp.rm(path.join(this.outputsDir, name), { recursive: true, force: true });
    }
  }

  // --- disk usage ----------------------------------------------------------------------------

  /** The root's records, and the kept contexts as BuildKit shows them (`source.local`). */
  async diskUsage(): Promise<DiskUsage> {
    const du = await this.server.diskUsage();
    const kept = (await this.contexts.list()).map(contextRecord);
    const records = [...du.records, ...kept];
    return { records, totals: summarize(records), cacheSize: du.cacheSize + kept.reduce((n, r) => n + r.size, 0) };
  }

  /**
   * Prunes the root's cache, and kept contexts not in use: all of them (or those unused for the
   * filter's time); with keepStorage, the least recently used until the total fits.
   */
  async prune(opts: PruneOptions): Promise<PruneReport> {
    const report = await this.server.prune(opts);
    const contexts = await this.pruneContexts(opts);
    return { deleted: [...report.deleted, ...contexts.deleted], reclaimed: report.reclaimed + contexts.reclaimed };
  }

  /** Kept contexts not in use, least recently used first, as `prune` takes them. */
  private async pruneContexts(opts: PruneOptions): Promise<PruneReport> {
    const report: PruneReport = { deleted: [], reclaimed: 0 };
    const now = (opts.now ?? new Date()).getTime();
    const kept = (await this.contexts.list()).filter((c) => !c.inUse && (opts.unusedForMs === undefined || now - c.lastUsed.getTime() >= opts.unusedForMs));
    kept.sort((a, b) => a.lastUsed.getTime() - b.lastUsed.getTime());
    let over = Infinity;
    if (opts.keepStorage) over = (await this.diskUsage()).cacheSize - opts.keepStorage;
    for (const c of kept) {
      if (over <= 0) break;
      if (!(await this.contexts.remove(c.id))) continue;
      const r = contextRecord(c);
      report.deleted.push(r);
      report.reclaimed += r.size;
      over -= r.size;
    }
    return report;
  }

  /**
   * The automatic policy (daemon.json gc-keep-storage) for kept contexts: the server prunes its own
   * cache after each build; this takes least recently used contexts while the total is over.
   */
  private async collectContexts(): Promise<void> {
    const policy = this.opts.config.gc;
    if (!policy?.enabled) return;
    try {
      await this.pruneContexts({ keepStorage: policy.keepStorage });
    } catch (err) {
      this.opts.log({ msg: 'build cache garbage collection of kept contexts failed', error: (err as Error).message });
    }
  }

  cancel(id: string): boolean {
    const b = this.builds.get(id);
    if (!b) return false;
    b.abort.abort(new Error('build cancelled through the API'));
    return true;
  }

  private refuseWhileDraining(): void {
    if (this.draining) throw new ApiError(503, 'the kiln daemon is shutting down and takes no new work');
  }

  // --- lifecycle ------------------------------------------------------------------------------

  /**
   * SIGTERM: take no new work, let running builds finish for `graceMs`, cancel what still runs,
   * wait until it has unwound (containers gone, mounts released) and release the root.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.draining = true;
    clearInterval(this.sweeper);
    const running = () => Promise.all([...this.builds.values()].map((b) => b.done));
    if (this.builds.size > 0) {
      this.opts.log({ msg: 'shutting down: waiting for running builds', builds: this.builds.size, graceMs });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([running(), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const b of this.builds.values()) b.abort.abort(new Error('build cancelled: the kiln daemon is shutting down'));
      await running();
    }
    for (const id of [...this.sessions.keys()]) await this.dropSession(id);
    await this.server.close();
  }
}

function contextRecord(c: { id: string; size: number; lastUsed: Date; inUse: boolean }): CacheRecord {
  return {
    id: `context-${c.id}`,
    type: 'source.local',
    description: `local source for context ${c.id}`,
    size: c.size,
    parents: [],
    shared: false,
    inUse: c.inUse,
    reclaimable: true,
    mutable: false,
    lastUsedAt: c.lastUsed.toISOString(),
    usageCount: 1,
  };
}

function randomId(): string {
  return randomBytes(10).toString('hex');
}

function outputNames(outputs: OutputSpec[]): string[] {
  return [...new Set(outputs.flatMap((o) => ('names' in o ? o.names : [])))];
}

/**
 * The shape of a build request from the network: the fields the server reads, with their types.
 * Deeper checks (platforms, references, flags) happen where they are used and fail the build.
 */
function checkRequest(raw: unknown): BuildRequest {
  const bad = (what: string) => new ApiError(400, `invalid build request: ${what}`);
  if (!isObject(raw)) throw bad('the body must be a JSON object');
  const r = raw as Record<string, unknown>;
  const ctx = r.context;
  if (!isObject(ctx) || typeof ctx.type !== 'string') throw bad('"context" must be an object with a "type"');
  if (ctx.type === 'synced' && (typeof ctx.id !== 'string' || typeof ctx.session !== 'string'))
    throw bad('a synced "context" needs "id" and "session" strings');
  if (r.namedContexts !== undefined) checkNamedContexts(r.namedContexts, bad);
  const df = r.dockerfile;
  if (!isObject(df) || typeof df.name !== 'string' || typeof df.text !== 'string') throw bad('"dockerfile" must be {"name": string, "text": string}');
  if (!isObject(r.buildArgs) || Object.values(r.buildArgs).some((v) => v !== undefined && v !== null && typeof v !== 'string'))
    throw bad('"buildArgs" must map names to strings');
  if (!isObject(r.labels) || Object.values(r.labels).some((v) => typeof v !== 'string')) throw bad('"labels" must map names to strings');
  if (
    !Array.isArray(r.outputs) ||
    r.outputs.some((o) => !isObject(o) || typeof o.type !== 'string' || !['image', 'docker', 'oci', 'local', 'tar'].includes(o.type as string))
  ) {
    throw bad('"outputs" must be a list of outputs of type image, docker, oci, local or tar');
  }
  for (const o of r.outputs as Record<string, unknown>[]) {
    if ('names' in o && (!Array.isArray(o.names) || o.names.some((n) => typeof n !== 'string'))) throw bad('an output\'s "names" must be a list of strings');
  }
  const imageProblem = imageOptionsProblem(r);
  if (imageProblem) throw bad(imageProblem);
  if (r.network !== 'host' && r.network !== 'none') throw bad('"network" must be "host" or "none"');
  if (r.runPidsLimit !== undefined && (typeof r.runPidsLimit !== 'number' || !Number.isSafeInteger(r.runPidsLimit) || r.runPidsLimit < 1))
    throw bad('"runPidsLimit" must be a positive integer');
  if (r.allow !== undefined && (!Array.isArray(r.allow) || r.allow.some((e) => !(ENTITLEMENTS as readonly unknown[]).includes(e)))) {
    throw bad(`"allow" must be a list of entitlements (${ENTITLEMENTS.join(', ')})`);
  }
  for (const k of ['noCache', 'pull', 'dryRun'] as const) if (typeof r[k] !== 'boolean') throw bad(`"${k}" must be true or false`);
  if (r.target !== undefined && typeof r.target !== 'string') throw bad('"target" must be a string');
  const isPlatform = (p: unknown) =>
    isObject(p) && typeof p.os === 'string' && typeof p.architecture === 'string' && (p.variant === undefined || typeof p.variant === 'string');
  if (r.platform !== undefined && !isPlatform(r.platform)) throw bad('"platform" must be {"os": string, "architecture": string}');
  if (r.platforms !== undefined && (!Array.isArray(r.platforms) || r.platforms.length > MAX_PLATFORMS || !r.platforms.every(isPlatform))) {
    throw bad(`"platforms" must be a list of at most ${MAX_PLATFORMS} {"os": string, "architecture": string}`);
  }
  // Checked without ever quoting a value: error messages are logged.
  if (r.secrets !== undefined && (!isObject(r.secrets) || Object.values(r.secrets).some((v) => typeof v !== 'string')))
    throw bad('"secrets" must map ids to base64 strings');
  if (r.ssh !== undefined) {
    if (!Array.isArray(r.ssh) || r.ssh.some((s) => !isObject(s) || typeof s.id !== 'string')) throw bad('"ssh" must be a list of {"id": string}');
    // A socket names a path on the daemon's host: the client's agent is reached through the client.
    if (r.ssh.some((s) => (s as Record<string, unknown>).socket !== undefined)) throw bad('an "ssh" entry cannot name a socket on the daemon\'s host');
  }
  if (r.noCacheFilter !== undefined && (!Array.isArray(r.noCacheFilter) || r.noCacheFilter.some((s) => typeof s !== 'string')))
    throw bad('"noCacheFilter" must be a list of strings');
  for (const k of ['cacheFrom', 'cacheTo'] as const) {
    const list = r[k];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.some((c) => !isObject(c))) throw bad(`"${k}" must be a list`);
    // A local cache names a directory on the daemon's host: not something a client may choose.
    if (list.some((c) => (c as Record<string, unknown>).type === 'local')) {
      throw new ApiError(
        400,
        `${k === 'cacheFrom' ? '--cache-from' : '--cache-to'} type=local is not available through a daemon (it would name a directory on the daemon's host): use type=registry`,
      );
    }
    if (
      list.some(
        (c) =>
          !['registry', 'inline'].includes((c as Record<string, unknown>).type as string) ||
          ((c as Record<string, unknown>).type === 'registry' && typeof (c as Record<string, unknown>).ref !== 'string'),
      )
    ) {
      throw bad(`"${k}" entries must be {"type":"registry","ref":...} or {"type":"inline"}`);
    }
  }
  const { path: _hostPath, ...dockerfile } = df as { name: string; text: string; path?: string };
  // A dockerfile path names a file on the client's host; it means nothing here.
  return { ...(r as unknown as BuildRequest), dockerfile, dryRun: false };
}

/**
 * Named contexts from the network: directories and layouts only as synced uploads (a path would
 * name the daemon's host), images and URLs as strings. Names are checked when the build plans.
 */
function checkNamedContexts(raw: unknown, bad: (what: string) => ApiError): void {
  if (!isObject(raw)) throw bad('"namedContexts" must map names to contexts');
  const synced = (c: unknown) => isObject(c) && c.type === 'synced' && typeof c.id === 'string' && typeof c.session === 'string';
  for (const c of Object.values(raw)) {
    if (!isObject(c)) throw bad('a named context must be an object with a "type"');
    switch (c.type) {
      case 'synced':
        if (!synced(c)) throw bad('a synced named context needs "id" and "session" strings');
        break;
      case 'docker-image':
        if (typeof c.ref !== 'string') throw bad('a docker-image named context needs a "ref" string');
        break;
      case 'url':
        if (typeof c.url !== 'string' || !/^https?:\/\//i.test(c.url)) throw bad('a url named context needs an http(s) "url"');
        break;
      case 'oci-layout':
        if (!synced(c.layout)) throw bad('an oci-layout named context needs a synced "layout" (a path would name the daemon\'s host)');
        if (typeof c.tag !== 'string' || (c.digest !== undefined && typeof c.digest !== 'string'))
          throw bad('an oci-layout named context needs a "tag" string (and "digest" a string)');
        break;
      case 'dir':
        throw bad('a named context of type "dir" names a path on the daemon\'s host: sync it ({"type":"synced"})');
      default:
        throw bad('a named context\'s "type" must be synced, docker-image, url or oci-layout');
    }
  }
}

/** Platforms of one build: each is a whole solve, so a request cannot ask for thousands. */
const MAX_PLATFORMS = 16;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
