// The contract between the solver and the kinds of step it runs (BuildKit's Op: CacheMap, Exec):
// an Op says what a step's cache key is made of and how the step is made; the solver decides when,
// how often (identical steps once) and what is cached. Ops get their inputs resolved, nothing
// about scheduling; the solver keys and makes every step through its op, never by its kind (it
// still tells a COPY --link, whose scheduling differs, and which steps make snapshots at all).

import type { SelectOptions } from '../../cache/checksum.js';
import type { ContextEntry } from '../../context/walk.js';
import type { ExecLimits } from '../../executor/index.js';
import type { ResolvedGit } from '../../fileop/index.js';
import type { CopyStep, MountFrom, Platform, RunStep, SourceLocation, WorkdirStep } from '../../frontend/types.js';
import type { Snapshotter } from '../../snapshotter/index.js';
import type { StepInputs } from '../explain.js';
import type { GitContext } from '../git-sources.js';
import type { CopyManifests } from '../incremental-copy.js';
import type { RootLayout } from '../state-root.js';
import type { SshAgents } from '../ssh-agent.js';

/** The steps that make a snapshot (the others only change the image config). */
export type FsStep = RunStep | CopyStep | WorkdirStep;

/** What a step's cache key is made of (`material`), and what is kept to explain a later miss. */
export interface CacheInputs {
  material: unknown;
  inputs: Omit<StepInputs, 'key' | 'parentKey' | 'parent' | 'instruction'>;
}

/** What the solver lends an op to find its cache inputs. */
export interface KeyContext {
  /** The platform the stage's steps are for. */
  platform: Platform;
  /**
   * The key of what `from` names: the content of `sources` in a context (per-path digests into
   * `perPath` when given), a stage's key, an image's manifest digest.
   */
  sourceKey(from: MountFrom, sources: string[], select?: SelectOptions, perPath?: Record<string, string>): Promise<string>;
  /** The commits an ADD's git URLs resolve to now (once per build; exec checks out exactly these). */
  resolveGit(step: CopyStep): Promise<ReadonlyMap<string, ResolvedGit>>;
}

/** What the solver lends an op to make its step's snapshot `name` on `parent`. */
export interface ExecContext {
  /** What the file operations and the executor use. */
  op: OpContext;
  parent: string | undefined;
  name: string;
  /** The platform the step's programs run for (the base image's). */
  platform: Platform;
  /** What the step saw the last time it ran here, and now (an incremental COPY plans from them); none without the cache. */
  history?: { previous?: StepInputs; current: StepInputs };
  /** RUN containers are capped across builds: `fn` runs in that queue. */
  queueRun<T>(fn: () => Promise<T>): Promise<T>;
  /** What each COPY result holds, for the next build's incremental copy. */
  copyManifests: CopyManifests;
  /** The build's git settings, and what the step's git URLs resolved to for its key. */
  git: { context: GitContext; resolved?: ReadonlyMap<string, ResolvedGit> };
  /** A line of the step's own output (its vertex's log). */
  log(text: string): void;
}

/** One kind of step, as the solver drives it. */
export interface Op<S extends FsStep> {
  /** Refuses a step the build may not run (a privilege not granted), before the cache is asked: a result made with a privilege is no more the build's to take than to make. */
  admit?(step: S, allow: readonly Entitlement[]): void;
  cacheInputs(step: S, k: KeyContext): Promise<CacheInputs>;
  exec(step: S, x: ExecContext): Promise<void>;
}

/** The op of each kind of step. A solver may be given others (a test's fake RUN, say). */
export interface OpTable {
  run: Op<RunStep>;
  copy: Op<CopyStep>;
  workdir: Op<WorkdirStep>;
}

/** How a source is named where a miss is explained ("build context", "stage 1", "image alpine"). */
export function describeFrom(from: MountFrom): string {
  if (from.kind === 'context') return from.name === undefined ? 'build context' : `context ${from.name}`;
  return from.kind === 'stage' ? `stage ${from.index}` : `image ${from.ref}`;
}

/** BuildKit's entitlements: privileges a step may use only when the build asks and kiln permits. */
export type Entitlement = 'network.host' | 'security.insecure';
export const ENTITLEMENTS: readonly Entitlement[] = ['network.host', 'security.insecure'];

export interface OpContext {
  snapshotter: Snapshotter;
  layout: RootLayout;
  /** Host directory of the build context (see ContextSource). */
  contextDir: string;
  /** The context as the .dockerignore lets it through; walked once per build. */
  contextEntries(): Promise<ContextEntry[]>;
  /** The main context (no name) or a named context of files (--build-context NAME=DIR). */
  context(name?: string): { dir: string; entries(): Promise<ContextEntry[]> };
  /**
   * For a RUN bind mount of a context: a committed snapshot of its entries when its directory holds
   * files they leave out (.dockerignore), else undefined (the directory is mounted as it is).
   */
  filteredContext(name?: string): Promise<string | undefined>;
  /** Committed snapshot for a `--from` / `from=` source (undefined: empty, e.g. scratch). */
  sourceSnapshot(from: Exclude<MountFrom, { kind: 'context' }>): Promise<string | undefined>;
  /** Network for RUN steps that do not choose one. */
  network: 'host' | 'none';
  /** Entitlements the build asked for and kiln's configuration permits. */
  allow: readonly Entitlement[];
  /** cgroup limits for RUN containers. */
  limits: ExecLimits;
  /** Fills a newly made cache mount directory from an imported cache, when there is one. */
  seedCacheMount?: (id: string, dir: string) => Promise<void>;
  /** The build's secrets by id (--secret): mounted into the steps that ask, never part of a key. */
  secrets?: ReadonlyMap<string, Uint8Array>;
  /** The build's SSH agents by id (--ssh). */
  sshAgents?: SshAgents;
  signal?: AbortSignal;
  log(stream: 'stdout' | 'stderr', chunk: Buffer): void;
}

/**
 * A step that failed; the message starts with the Dockerfile location, as every kiln build error
 * does. What a caller may want to show separately (a RUN's exit code and last lines of output) are
 * fields, never text to parse back out of the message.
 */
export class StepError extends Error {
  readonly exitCode?: number;
  readonly outputTail?: string;

  constructor(
    readonly location: SourceLocation,
    message: string,
    options?: { cause?: unknown; exitCode?: number; outputTail?: string },
  ) {
    super(`${location.file}:${location.line}: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StepError';
    if (options?.exitCode !== undefined) this.exitCode = options.exitCode;
    if (options?.outputTail) this.outputTail = options.outputTail;
  }
}
