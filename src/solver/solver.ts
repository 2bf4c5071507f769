// The solver: runs a BuildGraph. Stages run as soon as what they need is ready (independent stages in
// parallel), each filesystem step is keyed by its definition and inputs and looked up before it runs,
// and a step with the same key runs once per process even when two builds ask for it at once.
// It knows no Dockerfile syntax (the frontend translated it) and no runc flags (the executor's job).

import * as path from 'node:path';
import PQueue from 'p-queue';
import { checksumEntries, selectEntries, type SelectOptions } from '../cache/checksum.js';
import type { ContentStore } from '../cache/content-store.js';
import type { ExecLimits } from '../executor/index.js';
import type { ContextEntry, ContextSource } from '../context/index.js';
import { copy, CopyError } from '../fileop/index.js';
import { DockerfileError } from '../frontend/index.js';
import type { BaseImageConfig, BuildGraph, CopyStep, MountFrom, Platform, Stage, Step } from '../frontend/types.js';
import type { RegistryClient } from '../image/registry/index.js';
import { formatReference, parseReference } from '../image/reference.js';
import type { ImageStore } from '../image/store.js';
import { formatPlatform, hostPlatform, normalizePlatform, type HistoryEntry } from '../oci/index.js';
import type { Compression, Snapshotter } from '../snapshotter/index.js';
import { BaseImages, toBaseImageConfig, type BaseImage } from './base-images.js';
import { CacheImport, type CacheFrom } from './cache-io.js';
import { contextKey } from './context-keys.js';
import { readsContext } from './context-usage.js';
import { CopyManifests } from './incremental-copy.js';
import { explainMiss, InputsLog, type StepInputs } from './explain.js';
import { cacheKey } from './keys.js';
import { LayerRecords } from './layers.js';
import { LINK_PARENT, linkKey, mergedKey, mergeLink } from './link.js';
import { snapshotExists, uniqueKey, withActive } from './mounted.js';
import { contextBindings, type NamedContext } from './named-contexts.js';
import { resolveGitSources } from './git-sources.js';
import type { ResolvedGit } from '../fileop/index.js';
import { DEFAULT_OPS } from './ops/index.js';
import { StepError, type CacheInputs, type Entitlement, type ExecContext, type FsStep, type Op, type OpContext, type OpTable } from './ops/types.js';
import type { SshAgents } from './ssh-agent.js';
import { planBuild } from './plan.js';
import { progressPlatform, stagePlatform } from './platforms.js';
import type { ProgressTracker, VertexHandle } from './progress.js';
import type { RootLayout } from './state-root.js';

export interface SolverDeps {
  layout: RootLayout;
  store: ContentStore;
  snapshotter: Snapshotter;
  registry: RegistryClient;
  images: ImageStore;
}

export interface SolveRequest {
  /** Where COPY and bind mounts read the build context (a directory in place, a synced copy...). */
  context: ContextSource;
  dockerfile: { name: string; text: string };
  buildArgs: Record<string, string | undefined>;
  target?: string;
  /** The target platform (default: the host's). */
  platform?: Platform;
  /** One of several platforms of a multi-platform build: progress names carry the platform. */
  prefixPlatform?: boolean;
  network: 'host' | 'none';
  /** Entitlements granted to this build (asked for with --allow and permitted by the configuration). */
  allow?: readonly Entitlement[];
  /** This build's RUN limits, over the solver's defaults (a build that needs more processes). */
  runLimits?: Partial<ExecLimits>;
  noCache: boolean;
  /**
   * The layers the export will want (its first image's compression and level; none when nothing is
   * exported): each step of the target's chain gets its layer made as soon as it is committed,
   * beside the steps after it, instead of all of them at "exporting layers".
   */
  eagerLayers?: { compression: Compression; level?: number; defer?: boolean };
  /** Stages (by name) built without the cache (--no-cache-filter). */
  noCacheFilter?: string[];
  pull: boolean;
  /** Caches to take steps from before running them (--cache-from). */
  cacheFrom?: CacheFrom[];
  /** Secret values by id (--secret): given to the steps that mount them, never to a key, record or log. */
  secrets?: ReadonlyMap<string, Uint8Array>;
  /** SSH agents by id (--ssh). */
  sshAgents?: SshAgents;
  /** Named build contexts (--build-context) by normalised name, prepared (named-contexts.ts). */
  namedContexts?: ReadonlyMap<string, NamedContext>;
  /**
   * Base images resolved for the builds of several platforms at once (a multi-platform build): each
   * (reference, platform) is resolved and unpacked once. Every lookup names its platform.
   */
  baseImages?: BaseImages;
}

