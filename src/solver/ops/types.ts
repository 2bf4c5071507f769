// What a step operation gets from the solver: its inputs already resolved, nothing about scheduling.

import type { ContextEntry } from '../../context/walk.js';
import type { ExecLimits } from '../../executor/index.js';
import type { MountFrom, SourceLocation } from '../../frontend/types.js';
import type { Snapshotter } from '../../snapshotter/index.js';
import type { RootLayout } from '../state-root.js';
import type { SshAgents } from '../ssh-agent.js';

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
