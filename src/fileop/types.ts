// What a COPY/ADD needs to run, and what it reports back. A CopyStep from the frontend is a valid
// CopySpec as it is (the extra fields are ignored), so the solver hands the step straight through.

import type { SourceLocation } from '../frontend/types.js';
import type { ContextEntry } from '../context/walk.js';
import type { GitRunOptions, ResolvedGit } from './git.js';

export interface GitSourceOptions extends GitRunOptions {
  /** A temporary directory of kiln's root for the checkouts. */
  tmpDir: string;
  /** Git URLs (as written) already resolved to commits for the cache key: exactly those are checked out. */
  resolved?: ReadonlyMap<string, ResolvedGit>;
}

export interface CopySpec {
  instruction: 'COPY' | 'ADD';
  /** Source paths or patterns as written (relative to the source root; `..` cannot leave it). */
  sources: string[];
  /** ADD: http(s) URLs and git repositories. */
  urls?: string[];
  /** Heredoc sources: files with inline content. */
  inline?: { name: string; content: string }[];
  /** Absolute destination inside the rootfs (the frontend has joined it to WORKDIR). */
  dest: string;
  /** The destination was written with a trailing "/" (or "." ): it is a directory. */
  destIsDir: boolean;
  chown?: string;
  chmod?: string;
  parents?: boolean;
  exclude?: string[];
  /** ADD --checksum: sha256:... for an http(s) URL, a commit sha (or prefix) for git. */
  checksum?: string;
  /** ADD of a git repository: keep its .git directory. */
  keepGitDir?: boolean;
  /** ADD: extract local tar archives. */
  unpack?: boolean;
  /** For error messages. */
  location?: SourceLocation;
}

/**
 * Where sources come from.
 *  - context: the build context directory; only what the .dockerignore walk lists is visible.
 *    `entries` is walkContext's output (walked here from the ignore file when absent). Ownership
 *    of copied files becomes 0:0, as BuildKit's context transfer resets it.
 *  - rootfs: a mounted stage or image root; everything is visible and ownership is preserved.
 */
export type CopySource = { kind: 'context'; dir: string; entries?: readonly ContextEntry[]; dockerfile?: string } | { kind: 'rootfs'; dir: string };

export interface CopyOp {
  spec: CopySpec;
  /** Required when spec.sources is not empty. */
  source?: CopySource;
  /** Host directory of the destination rootfs. */
  destRoot: string;
  /** ADD of git repositories: where to check out, how to run git, refs resolved already. */
  git?: GitSourceOptions;
  /** Limits for ADD <url> downloads. */
  http?: { timeoutMs?: number; maxBytes?: number };
  /**
   * For an incremental COPY: whether the copy of source `srcRel` (source-root-relative) made by an
   * earlier run of this same COPY is at `target` (rootfs-absolute) already, and as what. An answer
   * vouches that the source is the same non-directory as then: the entry is left as it is, with no
   * stat of either side.
   */
  reuse?: (srcRel: string, target: string) => 'file' | 'other' | undefined;
}

/** One thing a copy wrote: its source, its target (rootfs-absolute) and what kind it is. */
export interface WrittenEntry {
  src: string;
  target: string;
  type: 'dir' | 'file' | 'other';
}

export interface CopySummary {
  files: number;
  directories: number;
  symlinks: number;
  hardlinks: number;
  /** Bytes of regular file content written (copied, extracted, downloaded or inline). */
  bytes: number;
  /** Entries written by extracting archives (ADD). */
  extracted: number;
  /** URLs fetched (ADD). */
  downloaded: string[];
  /** Destination paths (rootfs-absolute) of the top-level items, in order, for progress output. */
  targets: string[];
  /** Entries left in place because `reuse` said their earlier copy stands. */
  reused: number;
  /** Every entry copied from the source tree (not archives, URLs or heredocs), for a later incremental copy. */
  written: WrittenEntry[];
}

export function emptySummary(): CopySummary {
  return { files: 0, directories: 0, symlinks: 0, hardlinks: 0, bytes: 0, extracted: 0, downloaded: [], targets: [], reused: 0, written: [] };
}

/** A COPY/ADD failure; the message starts with the Dockerfile location when it is known. */
export class CopyError extends Error {
  constructor(
    message: string,
    readonly location?: SourceLocation,
    options?: { cause?: unknown },
  ) {
    super(location ? `${location.file}:${location.line}: ${message}` : message, options);
    this.name = 'CopyError';
  }
}