/** One entry of a stage's history, with the layer it adds (if any). */
export type HistoryLink =
  | { kind: 'config'; history: HistoryEntry }
  | { kind: 'base'; image: BaseImage }
  | { kind: 'step'; history: HistoryEntry; snapshot: string };

export interface StageResult {
  stage: Stage;
  /** Cache key of the stage's final filesystem. */
  key: string;
  /** Committed snapshot of the stage's final filesystem (undefined: empty, as FROM scratch). */
  snapshot(): Promise<string | undefined>;
  links: HistoryLink[];
}

export interface SolveResult {
  graph: BuildGraph;
  target: StageResult;
  /** Every stage the build ran (for --cache-to mode=max). */
  stages: StageResult[];
  baseImages: BaseImages;
  layers: LayerRecords;
  started: Date;
  /** The commit each git URL of an ADD resolved to (URL as written), for provenance. */
  gitCommits?: ReadonlyMap<string, string>;
  /** Lets GC have what this build used; call when its exports are done. */
  release(): void;
}

export class Solver {
  /** Steps being built in this process, by snapshot name: a second asker waits for the first. */
  private readonly building = new Map<string, Promise<unknown>>();
  /** Builds in progress, for what they hold (GC must not remove it). */
  private readonly running = new Set<BuildRun>();
  /** Containers running at once, across builds. */
  private readonly runQueue: PQueue;
  readonly layers: LayerRecords;
  readonly runLimits: ExecLimits;
  readonly inputsLog: InputsLog;
  readonly copyManifests: CopyManifests;

  /** The op of each kind of step: kiln's own unless the caller gives some (a test's fakes). */
  readonly ops: OpTable;

  constructor(
    private readonly deps: SolverDeps,
    opts: { maxParallelRuns?: number; runLimits?: ExecLimits; ops?: Partial<OpTable> } = {},
  ) {
    this.ops = { ...DEFAULT_OPS, ...opts.ops };
    this.runLimits = opts.runLimits ?? {};
    this.runQueue = new PQueue({ concurrency: opts.maxParallelRuns ?? 4 });
    this.layers = new LayerRecords(deps.layout, deps.snapshotter, deps.store);
    // Deferred layer blobs (an image kept in kiln's store) are made from their snapshots when read.
    deps.store.setMaker((source, dest) => this.layers.makeDeferred(source, dest));
    this.inputsLog = new InputsLog(path.join(deps.layout.records, 'steps'));
    this.copyManifests = new CopyManifests(path.join(deps.layout.records, 'copies'));
  }

  /** Snapshots the builds in progress use (until their result is released): GC leaves them alone. */
  *held(): Iterable<string> {
    for (const r of this.running) yield* r.held;
  }

