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
  const used = new Set<string>();
  // `name`: a named context (--build-context NAME=DIR), read by the steps that name it. A stage
  // built FROM it has every file of it.
  const ours = (from: MountFrom | undefined) => from?.kind === 'context' && from.name === name;
  const read = (sources: readonly string[], opts: { parents?: boolean; exclude?: readonly string[] } = {}) => {
    if (sources.length === 0) return;
    for (const e of selectEntries(entries, sources, opts).entries) {
      // "" is the context root itself (COPY . .): everything below it is in the selection too.
      for (let p = e.path; p !== '' && !used.has(p); p = parentOf(p)) used.add(p);
    }
  };
  // The whole context (COPY . /app, no --exclude): every entry, without selecting (the common case,
  // and for 10,000 files a noticeable part of a warm build's client).
  const whole = (sources: readonly string[], exclude?: readonly string[]) =>
    !exclude?.length &&
    sources.some((s) => {
      const c = cleanPath(s);
      return c === '.' || c === '/';
    });
  for (const stage of reachableStages(graph)) {
    if (name !== undefined && stage.base.kind === 'context' && stage.base.name === name) return [...entries];
    for (const step of stage.steps) {
      if (step.kind === 'copy' && ours(step.from) && whole(step.sources, step.exclude)) return [...entries];
      if (step.kind === 'run' && step.mounts.some((m) => (m.type === 'bind' || m.type === 'cache') && ours(m.from) && whole([m.source]))) return [...entries];
      if (step.kind === 'copy' && ours(step.from)) read(step.sources, { parents: step.parents, exclude: step.exclude });
      if (step.kind === 'run') {
        for (const m of step.mounts) {
          if ((m.type === 'bind' || m.type === 'cache') && ours(m.from)) read([m.source]);
        }
      }
    }
  }
  return entries.filter((e) => used.has(e.path));
}

/**
 * Whether the stages the target reaches read the context at all (main when `name` is undefined):
 * a COPY/ADD from it, a bind or cache mount of it, or a stage built FROM a named one.
 */
export function readsContext(graph: BuildGraph, name?: string): boolean {
  const ours = (from: MountFrom | undefined) => from?.kind === 'context' && from.name === name;
  return reachableStages(graph).some(
    (stage) =>
      (name !== undefined && stage.base.kind === 'context' && stage.base.name === name) ||
      stage.steps.some(
        (step) =>
          (step.kind === 'copy' && ours(step.from) && step.sources.length > 0) ||
          (step.kind === 'run' && step.mounts.some((m) => (m.type === 'bind' || m.type === 'cache') && ours(m.from))),
      ),
  );
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
