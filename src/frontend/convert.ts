// Typed instructions -> BuildGraph: stages and targets, build args and variable expansion, the image
// config each stage ends with, history texts and lint findings. The semantics follow BuildKit's
// dockerfile2llb (convert.go); where kiln's contract differs on purpose the comment says so.
// This file is the whole-Dockerfile part (stages, global args, bases, dependencies, the order of
// dispatch); one instruction's translation is dispatch.ts's (RUN: dispatch-run.ts, COPY/ADD:
// dispatch-copy.ts), on the state stage-state.ts defines.

import { DockerfileError, InstructionError } from './errors.js';
import { isKnownInstruction, parseInstruction, type Parsed } from './instructions.js';
import { Linter, parseCheckDirective, suggest } from './lint.js';
import { resolveSourceDateEpoch, SOURCE_DATE_EPOCH } from './epoch.js';
import { ParseError, parseDockerfile, type Escape, type Node } from './parser.js';
import { formatPlatform, parsePlatform } from './platform.js';
import { lookupNamedContext, namedContextKey } from './named-contexts.js';
import { isValidReference } from './reference.js';
import { processWord } from './shell-lex.js';
import { findStageCycle, type StageDeps } from './stage-cycle.js';
import type { BaseImageConfig, BuildGraph, FrontendOptions, MountFrom, Platform, SourceLocation, Stage, StageBase, Step } from './types.js';
import {
  PROXY_ARGS,
  PLATFORM_ARGS,
  type Env,
  type StageDef,
  type State,
  clone,
  envSet,
  envGet,
  findStage,
  initialState,
  type DispatchCtx,
} from './stage-state.js';
import { dispatch } from './dispatch.js';

