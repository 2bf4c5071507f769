// The stages' links to each other: COPY --from, RUN --mount from= and the base's ONBUILD triggers
// make a stage need others. Collected for every stage before any is dispatched, so a cycle is named
// as a cycle and a reference to a later stage is refused only where BuildKit refuses it (in a
// stage the target needs); then the stages the target reaches.

import { type DockerfileError, InstructionError } from './errors.js';
import { parseInstruction, type Parsed } from './instructions.js';
import { lookupNamedContext, namedContextKey } from './named-contexts.js';
import { ParseError, parseDockerfile, type Node } from './parser.js';
import { isValidReference } from './reference.js';
import { findStageCycle, type StageDeps } from './stage-cycle.js';
import { findStage, type DispatchCtx, type StageDef } from './stage-state.js';
import type { FrontendOptions, MountFrom, StageBase } from './types.js';

/** A named context standing in for a stage or an image (--build-context): the base it gives. */
export function namedBase(contexts: FrontendOptions['namedContexts'], name: string): Exclude<StageBase, { kind: 'stage' }> | undefined {
  const b = lookupNamedContext(contexts, name);
  if (!b) return undefined;
  return b.kind === 'files' ? { kind: 'context', name: namedContextKey(name)! } : { kind: 'image', ref: b.ref };
}

export interface StageLinks {
  /** The stages the target needs, itself included. */
  reached: Set<number>;
  /** Per stage, what each COPY --from of its triggers and instructions names. */
  froms: Map<StageDef, Map<Parsed, MountFrom>>;
  /** Resolves a --from (or from=) while dispatching; a later stage is refused from now on. */
  resolveFrom: DispatchCtx['resolveFrom'];
}