  async solve(req: SolveRequest, progress: ProgressTracker, callerSignal?: AbortSignal): Promise<SolveResult> {
    const started = new Date();
    // One signal for the whole build: the caller's cancel, or the first failing step, stops every
    // other stage still running (their containers are killed), as BuildKit does.
    const cancel = new AbortController();
    const onCallerAbort = () => cancel.abort(callerSignal!.reason);
    if (callerSignal?.aborted) cancel.abort(callerSignal.reason);
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    try {
      return await this.solveWith(req, progress, cancel, started);
    } finally {
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
  }

  private async solveWith(req: SolveRequest, progress: ProgressTracker, cancel: AbortController, started: Date): Promise<SolveResult> {
    const signal = cancel.signal;
    const platform = req.platform ?? hostPlatform();
    const baseImages = req.baseImages ?? new BaseImages(this.deps, platform, req.pull, signal);
    const named = req.namedContexts ?? new Map<string, NamedContext>();
    // An OCI layout's image is resolved already: FROM and COPY --from find it by its ref.
    for (const c of named.values()) if (c.kind === 'image' && c.pinned) baseImages.pin(c.ref, c.pinned);
    const namedContexts = named.size > 0 ? contextBindings(named) : undefined;
    const plan = (resolved?: Record<string, BaseImageConfig>) =>
      planBuild({ dockerfile: req.dockerfile, buildArgs: req.buildArgs, target: req.target, targetPlatform: platform, baseImages: resolved, namedContexts });

    const def = progress.start(`[internal] load build definition from ${req.dockerfile.name}`);
    let graph: BuildGraph;
    try {
      graph = plan();
      def.done();
    } catch (err) {
      def.fail(err);
      throw err;
    }
    // Base images' configs feed the translation (their ENV, ONBUILD triggers...), so resolve them and
    // translate once more, as BuildKit's frontend does.
    if (graph.unresolvedImages.length > 0) {
      const configs: Record<string, BaseImageConfig> = {};
      const first = graph;
      await Promise.all(
        graph.unresolvedImages.map(async (ref) => {
          const refPlatform = configPlatform(first, ref, platform);
          // As BuildKit: "[linux/arm64 internal] load metadata for ..." in a multi-platform build.
          const v = progress.start(`[${req.prefixPlatform ? `${formatPlatform(refPlatform)} ` : ''}internal] load metadata for ${displayRef(ref)}`);
          try {
            configs[ref] = toBaseImageConfig((await baseImages.resolve(ref, refPlatform)).config);
            v.done();
          } catch (err) {
            v.fail(err);
            throw new Error(`failed to resolve base image ${ref}: ${(err as Error).message}`, { cause: err });
          }
        }),
      );
      graph = plan(configs);
    }
    const lintErrors = graph.warnings.filter((w) => w.level === 'error');
    if (lintErrors.length > 0) {
      const first = lintErrors[0]!;
      throw new DockerfileError(first.location.file, first.location.line, `lint: ${first.rule}: ${first.message}`);
    }

    let imported: CacheImport | undefined;
    if (req.cacheFrom?.length) {
      const v = progress.start(`[internal] importing cache manifest from ${req.cacheFrom.map((c) => (c.type === 'local' ? c.src : c.ref)).join(', ')}`);
      try {
        imported = await CacheImport.load(req.cacheFrom, { ...this.deps, layers: this.layers }, signal);
        v.done();
      } catch (err) {
        // As BuildKit: a cache that cannot be read is a warning, the build goes on without it.
        v.fail(err);
        progress.message('warning', `cache import failed, building without it: ${(err as Error).message}`);
      }
    }

    // Each context is walked once per build, when a step first reads it.
    const entries = new Map<string, Promise<ContextEntry[]>>();
    const contextEntries = (name?: string): Promise<ContextEntry[]> => {
      const key = name ?? '';
      let p = entries.get(key);
      if (!p) {
        const source = contextSourceOf(req, name);
        const v = source.quiet ? undefined : progress.start(name === undefined ? '[internal] load build context' : `[context ${name}] load from client`);
        p = source.entries().then(
          (e) => (v?.done(), e),
          (err) => (v?.fail(err), Promise.reject(err)),
        );
        entries.set(key, p);
      }
      return p;
    };
    // The main context is walked from the start, beside the steps before the first COPY (as
    // BuildKit syncs it beside the base image's pull): a `COPY . .` after a long RUN finds it
    // walked. The steps that read it wait for this same walk, and report its failure.
    if (readsContext(graph)) contextEntries().catch(() => undefined);
    const run = new BuildRun(this, this.deps, req, graph, baseImages, progress, signal, imported, contextEntries, (reason) => cancel.abort(reason));
    this.running.add(run);
    try {
      const target = await run.stage(graph.target);
      return {
        graph,
        target,
        stages: await run.allStages(),
        baseImages,
        layers: this.layers,
        started,
        gitCommits: run.gitCommits(),
        // Its layers being made in the background still read its snapshots: GC waits for them.
        release: () => void run.layersMade().then(() => this.running.delete(run)),
      };
    } catch (err) {
      // Nothing of a failed build may go on behind the caller's back: stop the other stages and wait
      // until each has unwound (containers gone, mounts released) before reporting the failure,
      // which is the first one (the others are mostly "cancelled" because of it).
      cancel.abort(err);
      await run.settle();
      void run.layersMade().then(() => this.running.delete(run));
      throw run.firstError ?? err;
    }
  }

  /**
   * Makes snapshot `name` with `build` unless it exists or another build is making it right now.
   * `build` says whether it ran the step or took it from an imported cache.
   */
  async once(name: string, build: () => Promise<'built' | 'imported'>): Promise<'cached' | 'built' | 'imported'> {
    const running = this.building.get(name);
    if (running) {
      await running;
      return 'cached';
    }
    // Registered before the first await: a second build asking for the same step meanwhile joins
    // this one instead of finding no snapshot yet and building it a second time.
    const p = (async () => ((await snapshotExists(this.deps.snapshotter, name)) ? ('cached' as const) : build()))().finally(() => this.building.delete(name));
    this.building.set(name, p);
    return p;
  }

  /** A set of base images for builds that share it (SolveRequest.baseImages). */
  baseImages(platform: Platform, pull: boolean, signal?: AbortSignal): BaseImages {
    return new BaseImages(this.deps, platform, pull, signal);
  }

  queueRun<T>(fn: () => Promise<T>): Promise<T> {
    return this.runQueue.add(fn) as Promise<T>;
  }
}

/**
 * The platform to read a base image's config for, when the frontend asks for it by reference alone:
 * the target's when a stage uses it so (that config becomes the image's), else the platform of the
 * first stage built on it (FROM --platform=$BUILDPLATFORM).
 */
function configPlatform(graph: BuildGraph, ref: string, target: Platform): Platform {
  const users = graph.stages.filter((s) => s.base.kind === 'image' && s.base.ref === ref).map((s) => stagePlatform(graph, s, target));
  if (users.length === 0 || users.some((p) => formatPlatform(p) === formatPlatform(target))) return target;
  return users[0]!;
}

/** A reference as BuildKit shows it in progress: normalised ("docker.io/library/busybox:latest"). */
function displayRef(ref: string): string {
  try {
    return formatReference(parseReference(ref));
  } catch {
    return ref; // an invalid reference fails with its own error where it is resolved
  }
}

/** The state of one build: its stages, memoised so each runs once however many stages need it. */
class BuildRun {
  private readonly stages = new Map<number, Promise<StageResult>>();
  /** Per stage, the platform its RUN steps execute (see runStage). */
  private readonly execPlatforms = new Map<number, Platform>();
  /** Every snapshot this build made, found or read: what GC must not take while it runs. */
  readonly held = new Set<string>();
  /** Layers made ahead of the export (SolveRequest.eagerLayers), settled or not. */
  private readonly eager: Promise<void>[] = [];