export function convert(text: string, opts: FrontendOptions): BuildGraph {
  const file = opts.filename;
  const err = (line: number, msg: string) => new DockerfileError(file, line, msg);
  if (text.replace(/^\ufeff/, '').length === 0) throw err(0, 'the Dockerfile cannot be empty');

  let parsed;
  try {
    parsed = parseDockerfile(text);
  } catch (e) {
    if (e instanceof ParseError) throw err(e.line, e.message);
    throw e;
  }
  const { nodes, directives } = parsed;
  const escape: Escape = directives.escape;

  let lintCfg;
  try {
    lintCfg = parseCheckDirective(directives.check);
  } catch (e) {
    throw err(directives.lines.check ?? 1, `failed to parse check options: ${(e as Error).message}`);
  }
  const lint = new Linter(lintCfg);
  const loc = (n: { startLine: number; endLine: number }): SourceLocation => ({ file, line: n.startLine, endLine: n.endLine });

  for (const n of nodes) {
    for (const l of n.emptyContinuationLines) lint.run('NoEmptyContinuation', { file, line: l, endLine: l });
  }

  // ---- instructions and stages ----
  const metaArgs: (Parsed & { kind: 'arg' })[] = [];
  const stages: StageDef[] = [];
  const allInstructions: Parsed[] = [];
  for (const n of nodes) {
    let p: Parsed;
    try {
      p = parseInstruction(n);
    } catch (e) {
      if (e instanceof InstructionError) throw err(n.startLine, e.message);
      throw e;
    }
    allInstructions.push(p);
    if (p.kind === 'from') {
      stages.push({
        index: stages.length,
        from: p,
        name: p.name,
        commands: [],
        location: loc(n),
        base: { kind: 'scratch' },
        deps: new Set(),
        images: [],
        triggers: [],
      });
      if (p.nameAsWritten && p.nameAsWritten !== p.nameAsWritten.toLowerCase()) lint.run('StageNameCasing', loc(n), p.nameAsWritten);
      if (p.asKeyword) {
        const fromLower = n.cmd === n.cmd.toLowerCase();
        const fromUpper = n.cmd === n.cmd.toUpperCase();
        if ((fromLower && p.asKeyword !== p.asKeyword.toLowerCase()) || (fromUpper && !fromLower && p.asKeyword !== p.asKeyword.toUpperCase())) {
          lint.run('FromAsCasing', loc(n), n.cmd, p.asKeyword);
        }
      }
      continue;
    }
    if (stages.length === 0) {
      if (p.kind === 'arg') {
        metaArgs.push(p);
        continue;
      }
      throw err(
        n.startLine,
        `${n.cmd.toUpperCase()} instruction before the first FROM: only ARG instructions, parser directives and comments may precede FROM`,
      );
    }
    if (p.kind === 'maintainer') lint.run('MaintainerDeprecated', loc(n));
    stages[stages.length - 1].commands.push(p);
  }
  if (stages.length === 0) {
    const last = nodes.length ? nodes[nodes.length - 1].startLine : 0;
    throw err(last, 'no FROM instruction: the Dockerfile contains no stages to build');
  }

  // ConsistentInstructionCasing over every stage (meta ARGs are not counted, as in BuildKit).
  {
    const names: { cmd: string; l: SourceLocation }[] = [];
    for (const s of stages) {
      names.push({ cmd: s.from.node.cmd, l: s.location });
      for (const c of s.commands) names.push({ cmd: c.node.cmd, l: loc(c.node) });
    }
    const consistent = (c: string) => c === c.toLowerCase() || c === c.toUpperCase();
    let lower = 0;
    let upper = 0;
    for (const { cmd } of names) {
      if (!consistent(cmd)) continue;
      if (cmd === cmd.toLowerCase()) lower++;
      else upper++;
    }
    const majorityLower = lower > upper;
    for (const { cmd, l } of names) {
      if (majorityLower && cmd !== cmd.toLowerCase()) lint.run('ConsistentInstructionCasing', l, cmd, 'lowercase');
      else if (!majorityLower && cmd !== cmd.toUpperCase()) lint.run('ConsistentInstructionCasing', l, cmd, 'uppercase');
    }
  }
  {
    const seen = new Set<string>();
    for (const s of stages) {
      if (!s.name) continue;
      if (s.name === 'context' || s.name === 'scratch') lint.run('ReservedStageName', s.location, s.name);
      // BuildKit builds files with duplicate stage names (the later definition wins) and only warns.
      if (seen.has(s.name)) lint.run('DuplicateStageName', s.location, s.name);
      seen.add(s.name);
    }
  }

  // ---- platforms and global (meta) args ----
  const buildPlatform: Platform = opts.buildPlatform ?? { os: 'linux', architecture: 'amd64' };
  const targetPlatform: Platform = opts.targetPlatform ?? buildPlatform;
  const given = new Map<string, string>();
  for (const [k, v] of Object.entries(opts.buildArgs ?? {})) if (v !== undefined) given.set(k, v);

  let targetStage: StageDef;
  if (opts.target) {
    const t = findStage(stages, opts.target, stages.length);
    if (!t) throw err(0, `target stage ${JSON.stringify(opts.target)} could not be found`);
    targetStage = t;
  } else {
    targetStage = stages[stages.length - 1];
  }

  const defaultArgs = (): Env => {
    const e: Env = [
      ['BUILDPLATFORM', formatPlatform(buildPlatform)],
      ['BUILDOS', buildPlatform.os],
      ['BUILDARCH', buildPlatform.architecture],
      ['BUILDVARIANT', buildPlatform.variant ?? ''],
      ['TARGETPLATFORM', formatPlatform(targetPlatform)],
      ['TARGETOS', targetPlatform.os],
      ['TARGETARCH', targetPlatform.architecture],
      ['TARGETVARIANT', targetPlatform.variant ?? ''],
      ['TARGETSTAGE', targetStage.name ?? ''],
    ];
    for (const kv of e) {
      const o = given.get(kv[0]);
      if (o !== undefined) kv[1] = o;
    }
    return e;
  };

  const word = (w: string, env: Env, line: number) => {
    try {
      return processWord(w, (k) => envGet(env, k), escape);
    } catch (e) {
      throw err(line, (e as Error).message);
    }
  };

  const buildMetaArgs = (withGiven: boolean): Env => {
    const env = defaultArgs();
    for (const a of metaArgs) {
      for (const kv of a.args) {
        let v: string | undefined;
        if (withGiven && given.has(kv.key)) v = given.get(kv.key);
        else if (kv.value !== undefined) v = word(kv.value, env, a.node.startLine).result;
        if (v !== undefined) envSet(env, kv.key, v);
      }
    }
    return env;
  };
  const globalArgs = buildMetaArgs(true);
  const sdeArg = [...metaArgs].reverse().find((a) => a.args.some((kv) => kv.key === SOURCE_DATE_EPOCH));
  const sourceDateEpoch = resolveSourceDateEpoch(
    given.get(SOURCE_DATE_EPOCH),
    sdeArg && { value: envGet(globalArgs, SOURCE_DATE_EPOCH) ?? '', line: sdeArg.node.startLine },
    err,
  );
  const declaredGlobal = new Set([...metaArgs.flatMap((a) => a.args.map((kv) => kv.key)), ...globalArgs.map(([k]) => k)]);

  // InvalidDefaultArgInFrom: would the FROM line still name an image with no --build-arg given?
  {
    let defaults: Env | undefined;
    try {
      defaults = buildMetaArgs(false);
    } catch {
      defaults = undefined;
    }
    if (defaults) {
      for (const s of stages) {
        let r: string;
        try {
          r = processWord(s.from.base, (k) => envGet(defaults!, k), escape).result;
        } catch {
          continue;
        }
        if (r !== 'scratch' && !findStage(stages, r, s.index) && !isValidReference(r)) lint.run('InvalidDefaultArgInFrom', s.location, s.from.base);
      }
    }
  }

  // ---- resolve every stage's base ----
  const namedBase = (name: string): Exclude<StageBase, { kind: 'stage' }> | undefined => {
    const b = lookupNamedContext(opts.namedContexts, name);
    if (!b) return undefined;
    return b.kind === 'files' ? { kind: 'context', name: namedContextKey(name)! } : { kind: 'image', ref: b.ref };
  };
  for (const s of stages) {
    const line = s.location.line;
    const m = word(s.from.base, globalArgs, line);
    for (const u of m.unmatched) if (!declaredGlobal.has(u)) lint.run('UndefinedArgInFrom', s.location, u, suggest(u, declaredGlobal));
    if (m.result === '') throw err(line, `base name (${s.from.base}) should not be blank`);
    if (s.from.platform !== undefined) {
      const pm = word(s.from.platform, globalArgs, line);
      for (const u of pm.unmatched) if (!declaredGlobal.has(u)) lint.run('UndefinedArgInFrom', s.location, u, suggest(u, declaredGlobal));
      if (pm.result === '') throw err(line, `empty platform value from expression ${s.from.platform}`);
      if (pm.matched.size === 1 && pm.unmatched.size === 0 && pm.matched.has('TARGETPLATFORM') && pm.result === envGet(globalArgs, 'TARGETPLATFORM')) {
        lint.run('RedundantTargetPlatform', s.location, s.from.platform);
      }
      try {
        s.platform = parsePlatform(pm.result, targetPlatform);
      } catch (e) {
        throw err(line, `failed to parse platform ${s.from.platform}: ${(e as Error).message}`);
      }
      if (pm.matched.size === 0 && pm.unmatched.size === 0) {
        const n = s.name ?? '';
        if (!n.includes(s.platform.os) && !n.includes(s.platform.architecture)) lint.run('FromPlatformFlagConstDisallowed', s.location, pm.result);
      }
      s.platformStr = pm.result;
    }
    // A named context of the stage's own name replaces the stage, instructions and all (BuildKit's
    // pinning pattern); one named like the base is used instead of that image.
    const own = s.name !== undefined ? namedBase(s.name) : undefined;
    if (own) {
      s.base = own;
      if (own.kind === 'image') s.images.push(own.ref);
      s.commands = [];
      s.replaced = true;
      continue;
    }
    const baseStage = findStage(stages, m.result, s.index);
    const named = baseStage || m.result === 'scratch' ? undefined : namedBase(m.result);
    if (named) {
      s.base = named;
      if (named.kind === 'image') s.images.push(named.ref);
    } else if (baseStage) {
      s.base = { kind: 'stage', index: baseStage.index };
      s.deps.add(baseStage.index);
    } else if (m.result === 'scratch') {
      s.base = { kind: 'scratch' };
    } else {
      if (!isValidReference(m.result)) throw err(line, `base name ${JSON.stringify(m.result)} is not a valid image reference or stage name`);
      s.base = { kind: 'image', ref: m.result };
      s.images.push(m.result);
    }
  }

  // ---- dependencies: COPY --from, RUN --mount from=, and ONBUILD triggers ----
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
    const named = namedBase(from);
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

  // ---- dispatch ----
  const finals = new Map<number, State>();
  const consumed = new Set<string>(metaArgs.flatMap((a) => a.args.map((kv) => kv.key)));
  const unresolved: string[] = [];
  const out: Stage[] = [];

  for (const s of stages) {
    if (!reached.has(s.index)) continue;
    let st: State;
    const base = s.base;
    if (base.kind === 'stage') {
      st = clone(finals.get(base.index)!);
      st.config.onBuild = []; // the base stage's triggers run here, and are consumed
    } else {
      // FROM scratch is BuildKit's emptyImage(targetPlatform), and the stage's platform is reset to
      // the target's: a --platform on a scratch stage changes neither (BuildKit 0.8 and current).
      // A named context of files is an empty image with those files, as BuildKit's local source.
      const empty = base.kind === 'scratch' || base.kind === 'context';
      const platform = empty ? targetPlatform : (s.platform ?? targetPlatform);
      let img: BaseImageConfig | undefined;
      if (base.kind === 'image') {
        img = opts.baseImages?.[base.ref];
        if (!img && !unresolved.includes(base.ref)) unresolved.push(base.ref);
      }
      // A stage replaced by files has no image config at all in BuildKit (not even emptyImage's
      // WorkingDir "/"); PATH is still set here, as BuildKit sets it in a stage built on it.
      st = initialState(img, platform, empty && !s.replaced);
    }
    if (s.platform && base.kind !== 'scratch' && base.kind !== 'context') st.platform = s.platform;
    for (const ref of s.images)
      if (ref !== (base.kind === 'image' ? base.ref : '') && !opts.baseImages?.[ref] && !unresolved.includes(ref)) unresolved.push(ref);

    const steps: Step[] = [];
    const trackers = { cmd: 0, entrypoint: 0, healthcheck: 0 };
    const cmdSet = { value: false };
    const ctx: DispatchCtx = {
      file,
      escape,
      lint,
      given,
      globalArgs,
      consumed,
      stage: s,
      stages,
      froms: depsOf.get(s)!,
      trackers,
      cmdSet,
      resolveFrom,
      err,
    };
    for (const c of s.triggers) steps.push(...dispatch(ctx, st, c, true));
    for (const c of s.commands) steps.push(...dispatch(ctx, st, c, false));
    finals.set(s.index, st);

    const config = clone(st.config);
    config.exposedPorts = [...new Set(config.exposedPorts)].sort();
    config.volumes = [...new Set(config.volumes)].sort();
    out.push({
      index: s.index,
      name: s.name,
      location: s.location,
      base: s.base,
      platform: s.platformStr,
      steps,
      dependsOn: [...s.deps].sort((a, b) => a - b),
      config,
    });
  }

  // SOURCE_DATE_EPOCH is read by the frontend itself (and filled from the client's environment).
  const predefined = new Set([...PROXY_ARGS, ...PLATFORM_ARGS.map((a) => a.toLowerCase()), SOURCE_DATE_EPOCH.toLowerCase()]);
  const unusedBuildArgs = Object.keys(opts.buildArgs ?? {})
    .filter((k) => !consumed.has(k) && !predefined.has(k.toLowerCase()))
    .sort();

  return {
    stages: out,
    target: targetStage.index,
    syntax: directives.syntax,
    escape,
    unresolvedImages: unresolved,
    warnings: lint.sorted(),
    unusedBuildArgs,
    ...(sourceDateEpoch !== undefined && { sourceDateEpoch }),
  };
}

/** The raw from= of a --mount value, without parsing the rest (used for the dependency scan). */
function mountFromValue(raw: string): string | undefined {
  for (const f of raw.split(',')) {
    const eq = f.indexOf('=');
    if (eq > 0 && f.slice(0, eq).trim().toLowerCase() === 'from') return f.slice(eq + 1);
  }
  return undefined;
}

export { isKnownInstruction };
