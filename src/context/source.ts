// A build context as the solver reads it: a directory on this host and the entries a COPY may see.
// Embedded mode reads the user's directory in place (its .dockerignore applied by the walk); the
// daemon reads the copy a client synced (already filtered on the client's side) or a tar it
// extracted. The solver sees only this interface, never where the files came from, as BuildKit's
// solver reads its context through a source rather than a host path.

import { readIgnorePatterns, walkContext, type ContextEntry } from './walk.js';

export interface ContextSource {
  /** Directory on this host holding the context's files, read in place. */
  readonly dir: string;
  /**
   * Stable name of the context across builds (per-context records such as the inputs a step saw
   * last time are keyed by it): the directory in embedded mode, the client's identity in a daemon.
   */
  readonly identity: string;
  /** The entries a COPY may see, in walk order. Walks on every call: callers memoise per build. */
  entries(): Promise<ContextEntry[]>;
  /**
   * Whether loading it is worth a progress line of its own. A synced copy's client already showed
   * "[internal] load build context" with what it transferred; a second one would only confuse.
   */
  readonly quiet?: boolean;
  /**
   * Whether the directory may hold files its entries leave out (an ignore file applies). A RUN
   * bind mount must not see those, as in BuildKit, so it then gets a filtered copy rather than the
   * directory itself. Absent: the directory holds exactly its entries.
   */
  hasIgnored?(): Promise<boolean>;
  /**
   * A name for the exact content of `dir`, when its owner can vouch that the directory does not
   * change while the name stays the same (a daemon's kept copy, which only its uploads change): a
   * content key computed over it under one token holds for every later build with the same token.
   * Absent (a user's directory, which anyone may edit): keys are computed from the files each time.
   */
  readonly contentToken?: string;
}

/**
 * A directory read in place, with its .dockerignore (or `<Dockerfile>.dockerignore` beside the
 * Dockerfile at `dockerfile`) applied.
 */
export function directoryContext(dir: string, opts: { dockerfile?: string; identity?: string; excludes?: readonly string[] } = {}): ContextSource {
  return {
    dir,
    identity: opts.identity ?? dir,
    // `excludes` given: those patterns instead of any ignore file (an unpacked archive has none).
    // With their stats: the content checksum then stats nothing again.
    entries: () =>
      walkContext(dir, { stats: true, ...(opts.dockerfile ? { dockerfile: opts.dockerfile } : {}), ...(opts.excludes ? { excludes: opts.excludes } : {}) }),
    hasIgnored: async () => (opts.excludes ?? (await readIgnorePatterns(dir, opts.dockerfile))).length > 0,
  };
}

/**
 * A directory whose entries are already known (a synced copy, made equal to the client's list): the
 * build need not walk it again.
 */
export function listedContext(dir: string, identity: string, entries: readonly ContextEntry[], contentToken?: string): ContextSource {
  return { dir, identity, quiet: true, entries: async () => [...entries], ...(contentToken !== undefined ? { contentToken } : {}) };
}