  constructor(
    private readonly solver: Solver,
    private readonly deps: SolverDeps,
    private readonly req: SolveRequest,
    private readonly graph: BuildGraph,
    private readonly baseImages: BaseImages,
    private readonly progress: ProgressTracker,
    private readonly signal: AbortSignal | undefined,
    private readonly imported: CacheImport | undefined,
    private readonly contextEntries: (name?: string) => Promise<ContextEntry[]>,
    private readonly cancel: (reason: unknown) => void,
  ) {
    this.imageChain = imageChainOf(graph);
  }

  /** The stages whose steps are layers of the target's image: the target and the stages it is FROM. */
  private readonly imageChain: ReadonlySet<number>;

  /** Resolves when every layer started ahead of the export has been made (or has failed). */
  async layersMade(): Promise<void> {
    await Promise.all(this.eager);
  }

  /**
   * Starts making the layer of `snapshot`, a step of `stage` just committed, when the export will
   * want it: it then overlaps the steps after it (a COPY's layer of thousands of files beside the
   * RUN that follows). The export asks LayerRecords for the same layer and gets this very work;
   * a failure here is left for that ask to meet and report.
   */
  private makeLayerEarly(stage: Stage, snapshot: string): void {
    const want = this.req.eagerLayers;
    if (!want || this.signal?.aborted || !this.imageChain.has(stage.index)) return;
    this.eager.push(
      this.solver.layers.get(snapshot, want.compression, this.graph.sourceDateEpoch, want.level, { defer: want.defer === true }).then(
        () => undefined,
        () => undefined,
      ),
    );
  }

  /** Results of every stage started so far. */
  allStages(): Promise<StageResult[]> {
    return Promise.all(this.stages.values());
  }

  /** Resolves when every stage started so far has finished, one way or the other. */
  async settle(): Promise<void> {
    // Stages can start others while settling (their dependencies): wait until the set stops growing.
    for (let seen = -1; seen !== this.stages.size; ) {
      seen = this.stages.size;
      await Promise.allSettled(this.stages.values());
    }
  }

  stage(index: number): Promise<StageResult> {
    let p = this.stages.get(index);
    if (!p) {
      const stage = this.graph.stages.find((s) => s.index === index);
      if (!stage) return Promise.reject(new Error(`internal error: stage ${index} is not in the build graph`));
      p = this.runStage(stage);
      // A stage that fails fails the build now, even while the stages that need it wait on others.
      p.catch((err: unknown) => this.fail(err));
      this.stages.set(index, p);
    }
    return p;
  }

  /** The failure that ended the build, when one did. */
  firstError: unknown;

  private fail(err: unknown): void {
    if (this.firstError !== undefined || this.signal?.aborted) return;
    this.firstError = err;
    this.cancel(err);
  }

  private label(stage: Stage, n: number, total: number, step?: Step): string {
    const multi = this.graph.stages.length > 1;
    // As BuildKit in a multi-platform build: "[linux/arm64 build 2/3]", "[linux/amd64->arm64 ...]".
    const platform = this.req.prefixPlatform
      ? `${progressPlatform(this.platformOf(stage), this.target, step?.kind === 'run' ? step.buildArgs : undefined)} `
      : '';
    return multi ? `[${platform}${stage.name ?? `stage-${stage.index}`} ${n}/${total}]` : `[${platform}${n}/${total}]`;
  }

  private get target(): Platform {
    return this.req.platform ?? hostPlatform();
  }

  private platformOf(stage: Stage): Platform {
    return stagePlatform(this.graph, stage, this.target);
  }

