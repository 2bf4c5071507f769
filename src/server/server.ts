// The build service. Embedded mode calls it in-process; a daemon will serve the same methods over HTTP.
// It owns one kiln root: the content store, snapshots, image names and the solver that uses them.

import type { Readable } from 'node:stream';
import {
  buildErrorInfo,
  cacheConfigFor,
  defaultRoot,
  describeImages,
  directoryContext,
  findImage,
  exportPlatforms,
  exportResult,
  primaryLayerOptions,
  loadImages,
  mergeCacheConfigs,
  refuseMultiPlatform,
  solvePlatforms,
  openRoot,
  planBuild,
  prepareNamedContexts,
  ProgressTracker,
  runImage,
  saveImages,
  untagImage,
  type Compression,
  type ContextSource,
  type ExportOutput,
  type ExportResult,
  type ImageRecord,
  type ProgressSink,
  type RootServices,
  type SolveResult,
  type RunImageOptions,
  socketAgent,
  type SshAgents,
  type StoredImageInfo,
  writeCache,
} from '../solver/index.js';
import { diskUsage, maybeCollect, prune, solverHeld, type DiskUsage, type PruneOptions, type PruneReport } from '../solver/gc.js';
import {
  BuildFailure,
  hostPlatform,
  namedContextBindings,
  type BuildRequest,
  type BuildResult,
  type ImageOutputOptions,
  type LayerCompression,
  type OutputSpec,
  type Platform,
} from './api.js';
import type { ImageExportOptions } from '../solver/image-output.js';
import { checkImageOutputs, exportAttestations } from './image-outputs.js';
import { loadConfig, type KilnConfig } from './config.js';
import { namedContextInputs } from './named-contexts.js';

export type { ImageRecord, RunImageOptions, StoredImageInfo };
export { ImageLookupError } from '../solver/index.js';
export type { DiskUsage, PruneOptions, PruneReport };
export type { CacheRecord, RecordType, UsageTotals } from '../solver/gc.js';
export { parseDuration, parsePruneFilters, parseSize, summarize } from '../solver/gc.js';

/** What a BuildServer reads of the configuration: the daemon's own limits and defaults are not its business. */
export type BuilderConfig = Omit<KilnConfig, 'daemon' | 'cache'>;

export interface ServerOptions {
  root?: string;
  config?: BuilderConfig;
}

export class BuildServer {
  private services?: Promise<RootServices>;
  private readonly root: string;

  constructor(private readonly opts: ServerOptions = {}) {
    this.root = opts.root ?? defaultRoot();
  }

  private config?: BuilderConfig;

  /**
   * Opens the root now rather than on first use, failing at once (RootBusyError) when another
   * process holds it: what a daemon does at start, so a second daemon on a root refuses to start.
   */
  async start(): Promise<void> {
    await this.open(undefined, true);
  }

  private loadedConfig(): BuilderConfig {
    return (this.config ??= this.opts.config ?? loadConfig());
  }

  private open(onWait?: (pid: number) => void, noWait = false): Promise<RootServices> {
    this.services ??= (async () => {
      const config = this.loadedConfig();
      return openRoot(this.root, { registry: config.registry, maxParallelRuns: config.maxParallelRuns, runLimits: config.runLimits, onWait, noWait });
    })();
    // A failed open (bad config, unusable root) is retried by the next call rather than remembered.
    this.services.catch(() => (this.services = undefined));
    return this.services;
  }

  /**
   * Runs one build. Failures reject with a BuildFailure (its details as data). `context` overrides
   * `req.context` with a source the caller prepared (the daemon's leased copy of a synced upload).
   */
  async build(
    req: BuildRequest,
    onProgress: ProgressSink = () => undefined,
    signal?: AbortSignal,
    opts: { context?: ContextSource; sshAgents?: SshAgents; namedContexts?: Record<string, ContextSource> } = {},
  ): Promise<BuildResult> {
    try {
      return await this.buildOrThrow(req, onProgress, signal, opts.context, opts.sshAgents, opts.namedContexts);
    } catch (err) {
      if (err instanceof BuildFailure) throw err;
      throw new BuildFailure(buildErrorInfo(err, signal?.aborted === true));
    }
  }

