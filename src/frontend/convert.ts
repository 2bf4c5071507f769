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
import { isValidReference } from './reference.js';
import { processWord } from './shell-lex.js';
import type { BaseImageConfig, BuildGraph, FrontendOptions, Platform, SourceLocation, Stage, Step } from './types.js';
import { linkStages, namedBase, type StageLinks } from './stage-links.js';
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
  const doc = readDockerfile(text, opts.filename);
  const { metaArgs, stages } = collectStages(doc);
  lintStageNames(doc, stages);
  const args = resolveGlobalArgs(doc, metaArgs, stages, opts);
  resolveBases(doc, stages, args, opts);
  const links = linkStages(doc.err, stages, args.targetStage, opts);
  const { out, unresolved, consumed } = dispatchStages(doc, stages, metaArgs, links, args, opts);

  // SOURCE_DATE_EPOCH is read by the frontend itself (and filled from the client's environment).
  const predefined = new Set([...PROXY_ARGS, ...PLATFORM_ARGS.map((a) => a.toLowerCase()), SOURCE_DATE_EPOCH.toLowerCase()]);
  const unusedBuildArgs = Object.keys(opts.buildArgs ?? {})
    .filter((k) => !consumed.has(k) && !predefined.has(k.toLowerCase()))
    .sort();

  return {
    stages: out,
    target: args.targetStage.index,
    syntax: doc.syntax,
    escape: doc.escape,
    unresolvedImages: unresolved,
    warnings: doc.lint.sorted(),
    unusedBuildArgs,
    ...(args.sourceDateEpoch !== undefined && { sourceDateEpoch: args.sourceDateEpoch }),
  };
}

/** The Dockerfile as parsed, and what every phase reports through: its lint findings and errors. */
interface Doc {
  file: string;
  escape: Escape;
  syntax?: string;
  nodes: Node[];
  lint: Linter;
  err: (line: number, msg: string) => DockerfileError;
  loc: (n: { startLine: number; endLine: number }) => SourceLocation;
}

/** Parses the text, its directives (escape, syntax, check) and the lint configuration they give. */
function readDockerfile(text: string, file: string): Doc {
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
  return { file, escape, ...(directives.syntax !== undefined ? { syntax: directives.syntax } : {}), nodes, lint, err, loc };
}

/** The instructions, each stage's under its FROM, and the global ARGs before the first FROM. */
function collectStages(doc: Doc): { metaArgs: (Parsed & { kind: 'arg' })[]; stages: StageDef[] } {
  const { nodes, lint, err, loc } = doc;
  const metaArgs: (Parsed & { kind: 'arg' })[] = [];
  const stages: StageDef[] = [];
  for (const n of nodes) {
    let p: Parsed;
    try {
      p = parseInstruction(n);
    } catch (e) {
      if (e instanceof InstructionError) throw err(n.startLine, e.message);
      throw e;
    }
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

  return { metaArgs, stages };
}

/** The lint rules over every stage's instructions and names (casing, reserved and duplicate names). */
function lintStageNames(doc: Doc, stages: StageDef[]): void {
  const { lint, loc } = doc;
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
}

/** What the global ARGs and the options decide for every stage. */
interface GlobalArgs {
  targetPlatform: Platform;
  /** --build-arg values given (unset ones left out). */
  given: Map<string, string>;
  targetStage: StageDef;
  /** The global ARGs' values: the platform args, then the meta ARGs, given values winning. */
  globalArgs: Env;
  /** Every global ARG name (declared or predefined), for UndefinedArgInFrom. */
  declaredGlobal: Set<string>;
  sourceDateEpoch?: number;
  /** A word expanded in `env`; an error names `line`. */
  word: (w: string, env: Env, line: number) => ReturnType<typeof processWord>;
}

/** Platforms, the target stage, the global (meta) ARGs and SOURCE_DATE_EPOCH. */
function resolveGlobalArgs(doc: Doc, metaArgs: (Parsed & { kind: 'arg' })[], stages: StageDef[], opts: FrontendOptions): GlobalArgs {
  const { lint, err, escape } = doc;
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

  return {
    targetPlatform,
    given,
    targetStage,
    globalArgs,
    declaredGlobal,
    ...(sourceDateEpoch !== undefined ? { sourceDateEpoch } : {}),
    word,
  };
}

/** Each stage's base: an earlier stage, an image, scratch or a named context; and its platform. */
function resolveBases(doc: Doc, stages: StageDef[], args: GlobalArgs, opts: FrontendOptions): void {
  const { lint, err } = doc;
  const { word, globalArgs, declaredGlobal, targetPlatform } = args;
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
    const own = s.name !== undefined ? namedBase(opts.namedContexts, s.name) : undefined;
    if (own) {
      s.base = own;
      if (own.kind === 'image') s.images.push(own.ref);
      s.commands = [];
      s.replaced = true;
      continue;
    }
    const baseStage = findStage(stages, m.result, s.index);
    const named = baseStage || m.result === 'scratch' ? undefined : namedBase(opts.namedContexts, m.result);
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
}

/** Dispatches the instructions of every stage the target needs, in order: the graph's stages. */
function dispatchStages(
  doc: Doc,
  stages: StageDef[],
  metaArgs: (Parsed & { kind: 'arg' })[],
  links: StageLinks,
  args: GlobalArgs,
  opts: FrontendOptions,
): { out: Stage[]; unresolved: string[]; consumed: Set<string> } {
  const { file, escape, lint, err } = doc;
  const { reached, froms: depsOf, resolveFrom } = links;
  const { targetPlatform, given, globalArgs } = args;
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

  return { out, unresolved, consumed };
}

export { isKnownInstruction };