  private async runStage(stage: Stage): Promise<StageResult> {
    // A COPY --link needs nothing of the steps before it: each starts now, beside them (link.ts).
    const linked = this.startLinked(stage);
    try {
      return await this.runSteps(stage, linked);
    } catch (err) {
      // Nothing of a failed stage goes on behind it: its linked copies finish or fail first.
      await Promise.allSettled(linked.values());
      throw err;
    }
  }

  private async runSteps(stage: Stage, linked: Map<Step, Promise<LinkedCopy>>): Promise<StageResult> {
    // Start every stage this one needs now, so independent stages build side by side instead of
    // one after another as each COPY --from reaches them. Their errors surface where awaited.
    for (const dep of stage.dependsOn) this.stage(dep).catch(() => undefined);
    const fsSteps = stage.steps.filter(isFilesystemStep).length;
    const total = fsSteps + 1;

    // The base: its key, its (lazily unpacked) snapshot and the history it brings.
    let key: string;
    let snapshot: () => Promise<string | undefined>;
    let parentWhat: string;
    // The platform of the programs a RUN executes: the base image's (as its config says), which is
    // the stage's unless a single-platform image of another platform was all there was.
    let execPlatform: Platform = this.platformOf(stage);
    const links: HistoryLink[] = [];
    const base = stage.base;
    const fromWhat =
      base.kind === 'image'
        ? displayRef(base.ref)
        : base.kind === 'stage'
          ? this.stageName(base.index)
          : base.kind === 'context'
            ? `context ${base.name}`
            : 'scratch';
    const fromVertex = this.progress.start(`${this.label(stage, 1, total)} FROM ${fromWhat}`);
    try {
      if (base.kind === 'scratch') {
        key = cacheKey('', { from: 'scratch' });
        snapshot = async () => undefined;
        parentWhat = 'scratch';
      } else if (base.kind === 'stage') {
        const parent = await this.stage(base.index);
        key = parent.key;
        snapshot = parent.snapshot;
        links.push(...parent.links);
        execPlatform = this.execPlatforms.get(base.index) ?? execPlatform;
        parentWhat = `stage ${this.stageName(base.index)}`;
      } else if (base.kind === 'context') {
        ({ key, snapshot } = await this.contextBase(base.name));
        parentWhat = `named context ${base.name}`;
        links.push({
          kind: 'step',
          history: { created_by: `local source for ${base.name}`, comment: 'buildkit.exporter.image.v0' },
          snapshot: (await snapshot())!,
        });
      } else {
        const want = this.platformOf(stage);
        const image = await this.baseImages.resolve(base.ref, want);
        const got = image.config.architecture
          ? { os: image.config.os ?? want.os, architecture: image.config.architecture, variant: image.config.variant }
          : want;
        if (got.os !== want.os || normalizePlatform(got).architecture !== normalizePlatform(want).architecture) {
          // A single-platform image of another platform: BuildKit's InvalidBaseImagePlatform lint
          // warning (which compares OS and architecture only), reported with the Dockerfile's others.
          const message = `Base image ${base.ref} was pulled with platform ${JSON.stringify(formatPlatform(got))}, expected ${JSON.stringify(formatPlatform(want))} for current build`;
          this.graph.warnings.push({ rule: 'InvalidBaseImagePlatform', message, location: stage.location, level: 'warning' });
        }
        execPlatform = got;
        key = cacheKey('', { from: image.manifestDigest });
        parentWhat = `base image ${image.name}@${image.manifestDigest}`;
        let unpacked: Promise<string | undefined> | undefined;
        snapshot = () => (unpacked ??= this.baseImages.unpack(image).then((s) => (s && this.held.add(s), s)));
        links.push({ kind: 'base', image });
      }
      this.execPlatforms.set(stage.index, execPlatform);
      fromVertex.done();
    } catch (err) {
      fromVertex.fail(err);
      throw err;
    }

    let n = 1;
    for (const step of stage.steps) {
      if (this.signal?.aborted) throw new Error('build cancelled');
      if (!isFilesystemStep(step)) {
        if (step.createdBy) links.push({ kind: 'config', history: { created_by: step.createdBy, comment: HISTORY_COMMENT, empty_layer: true } });
        continue;
      }
      n++;
      const early = linked.get(step);
      if (early && step.kind === 'copy') {
        const copy = await early;
        ({ key, snapshot } = this.linkedResult(stage, step, copy, key, snapshot));
        links.push({ kind: 'step', history: { created_by: step.createdBy, comment: HISTORY_COMMENT }, snapshot: copy.own });
        this.makeLayerEarly(stage, copy.own);
        continue;
      }
      this.opFor(step).admit?.(step, this.req.allow ?? []);
      const { material, inputs } = await this.keyInputs(step, stage);
      const stepKey = cacheKey(key, material);
      const noCache = this.noCache(stage);
      // Without the cache a step gets a fresh name, so it runs and nothing older is reused; what
      // follows gets a fresh key too, since this step's result may now differ from the cached one.
      const name = noCache ? uniqueKey(`step-${stepKey}`) : `step-${stepKey}`;
      const current: StepInputs = { key: stepKey, parentKey: key, parent: n === 2 ? parentWhat : 'step', instruction: step.original, ...inputs };
      await this.solveStep({ stage, step, n, total, name, parent: snapshot, current, noCache, platform: execPlatform });
      key = noCache ? cacheKey(stepKey, { noCache: name }) : stepKey;
      snapshot = async () => name;
      links.push({ kind: 'step', history: { created_by: step.createdBy, comment: HISTORY_COMMENT }, snapshot: name });
      this.makeLayerEarly(stage, name);
    }
    return { stage, key, snapshot, links };
  }