  private async buildOrThrow(
    req: BuildRequest,
    onProgress: ProgressSink,
    signal: AbortSignal | undefined,
    source: ContextSource | undefined,
    sshAgents?: SshAgents,
    syncedNamed?: Record<string, ContextSource>,
  ): Promise<BuildResult> {
    if (req.dryRun) {
      // Several platforms translate alike but for their TARGET* values: the first one's graph is shown.
      const graph = planBuild({
        dockerfile: req.dockerfile,
        buildArgs: req.buildArgs,
        target: req.target,
        targetPlatform: req.platforms?.[0] ?? req.platform,
        namedContexts: namedContextBindings(req.namedContexts),
      });
      return { graph, warnings: graph.warnings };
    }
    const progress = new ProgressTracker(onProgress, { logLimitBytes: this.loadedConfig().stepLogMaxBytes });
    const s = await this.open((pid) => progress.message('info', `waiting for another kiln process (pid ${pid}) using ${this.root}`));
    const maxPids = this.config?.maxRunPids ?? 32768;
    if (req.runPidsLimit !== undefined && req.runPidsLimit > maxPids) {
      throw new BuildFailure({ message: `--pids-limit ${req.runPidsLimit} is above kiln's "max-run-pids-limit" (${maxPids})` });
    }
    // As buildkitd: asking for an entitlement the configuration does not permit fails the build at once.
    const permitted = this.config?.allowedEntitlements ?? [];
    for (const e of req.allow ?? []) {
      if (!permitted.includes(e)) {
        throw new BuildFailure({
          message: `granting entitlement ${e} is not allowed by kiln's configuration: add it to "allowed-entitlements" in ${process.env.KILN_CONFIG ?? '/etc/kiln/daemon.json'} (or start the daemon with --allow-insecure-entitlement ${e})`,
        });
      }
    }
    const platforms = req.platforms ?? [];
    checkImageOutputs(req, req.outputs.map(toExportOutput));
    // Named contexts: read in place, or downloaded and imported when a step first uses them. (A
    // multi-platform build resolves a named image context for its first platform.)
    const named = prepareNamedContexts(namedContextInputs(req.namedContexts ?? {}, syncedNamed), {
      store: s.store,
      tmp: s.layout.tmp,
      platform: platforms[0] ?? req.platform ?? hostPlatform(),
      step: (name, fn) => progress.step(name, () => fn()),
    });
    const solveReq = {
      context: source ?? contextSource(req),
      dockerfile: { name: req.dockerfile.name, text: req.dockerfile.text },
      buildArgs: req.buildArgs,
      target: req.target,
      network: req.network,
      allow: req.allow,
      ...(req.runPidsLimit !== undefined ? { runLimits: { pids: req.runPidsLimit } } : {}),
      noCache: req.noCache,
      noCacheFilter: req.noCacheFilter,
      cacheFrom: req.cacheFrom,
      pull: req.pull,
      secrets: secretValues(req.secrets),
      sshAgents: sshAgents ?? localAgents(req.ssh),
      namedContexts: named.contexts,
    };
    if (platforms.length > 1) {
      try {
        return await this.buildPlatforms(req, platforms, solveReq, s, progress, signal);
      } finally {
        await named.cleanup();
      }
    }
    let result: SolveResult;
    try {
      // What exportAll will export, if anything: its layers can be made while later steps run.
      const exports = req.outputs.length > 0 || req.imageId || req.cacheTo?.some((c) => c.type === 'inline');
      const eagerLayers = exports ? primaryLayerOptions(req.outputs.map(toExportOutput)) : undefined;
      result = await s.solver.solve({ ...solveReq, platform: platforms[0] ?? req.platform, ...(eagerLayers ? { eagerLayers } : {}) }, progress, signal);
    } finally {
      await named.cleanup();
    }
    // Until its exports are written, GC must leave alone what this build made and used.
    let exported: ExportResult | undefined;
    try {
      exported = await this.exportAll(req, result, s, progress, signal);
    } finally {
      result.release();
    }
    await this.collect(progress);
    // No output asked for: the result stays in the build cache, and there is no image to report.
    if (!exported) return { graph: result.graph, warnings: result.graph.warnings };
    return {
      graph: result.graph,
      warnings: result.graph.warnings,
      image: {
        id: exported.configDigest,
        configDigest: exported.configDigest,
        manifestDigest: exported.manifestDigest,
        pushed: exported.pushed,
        names: exported.names,
      },
    };
  }

