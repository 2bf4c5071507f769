// The build API: plain data that serialises, so the same request can go in-process (embedded mode)
// or over HTTP to a daemon.

import type { BuildGraph, LintFinding } from '../frontend/types.js';

export interface BuildRequest {
  /** Context directory (embedded mode reads it in place). */
  contextDir: string;
  /** The Dockerfile: its display name (for errors) and its text. */
  dockerfile: { name: string; text: string };
  buildArgs: Record<string, string | undefined>;
  target?: string;
  /** Translate only: return the step graph, run nothing. */
  dryRun: boolean;
}

export interface BuildResult {
  graph: BuildGraph;
  warnings: LintFinding[];
}

export type { BuildGraph, LintFinding };