  /**
   * FROM a named context of files: a snapshot holding them all, keyed by their content (so the
   * stage's steps stay cached while the files do not change), made once however many use it.
   */
  private async contextBase(name: string | undefined): Promise<{ key: string; snapshot: () => Promise<string | undefined> }> {
    const from: MountFrom = { kind: 'context', name };
    const key = cacheKey('', { from: 'context', content: await this.sourceKey(from, ['.']) });
    const snap = `step-${key}`;
    this.held.add(snap);
    const outcome = await this.solver.once(snap, async () => {
      const source = contextSourceOf(this.req, name);
      const entries = await this.contextEntries(name);
      await withActive(this.deps.snapshotter, this.deps.layout.tmp, undefined, snap, async (destRoot) => {
        await copy({
          spec: { instruction: 'COPY', sources: ['.'], dest: '/', destIsDir: true },
          source: { kind: 'context', dir: source.dir, entries },
          destRoot,
        });
      });
      return 'built';
    });
    if (outcome === 'cached') await this.deps.snapshotter.touch(snap).catch(() => undefined); // recency for GC
    return { key, snapshot: async () => snap };
  }

  /** Git URLs of ADD steps resolved for their keys: the checkout takes exactly these commits. */
  private readonly gitResolved = new Map<Step, Map<string, ResolvedGit>>();
  /** The commits the build's git URLs resolved to, by URL as written. */
  gitCommits(): Map<string, string> {
    return new Map([...this.gitResolved.values()].flatMap((m) => [...m].map(([u, r]) => [u, r.commit] as [string, string])));
  }

  /** Each remote#ref resolved once per build, so all its steps agree on the commit. */
  private readonly gitRefCache = new Map<string, Promise<ResolvedGit>>();

  private gitContext() {
    return {
      tmpDir: this.deps.layout.tmp,
      refCache: this.gitRefCache,
      ...(this.req.sshAgents ? { sshAgents: this.req.sshAgents } : {}),
      ...(this.req.secrets ? { secrets: this.req.secrets } : {}),
      ...(this.signal ? { signal: this.signal } : {}),
    };
  }