  /** A multi-platform build: every platform solved, then one index (or a directory each) exported. */
  private async buildPlatforms(
    req: BuildRequest,
    platforms: Platform[],
    solveReq: Parameters<typeof solvePlatforms>[1],
    s: RootServices,
    progress: ProgressTracker,
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    const outputs = req.outputs.map(toExportOutput);
    // Refused before anything runs: the build could only fail at its end.
    const refused = refuseMultiPlatform(outputs, platforms);
    if (refused) throw new BuildFailure({ message: refused });
    const results = await solvePlatforms(s.solver, solveReq, platforms, progress, signal);
    const cacheDeps = { ...s, layers: results[0]!.result.layers };
    // The graphs differ only by their TARGET* values; warnings found while solving are per platform.
    const graph = { ...results[0]!.result.graph, warnings: uniqueWarnings(results.flatMap((r) => r.result.graph.warnings)) };
    let exported: Awaited<ReturnType<typeof exportPlatforms>> | undefined;
    try {
      const inline = req.cacheTo?.some((c) => c.type === 'inline') ? (r: SolveResult) => cacheConfigFor(r, 'min', cacheDeps) : undefined;
      if (outputs.length > 0 || req.imageId || inline) exported = await exportPlatforms(results, outputs, req.labels, s, progress, inline);
      for (const to of req.cacheTo ?? []) {
        if (to.type === 'inline') continue;
        await progress.step(`exporting cache to ${to.type === 'local' ? to.dest : to.ref} (mode=${to.mode})`, async () => {
          const configs = await Promise.all(results.map((r) => cacheConfigFor(r.result, to.mode, cacheDeps)));
          await writeCache(to, mergeCacheConfigs(configs), cacheDeps, signal);
        });
      }
    } finally {
      for (const r of results) r.result.release();
    }
    await this.collect(progress);
    if (!exported) return { graph, warnings: graph.warnings };
    const { configDigest, manifestDigest, pushed, names, platforms: exportedPlatforms } = exported;
    return { graph, warnings: graph.warnings, image: { id: manifestDigest, configDigest, manifestDigest, pushed, names, platforms: exportedPlatforms } };
  }

  /** The image outputs, then the cache exports (inline cache rides in the image config). */
  private async exportAll(
    req: BuildRequest,
    result: SolveResult,
    s: RootServices,
    progress: ProgressTracker,
    signal?: AbortSignal,
  ): Promise<ExportResult | undefined> {
    const cacheDeps = { ...s, layers: result.layers };
    const inline = req.cacheTo?.some((c) => c.type === 'inline') ? await cacheConfigFor(result, 'min', cacheDeps, { inline: true }) : undefined;
    const exported =
      req.outputs.length === 0 && !req.imageId && !inline
        ? undefined
        : await exportResult(result, req.outputs.map(toExportOutput), req.labels, s, progress, inline, exportAttestations(req));
    for (const to of req.cacheTo ?? []) {
      if (to.type === 'inline') continue;
      await progress.step(`exporting cache to ${to.type === 'local' ? to.dest : to.ref} (mode=${to.mode})`, async () =>
        writeCache(to, await cacheConfigFor(result, to.mode, cacheDeps), cacheDeps, signal),
      );
    }
    return exported;
  }

  /** Loads the images of an OCI layout (directory or tarball) into the root's image store. */
  async loadImages(source: string, tag?: string): Promise<ImageRecord[]> {
    return loadImages(await this.open(), source, tag);
  }

  /** Runs an image from the store in a throw-away container; resolves with the exit code. */
  async runImage(name: string, opts: RunImageOptions): Promise<number> {
    return runImage(await this.open(), name, opts);
  }

  async listImages(): Promise<ImageRecord[]> {
    return (await this.open()).images.list();
  }

  /** The store's images, one per image ID with every name on it, configs read (Docker's image list). */
  async describeImages(): Promise<StoredImageInfo[]> {
    return describeImages(await this.open());
  }

