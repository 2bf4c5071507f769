// Which files of the build context a build can read, so a client sends only those to a daemon (what
// BuildKit's include patterns achieve). It is computed with the very selection rules COPY's cache key
// uses (cache/checksum-select), so what travels is exactly what a COPY or bind mount may read: a
// file left out can never change a step, and a file a step reads is never left out.

import { selectEntries } from '../cache/checksum-select.js';
import { cleanPath } from '../context/gopath.js';
import type { ContextEntry } from '../context/index.js';
import type { BuildGraph, MountFrom, Stage } from '../frontend/types.js';

/**
 * The entries of `entries` (a .dockerignore-filtered walk, in walk order) that the stages the target
 * reaches can read through COPY/ADD from the context and bind mounts of it, with every directory
 * above them (the receiver needs a file's parents). Base images' ONBUILD triggers are not known to a
 * graph planned without them, so a caller that plans on its own sees only the Dockerfile's steps.
 */
export function contextUsage(graph: BuildGraph, entries: readonly ContextEntry[], name?: string): ContextEntry[] {
  // The whole context (COPY . /app, no --exclude): every entry, without selecting (the common case,
  // and for 10,000 files a noticeable part of a warm build's client).
  const whole = (sources: readonly string[], exclude?: readonly string[]) =>
    !exclude?.length &&
    sources.some((s) => {
      const c = cleanPath(s);
      return c === '.' || c === '/';
    });
  const reads = [...contextReads(graph, name)];
  if (reads.some((r) => r.all || whole(r.sources, r.exclude))) return [...entries];
  const used = new Set<string>();
  for (const r of reads) {
    if (r.all || r.sources.length === 0) continue;
    for (const e of selectEntries(entries, r.sources, { parents: r.parents, exclude: r.exclude }).entries) {
      // "" is the context root itself (COPY . .): everything below it is in the selection too.
      for (let p = e.path; p !== '' && !used.has(p); p = parentOf(p)) used.add(p);
    }
  }
  return entries.filter((e) => used.has(e.path));
}

/**
 * Whether the stages the target reaches read the context at all (main when `name` is undefined):
 * a COPY/ADD from it, a bind or cache mount of it, or a stage built FROM a named one.
 */
export function readsContext(graph: BuildGraph, name?: string): boolean {
  for (const r of contextReads(graph, name)) if (r.all || r.sources.length > 0) return true;
  return false;
}

/** One way a build reads a context: all of it, or what some sources select. */
type ContextRead = { all: true } | { all: false; sources: readonly string[]; parents?: boolean; exclude?: readonly string[] };

/**
 * Every read of the context `name` (main when undefined) by the stages the target reaches: a stage
 * built FROM it (a named one) has all of it; a COPY/ADD from it and a bind or cache mount of it
 * read their sources.
 */
function* contextReads(graph: BuildGraph, name: string | undefined): Generator<ContextRead> {
  const ours = (from: MountFrom | undefined) => from?.kind === 'context' && from.name === name;
  for (const stage of reachableStages(graph)) {
    if (name !== undefined && stage.base.kind === 'context' && stage.base.name === name) yield { all: true };
    for (const step of stage.steps) {
      if (step.kind === 'copy' && ours(step.from)) yield { all: false, sources: step.sources, parents: step.parents, exclude: step.exclude };
      if (step.kind === 'run') {
        for (const m of step.mounts) if ((m.type === 'bind' || m.type === 'cache') && ours(m.from)) yield { all: false, sources: [m.source] };
      }
    }
  }
}

function parentOf(p: string): string {
  const slash = p.lastIndexOf('/');
  return slash < 0 ? '' : p.slice(0, slash);
}

/** The target stage and every stage it needs, directly or through others. */
function reachableStages(graph: BuildGraph): Stage[] {
  const byIndex = new Map(graph.stages.map((s) => [s.index, s]));
  const seen = new Set<number>();
  const out: Stage[] = [];
  const visit = (index: number) => {
    if (seen.has(index)) return;
    seen.add(index);
    const stage = byIndex.get(index);
    if (!stage) return;
    out.push(stage);
    if (stage.base.kind === 'stage') visit(stage.base.index);
    for (const dep of stage.dependsOn) visit(dep);
  };
  visit(graph.target);
  return out;
}