/** Finds every stage's dependencies and triggers, checks for cycles, and walks from the target. */
export function linkStages(err: (line: number, msg: string) => DockerfileError, stages: StageDef[], targetStage: StageDef, opts: FrontendOptions): StageLinks {
  // The line of each stage's first reference to each stage it needs (for the cycle check).
  const depLines: StageDeps[] = stages.map((s) => new Map(s.base.kind === 'stage' ? [[s.base.index, s.location.line]] : []));
  // While the dependencies are collected, a reference to a later stage is recorded, not refused:
  // BuildKit refuses it only when it dispatches that stage (unused stages may have them) and after
  // the cycle check (so stages referring to each other are named as a cycle).
  let collecting = true;
  const forwardRefs: { stage: number; line: number; error: DockerfileError }[] = [];
  const forward = (s: StageDef, i: number, line: number, e: DockerfileError): MountFrom => {
    if (!collecting) throw e;
    s.deps.add(i);
    if (!depLines[s.index].has(i)) depLines[s.index].set(i, line);
    forwardRefs.push({ stage: s.index, line, error: e });
    return { kind: 'stage', index: i };
  };
  const resolveFrom = (from: string, s: StageDef, line: number, allowIndex: boolean, what: string): MountFrom => {
    if (/\$./.test(from)) throw err(line, `${what}=${from}: '--from' doesn't support variable expansion, define alias stage instead`);
    if (allowIndex && /^[+-]?\d+$/.test(from)) {
      const i = Number(from);
      if (i < 0 || i >= stages.length) throw err(line, `${what}=${from}: invalid stage index ${i}`);
      if (i >= s.index)
        return forward(s, i, line, err(line, `${what}=${from}: cannot copy from stage ${i}, it needs to be defined before current stage ${s.index}`));
      s.deps.add(i);
      if (!depLines[s.index].has(i)) depLines[s.index].set(i, line);
      return { kind: 'stage', index: i };
    }
    const st = findStage(stages, from, s.index);
    if (st) {
      s.deps.add(st.index);
      if (!depLines[s.index].has(st.index)) depLines[s.index].set(st.index, line);
      return { kind: 'stage', index: st.index };
    }
    const later = findStage(stages, from, stages.length);
    if (later) {
      return forward(
        s,
        later.index,
        line,
        err(
          line,
          `${what}=${from}: cannot copy from stage ${JSON.stringify(from)}, it needs to be defined before current stage ${JSON.stringify(s.name ?? `stage-${s.index}`)}`,
        ),
      );
    }
    if (!isValidReference(from)) throw err(line, `${what}=${from}: no stage named ${JSON.stringify(from)} and not a valid image reference`);
    const named = namedBase(opts.namedContexts, from);
    if (named?.kind === 'context') return named;
    const ref = named?.kind === 'image' ? named.ref : from;
    if (!s.images.includes(ref)) s.images.push(ref);
    return { kind: 'image', ref };
  };

  const parseTriggers = (s: StageDef, triggers: string[]): Parsed[] =>
    triggers.map((t) => {
      try {
        const r = parseDockerfile(t);
        if (r.nodes.length !== 1) throw new InstructionError('onbuild trigger should be a single expression');
        const node: Node = { ...r.nodes[0], startLine: s.location.line, endLine: s.location.endLine };
        const p = parseInstruction(node);
        if (p.kind === 'from' || p.kind === 'onbuild' || p.kind === 'maintainer')
          throw new InstructionError(`${p.kind.toUpperCase()} isn't allowed as an ONBUILD trigger`);
        return p;
      } catch (e) {
        if (e instanceof InstructionError || e instanceof ParseError)
          throw err(s.location.line, `ONBUILD trigger ${JSON.stringify(t)} of the base image: ${e.message}`);
        throw e;
      }
    });

  const depsOf = new Map<StageDef, Map<Parsed, MountFrom>>();
  for (const s of stages) {
    if (s.replaced) s.triggers = [];
    else if (s.base.kind === 'image') s.triggers = parseTriggers(s, opts.baseImages?.[s.base.ref]?.onBuild ?? []);
    else if (s.base.kind === 'stage') {
      const b = stages[s.base.index];
      s.triggers = parseTriggers(
        s,
        b.commands.flatMap((c) => (c.kind === 'onbuild' ? [c.expression] : [])),
      );
    }
    const froms = new Map<Parsed, MountFrom>();
    for (const c of [...s.triggers, ...s.commands]) {
      if (c.kind === 'copy' && c.from !== undefined) froms.set(c, resolveFrom(c.from, s, c.node.startLine, true, 'COPY --from'));
    }
    depsOf.set(s, froms);
  }

  // ---- reachability from the target ----
  const reached = new Set<number>();
  const visit = (i: number) => {
    if (reached.has(i)) return;
    reached.add(i);
    for (const d of stages[i].deps) visit(d);
  };
  // RUN --mount from= adds dependencies too; they are found while scanning the flags below.
  for (const s of stages) {
    for (const c of [...s.triggers, ...s.commands]) {
      if (c.kind !== 'run') continue;
      for (const raw of c.mounts) {
        const from = mountFromValue(raw);
        if (from !== undefined && from !== '') resolveFrom(from, s, c.node.startLine, false, 'RUN --mount from');
      }
    }
  }
  collecting = false;
  const cycle = findStageCycle(depLines);
  if (cycle) throw err(cycle.line, `circular dependency detected on stage: ${stages[cycle.stage].name ?? `stage-${cycle.stage}`}`);
  visit(targetStage.index);
  // The first stage BuildKit would dispatch with a reference to a later one.
  const refused = forwardRefs.filter((f) => reached.has(f.stage)).sort((a, b) => a.stage - b.stage || a.line - b.line)[0];
  if (refused) throw refused.error;

  return { reached, froms: depsOf, resolveFrom };
}

/** The raw from= of a --mount value, without parsing the rest (used for the dependency scan). */
function mountFromValue(raw: string): string | undefined {
  for (const f of raw.split(',')) {
    const eq = f.indexOf('=');
    if (eq > 0 && f.slice(0, eq).trim().toLowerCase() === 'from') return f.slice(eq + 1);
  }
  return undefined;
}