  /** One image by name, ID or ID prefix, as `docker image inspect` finds it; undefined when none. */
  async inspectImage(name: string): Promise<StoredImageInfo | undefined> {
    return findImage(await this.open(), name);
  }

  /** A docker archive (`docker save`) of the named image; ImageLookupError when one is unknown. */
  async saveImages(names: string[]): Promise<Readable> {
    return saveImages(await this.open(), names);
  }

  /** Removes a name (or, given an ID, the names of that image) from the store; the names removed. */
  async removeImage(name: string, force = false): Promise<string[]> {
    return untagImage(await this.open(), name, force);
  }

  /** Every record on the root with its size (`kiln du`). */
  async diskUsage(): Promise<DiskUsage> {
    return diskUsage(await this.open());
  }

  /** Removes build cache (`kiln prune`); never what a running build holds. */
  async prune(opts: PruneOptions): Promise<PruneReport> {
    const s = await this.open();
    return prune(s, opts, solverHeld(s));
  }

  /** The automatic policy (daemon.json gc-keep-storage): after a build, prune down to the limit. */
  private async collect(progress: ProgressTracker): Promise<void> {
    const policy = this.config?.gc;
    if (!policy?.enabled) return;
    const s = await this.open();
    try {
      await maybeCollect(s, solverHeld(s), policy);
    } catch (err) {
      // The build succeeded; a failed collection is reported, not turned into a build failure.
      progress.message('warning', `build cache garbage collection failed: ${(err as Error).message}`);
    }
  }

  /** Releases the root for other processes. */
  async close(): Promise<void> {
    if (!this.services) return;
    const s = await this.services.catch(() => undefined);
    this.services = undefined;
    await s?.release();
  }
}

function uniqueWarnings(warnings: BuildResult['warnings']): BuildResult['warnings'] {
  const seen = new Set<string>();
  return warnings.filter((w) => {
    const id = `${w.rule} ${w.location.file}:${w.location.line} ${w.message}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/** The request's secrets (base64 in the request) as bytes, by id. */
function secretValues(secrets: BuildRequest['secrets']): Map<string, Uint8Array> | undefined {
  if (!secrets) return undefined;
  return new Map(Object.entries(secrets).map(([id, b64]) => [id, Buffer.from(b64, 'base64')]));
}

/** Embedded mode: agents behind sockets on this host, by id (a daemon passes its own dialers). */
function localAgents(ssh: BuildRequest['ssh']): SshAgents | undefined {
  if (!ssh?.length) return undefined;
  return new Map(ssh.filter((s) => s.socket !== undefined).map((s) => [s.id, socketAgent(s.socket!)]));
}

/** The context a request names, when the caller prepared none: only a directory can be opened here. */
function contextSource(req: BuildRequest): ContextSource {
  if (req.context.type !== 'dir') throw new Error(`a ${req.context.type} build context needs the daemon that received it`);
  return directoryContext(req.context.path, req.dockerfile.path ? { dockerfile: req.dockerfile.path } : {});
}

function compression(c: LayerCompression | undefined): Compression | undefined {
  return c === 'uncompressed' ? 'none' : c;
}

function imageOptions(o: ImageOutputOptions): ImageExportOptions {
  return {
    ...(o.compression !== undefined ? { compression: compression(o.compression) } : {}),
    ...(o.compressionLevel !== undefined ? { level: o.compressionLevel } : {}),
    ...(o.forceCompression !== undefined ? { force: o.forceCompression } : {}),
    ...(o.ociMediaTypes !== undefined ? { ociTypes: o.ociMediaTypes } : {}),
    ...(o.ociArtifact !== undefined ? { ociArtifact: o.ociArtifact } : {}),
    ...(o.annotations?.length ? { annotations: o.annotations } : {}),
  };
}

function toExportOutput(o: OutputSpec): ExportOutput {
  switch (o.type) {
    case 'image':
      return { type: 'image', names: o.names, push: o.push, ...imageOptions(o) };
    case 'docker':
      return { type: 'docker', names: o.names, dest: o.dest, load: o.load, ...imageOptions(o) };
    case 'oci':
      return { type: 'oci', names: o.names, dest: o.dest, ...imageOptions(o) };
    case 'local':
    case 'tar':
      return o;
  }
}