  /** Runs `fn`, reporting a failure as the step's (with its Dockerfile line). */
  private async stepError<T>(step: FsStep, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof StepError) throw err;
      throw new StepError(step.location, `${step.original}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Starts the stage's linked copies, each failing the build as soon as it fails. */
  private startLinked(stage: Stage): Map<Step, Promise<LinkedCopy>> {
    const started = new Map<Step, Promise<LinkedCopy>>();
    const total = stage.steps.filter(isFilesystemStep).length + 1;
    let n = 1;
    for (const step of stage.steps) {
      if (!isFilesystemStep(step)) continue;
      n++;
      if (step.kind !== 'copy' || !step.link) continue;
      const p = this.linkedCopy(stage, step, n, total);
      p.catch((err: unknown) => this.fail(err));
      started.set(step, p);
    }
    return started;
  }

  /**
   * A COPY --link's own snapshot, made on nothing and keyed without the stage below it; its vertex
   * is the step's, cached whatever the base is.
   */
  private async linkedCopy(stage: Stage, step: CopyStep, n: number, total: number): Promise<LinkedCopy> {
    const { material, inputs } = await this.keyInputs(step, stage);
    const linked = linkKey(material, inputs);
    const noCache = this.noCache(stage);
    const own = noCache ? uniqueKey(`step-${linked.key}`) : `step-${linked.key}`;
    const current: StepInputs = { key: linked.key, parentKey: LINK_PARENT, parent: LINK_PARENT, instruction: step.original, ...linked.inputs };
    // Made on nothing. The platform matters to RUN only (what can execute); a copy is the same on any.
    await this.solveStep({ stage, step, n, total, name: own, parent: async () => undefined, current, noCache, platform: this.platformOf(stage) });
    return { own, key: linked.key };
  }

  /**
   * One step's result under `name`: made once however many builds ask (or found cached, or taken
   * from an imported cache), with its vertex reporting which, and the inputs it saw recorded for
   * the next build's miss explanation. The shared tail of a plain step and a linked copy.
   */
  private async solveStep(o: {
    stage: Stage;
    step: FsStep;
    n: number;
    total: number;
    name: string;
    parent: () => Promise<string | undefined>;
    current: StepInputs;
    noCache: boolean;
    platform: Platform;
  }): Promise<void> {
    const { stage, step, name, current, noCache } = o;
    // Each platform of a multi-platform build keeps its own record of what a step last saw.
    const stageId = (stage.name ?? String(stage.index)) + (this.req.prefixPlatform ? ` ${formatPlatform(this.target)}` : '');
    const place = InputsLog.place(this.req.context.identity, this.req.dockerfile.name, stageId, o.n);
    this.held.add(name);
    const vertex = this.progress.start(`${this.label(stage, o.n, o.total, step)} ${step.original}`);
    try {
      // What the step saw last time, read only when needed: a step cached under the key its record
      // already holds (known from an earlier build in this process) needs none of it.
      const log = this.solver.inputsLog;
      const known = log.knownKey(place);
      let previous: Promise<StepInputs | undefined> | undefined = known?.key === current.key ? undefined : log.load(place);
      const loadPrevious = () => (previous ??= log.load(place));
      const outcome = await this.solver.once(name, async () => {
        const parent = await o.parent();
        if (!noCache && (await this.imported?.materialize(name, parent))) return 'imported';
        await this.execute(step, parent, name, vertex, noCache ? undefined : { previous: await loadPrevious(), current }, o.platform);
        return 'built';
      });
      // Recency for GC's least-recently-used order.
      if (outcome === 'cached') await this.deps.snapshotter.touch(name).catch(() => undefined);
      if (outcome !== 'built') vertex.cached();
      else vertex.done(explainMiss(await loadPrevious(), current, noCache));
      if (outcome === 'built' || (previous !== undefined && (await previous)?.key !== current.key)) await log.save(place, current);
    } catch (err) {
      vertex.fail(err);
      throw err;
    }
  }

  /**
   * The stage after a linked copy: its snapshot merged onto the parent, keyed by both. The merge is
   * made when something needs the files (a later step that runs, a COPY --from, a filesystem
   * export), not before: an image whose last steps are linked copies on a base image is exported
   * with the base's layers as pulled and the copies' layers, the base never unpacked, as BuildKit
   * rebases without pulling.
   */
  private linkedResult(stage: Stage, step: CopyStep, copy: LinkedCopy, parentKey: string, parentSnapshot: () => Promise<string | undefined>) {
    const noCache = this.noCache(stage);
    const stepKey = mergedKey(parentKey, copy.key);
    const name = noCache ? uniqueKey(`step-${stepKey}`) : `step-${stepKey}`;
    this.held.add(name);
    let merged: Promise<string> | undefined;
    const merge = async () => {
      try {
        const outcome = await this.solver.once(
          name,
          async () => (await mergeLink(this.deps.snapshotter, this.deps.layout.tmp, await parentSnapshot(), copy.own, name), 'built'),
        );
        if (outcome === 'cached') await this.deps.snapshotter.touch(name).catch(() => undefined);
        return name;
      } catch (err) {
        throw new StepError(step.location, `${step.original}: merging the linked layer onto the stage: ${(err as Error).message}`, { cause: err });
      }
    };
    return { key: noCache ? cacheKey(stepKey, { noCache: name }) : stepKey, snapshot: () => (merged ??= merge()) };
  }

  private noCache(stage: Stage): boolean {
    return this.req.noCache || (stage.name !== undefined && (this.req.noCacheFilter ?? []).includes(stage.name));
  }

  private stageName(index: number): string {
    return this.graph.stages.find((s) => s.index === index)?.name ?? `stage-${index}`;
  }

  /**
   * What a step's key covers besides its definition (the content of what it reads), and the same
   * broken into named pieces for explaining a miss.
   */
  /** What the step's key is made of: its op says, with the sources resolved by this build. */
  private keyInputs(step: FsStep, stage: Stage): Promise<CacheInputs> {
    return this.opFor(step).cacheInputs(step, {
      platform: this.platformOf(stage),
      sourceKey: (from, sources, select, perPath) => this.sourceKey(from, sources, select, perPath),
      resolveGit: (s) =>
        this.stepError(s, async () => {
          const resolved = await resolveGitSources(s, this.gitContext());
          this.gitResolved.set(s, resolved);
          return resolved;
        }),
    });
  }

  /** The op of the step's kind (the solver's table: kiln's own, or a test's). */
  private opFor<S extends FsStep>(step: S): Op<S> {
    return this.solver.ops[step.kind] as unknown as Op<S>;
  }

  private async sourceKey(from: MountFrom, sources: string[], select: SelectOptions = {}, perPath?: Record<string, string>): Promise<string> {
    switch (from.kind) {
      case 'context': {
        if (sources.length === 0) return 'context:none';
        const source = contextSourceOf(this.req, from.name);
        // A named context keys by content exactly as the main one: the same files, the same key.
        // Under a content token (a daemon's unchanged kept copy) the key of the same selection is reused.
        const key = await contextKey(
          source.contentToken,
          JSON.stringify([from.name ?? null, sources, select]),
          async (files) => {
            // Exactly what the copy reads; file digests are memoised under the root across builds.
            const selection = selectEntries(await this.contextEntries(from.name), sources, select);
            return checksumEntries(source.dir, selection, { cacheDir: path.join(this.deps.layout.records, 'checksums'), perPath: files });
          },
          perPath,
        );
        return `context:${key}`;
      }
      case 'stage':
        return `stage:${(await this.stage(from.index)).key}`;
      case 'image':
        return `image:${(await this.baseImages.resolve(from.ref, this.target)).manifestDigest}`;
    }
  }

  private async execute(
    step: FsStep,
    parent: string | undefined,
    name: string,
    vertex: VertexHandle,
    history: { previous?: StepInputs; current: StepInputs } | undefined,
    platform: Platform,
  ): Promise<void> {
    const ctx: OpContext = {
      snapshotter: this.deps.snapshotter,
      layout: this.deps.layout,
      contextDir: this.req.context.dir,
      contextEntries: () => this.contextEntries(),
      context: (name) => ({ dir: contextSourceOf(this.req, name).dir, entries: () => this.contextEntries(name) }),
      filteredContext: async (name) => {
        if (!(await contextSourceOf(this.req, name).hasIgnored?.())) return undefined;
        return (await this.contextBase(name)).snapshot();
      },
      sourceSnapshot: async (from) => {
        const snap =
          from.kind === 'stage'
            ? await (await this.stage(from.index)).snapshot()
            : await this.baseImages.unpack(await this.baseImages.resolve(from.ref, this.target));
        if (snap) this.held.add(snap);
        return snap;
      },
      network: this.req.network,
      allow: this.req.allow ?? [],
      limits: { ...this.solver.runLimits, ...this.req.runLimits },
      seedCacheMount: this.imported ? (id, dir) => this.imported!.seedCacheMount(id, dir) : undefined,
      signal: this.signal,
      secrets: this.req.secrets,
      sshAgents: this.req.sshAgents,
      log: (stream, chunk) => vertex.log(stream, chunk.toString('utf8')),
    };
    const x: ExecContext = {
      op: ctx,
      parent,
      name,
      platform,
      ...(history ? { history } : {}),
      queueRun: (fn) => this.solver.queueRun(fn),
      copyManifests: this.solver.copyManifests,
      git: { context: this.gitContext(), ...(this.gitResolved.has(step) ? { resolved: this.gitResolved.get(step)! } : {}) },
      log: (text) => vertex.log('stdout', text),
    };
    try {
      await this.opFor(step).exec(step, x);
    } catch (err) {
      if (err instanceof StepError || (err instanceof CopyError && err.location)) throw err;
      throw new StepError(step.location, `${step.original}: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** BuildKit marks the history entries its Dockerfile frontend writes; tools look for it. */
const HISTORY_COMMENT = 'buildkit.dockerfile.v0';

/** The target stage and the stages it is built FROM, in turn: the stages whose steps are its image's layers. */
function imageChainOf(graph: BuildGraph): Set<number> {
  const chain = new Set<number>();
  for (let s = graph.stages.find((x) => x.index === graph.target); s && !chain.has(s.index); ) {
    chain.add(s.index);
    const base = s.base;
    s = base.kind === 'stage' ? graph.stages.find((x) => x.index === base.index) : undefined;
  }
  return chain;
}

/** The main context, or the named context of files `name`. */
function contextSourceOf(req: SolveRequest, name: string | undefined): ContextSource {
  if (name === undefined) return req.context;
  const c = req.namedContexts?.get(name);
  if (c?.kind !== 'files') throw new Error(`internal error: no named context of files ${JSON.stringify(name)}`);
  return c.source;
}

/** A linked copy's own snapshot and key. */
interface LinkedCopy {
  own: string;
  key: string;
}

function isFilesystemStep(step: Step): step is FsStep {
  return step.kind === 'run' || step.kind === 'copy' || step.kind === 'workdir';
}
