// Typed instructions -> BuildGraph: stages and targets, build args and variable expansion, the image
// config each stage ends with, history texts and lint findings. The semantics follow BuildKit's
// dockerfile2llb (convert.go); where kiln's contract differs on purpose the comment says so.

import { posix } from 'node:path';
import { parseChmod } from '../fsutil/chmod.js';
import { DockerfileError, InstructionError } from './errors.js';
import { formatDuration, goQuote, goQuoteRune, goQuoteSlice, goSlice } from './gofmt.js';
import { isKnownInstruction, parseInstruction, type Parsed } from './instructions.js';
import { Linter, looksSecret, parseCheckDirective, suggest } from './lint.js';
import { effectiveLink } from './link.js';
import { parseMount } from './mounts.js';
import { gitSourceProblem, isGitSource, parseGitRef } from './git-ref.js';
import { redactCredentials } from './urls.js';
import { resolveSourceDateEpoch, SOURCE_DATE_EPOCH } from './epoch.js';
import { ParseError, parseDockerfile, chompHeredocContent, type Escape, type Node } from './parser.js';
import { formatPlatform, parsePlatform } from './platform.js';
import { lookupNamedContext, namedContextKey } from './named-contexts.js';
import { isValidReference } from './reference.js';
import { processWord, processWords } from './shell-lex.js';
import { findStageCycle, type StageDeps } from './stage-cycle.js';
import type {
  BaseImageConfig,
  BuildGraph,
  CopyStep,
  FrontendOptions,
  MountFrom,
  Platform,
  RunMount,
  RunStep,
  SourceLocation,
  Stage,
  StageBase,
  StageImageConfig,
  Step,
} from './types.js';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEFAULT_SHELL = ['/bin/sh', '-c'];
/** Args BuildKit defines without an ARG and never warns about when given. */
const PROXY_ARGS = ['http_proxy', 'https_proxy', 'ftp_proxy', 'no_proxy', 'all_proxy'];
const PLATFORM_ARGS = ['BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT', 'TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT', 'TARGETSTAGE'];
/** Args that configure BuildKit itself and never reach the RUN environment. */
const NON_ENV_ARGS = new Set(['BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE']);

type Env = [string, string][];

interface StageDef {
  index: number;
  from: Parsed & { kind: 'from' };
  name?: string;
  commands: Parsed[];
  location: SourceLocation;
  base: StageBase;
  platform?: Platform;
  platformStr?: string;
  deps: Set<number>;
  images: string[];
  triggers: Parsed[];
  /** A named build context of the stage's name stands in for the whole stage. */
  replaced?: boolean;
}

/** The mutable state of a stage while its instructions are dispatched (BuildKit's dispatchState). */
interface State {
  /** The LLB state's env: image ENV and ARG values, in order, later writers replacing. */
  env: Env;
  argKeys: Set<string>; // keys of `env` whose last writer was an ARG
  buildArgs: { key: string; value?: string }[];
  config: StageImageConfig;
  shellSet: boolean;
  workdirSet: boolean;
  platform: Platform;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function envSet(env: Env, k: string, v: string): void {
  const i = env.findIndex(([key]) => key === k);
  if (i >= 0) env[i] = [k, v];
  else env.push([k, v]);
}

function envGet(env: Env, k: string): string | undefined {
  return env.find(([key]) => key === k)?.[1];
}

function splitEnv(kv: string): [string, string] {
  const i = kv.indexOf('=');
  return i < 0 ? [kv, ''] : [kv.slice(0, i), kv.slice(i + 1)];
}

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

/** The stage named `name` (case-insensitive) defined before stage `before`; the latest such one. */
function findStage(stages: StageDef[], name: string, before: number): StageDef | undefined {
  const lower = name.toLowerCase();
  for (let i = Math.min(before, stages.length) - 1; i >= 0; i--) if (stages[i].name === lower) return stages[i];
  return undefined;
}

/** The raw from= of a --mount value, without parsing the rest (used for the dependency scan). */
function mountFromValue(raw: string): string | undefined {
  for (const f of raw.split(',')) {
    const eq = f.indexOf('=');
    if (eq > 0 && f.slice(0, eq).trim().toLowerCase() === 'from') return f.slice(eq + 1);
  }
  return undefined;
}

function initialState(img: BaseImageConfig | undefined, platform: Platform, scratch: boolean): State {
  const env: Env = (img?.env ?? []).map(splitEnv);
  // BuildKit makes sure PATH is always set, for scratch images too.
  if (!env.some(([k]) => k === 'PATH')) env.push(['PATH', DEFAULT_PATH]);
  const config: StageImageConfig = {
    env: clone(env),
    cmd: img?.cmd ? [...img.cmd] : undefined,
    entrypoint: img?.entrypoint ? [...img.entrypoint] : undefined,
    // BuildKit's emptyImage (FROM scratch) starts with WorkingDir "/" as well as PATH; an image
    // keeps whatever its config says (nothing when unset).
    workingDir: img ? (img.workingDir ?? '') : scratch ? '/' : '',
    user: img?.user ?? '',
    shell: img?.shell?.length ? [...img.shell] : [...DEFAULT_SHELL],
    exposedPorts: [...(img?.exposedPorts ?? [])],
    volumes: [...(img?.volumes ?? [])],
    labels: { ...(img?.labels ?? {}) },
    stopSignal: img?.stopSignal,
    healthcheck: img?.healthcheck ? clone(img.healthcheck) : undefined,
    // The base image's triggers run in this stage and are not inherited (Docker clears them).
    onBuild: [],
    os: img?.os || platform.os,
    architecture: img?.architecture || platform.architecture,
  };
  const variant = img?.os ? img.variant : platform.variant;
  if (variant) config.variant = variant;
  if (config.stopSignal === undefined) delete config.stopSignal;
  if (config.healthcheck === undefined) delete config.healthcheck;
  if (config.cmd === undefined) delete config.cmd;
  if (config.entrypoint === undefined) delete config.entrypoint;
  // A Shell in the base image's config is inherited as it is, the default one included.
  if (img?.shell?.length) config.shellSet = true;
  return {
    env,
    argKeys: new Set(),
    buildArgs: [],
    config,
    shellSet: !!img?.shell?.length,
    workdirSet: false,
    platform,
  };
}

interface DispatchCtx {
  file: string;
  escape: Escape;
  lint: Linter;
  given: Map<string, string>;
  globalArgs: Env;
  consumed: Set<string>;
  stage: StageDef;
  stages: StageDef[];
  froms: Map<Parsed, MountFrom>;
  trackers: { cmd: number; entrypoint: number; healthcheck: number };
  cmdSet: { value: boolean };
  resolveFrom: (from: string, s: StageDef, line: number, allowIndex: boolean, what: string) => MountFrom;
  err: (line: number, msg: string) => DockerfileError;
}

function dispatch(ctx: DispatchCtx, st: State, c: Parsed, fromOnBuild: boolean): Step[] {
  const n = c.node;
  const line = n.startLine;
  const location: SourceLocation = { file: ctx.file, line, endLine: n.endLine };
  const original = n.original.trim();
  const base = fromOnBuild ? { location, original, fromOnBuild: true as const } : { location, original };
  const { lint, err } = ctx;
  const lookup = (k: string) => envGet(st.env, k);
  const declared = () => new Set(st.buildArgs.map((a) => a.key));

  const reportUnmatched = (unmatched: Set<string>) => {
    if (unmatched.size === 0) return;
    const args = declared();
    for (const v of unmatched) {
      if (args.has(v) || NON_ENV_ARGS.has(v)) continue;
      lint.run(
        'UndefinedVar',
        location,
        v,
        suggest(
          v,
          st.env.map(([k]) => k),
        ),
      );
    }
  };
  const expand = (w: string): string => {
    let r;
    try {
      r = processWord(w, lookup, ctx.escape);
    } catch (e) {
      throw err(line, (e as Error).message);
    }
    reportUnmatched(r.unmatched);
    return r.result;
  };
  const failAt = (msg: string): never => {
    throw err(line, msg);
  };

  switch (c.kind) {
    case 'env': {
      const pairs = c.pairs.map((p) => ({ key: expand(p.key), value: expand(p.value), noDelim: p.noDelim }));
      for (const p of pairs) {
        if (p.noDelim) lint.run('LegacyKeyValueFormat', location, n.cmd);
        if (looksSecret(p.key)) lint.run('SecretsUsedInArgOrEnv', location, 'ENV', p.key);
        envSet(st.env, p.key, p.value);
        st.argKeys.delete(p.key);
        envSet(st.config.env, p.key, p.value);
      }
      const vars: [string, string][] = pairs.map((p) => [p.key, p.value]);
      return [{ ...base, kind: 'env', vars, createdBy: 'ENV ' + pairs.map((p) => `${p.key}=${p.value}`).join(' ') }];
    }
    case 'label': {
      const pairs = c.pairs.map((p) => ({ key: expand(p.key), value: expand(p.value), noDelim: p.noDelim }));
      for (const p of pairs) {
        if (p.noDelim) lint.run('LegacyKeyValueFormat', location, n.cmd);
        st.config.labels[p.key] = p.value;
      }
      return [{ ...base, kind: 'label', labels: pairs.map((p) => [p.key, p.value]), createdBy: 'LABEL ' + pairs.map((p) => `${p.key}=${p.value}`).join(' ') }];
    }
    case 'arg': {
      const result: { name: string; value?: string }[] = [];
      for (const a of c.args) {
        if (looksSecret(a.key)) lint.run('SecretsUsedInArgOrEnv', location, 'ARG', a.key);
        ctx.consumed.add(a.key);
        let value: string | undefined;
        if (ctx.given.has(a.key)) value = ctx.given.get(a.key);
        else if (a.value !== undefined) value = expand(a.value);
        else value = envGet(ctx.globalArgs, a.key);
        if (value !== undefined && !NON_ENV_ARGS.has(a.key)) {
          envSet(st.env, a.key, value);
          st.argKeys.add(a.key);
        }
        st.buildArgs.push(value === undefined ? { key: a.key } : { key: a.key, value });
        result.push(value === undefined ? { name: a.key } : { name: a.key, value });
      }
      const createdBy = 'ARG ' + result.map((r) => (r.value === undefined ? r.name : `${r.name}=${r.value}`)).join(' ');
      return [{ ...base, kind: 'arg', args: result, createdBy }];
    }
    case 'run':
      return [dispatchRun(ctx, st, c, base, expand, failAt)];
    case 'copy':
    case 'add':
      return [dispatchCopy(ctx, st, c, base, expand, reportUnmatched, failAt)];
    case 'workdir': {
      const p = expand(c.path);
      if (!st.workdirSet && !p.startsWith('/')) lint.run('WorkdirRelativePath', location, p);
      st.workdirSet = true;
      // As BuildKit's system.NormalizeWorkdir: an absolute path is kept as written ("/a//b/" stays,
      // in the config and the history), a relative one is joined to the current workdir (which
      // cleans it), an empty one (an unset variable) keeps the current workdir.
      const parent = st.config.workingDir || '/';
      const absParent = parent.startsWith('/') ? parent : posix.join('/', parent).replace(/(.)\/+$/, '$1');
      // Go's path.Join cleans, trailing slash included.
      const joined = (q: string) => posix.join(absParent, q).replace(/(.)\/+$/, '$1');
      const wd = p === '' ? absParent : p.startsWith('/') ? p : joined(p);
      st.config.workingDir = wd;
      // The directory made is the cleaned path.
      const made = posix.normalize(wd);
      const clean = made.length > 1 ? made.replace(/\/+$/, '') : made;
      return [{ ...base, kind: 'workdir', path: clean, user: st.config.user, createdBy: 'WORKDIR ' + wd }];
    }
    case 'user': {
      const u = expand(c.user);
      st.config.user = u;
      return [{ ...base, kind: 'user', user: u, createdBy: 'USER ' + u }];
    }
    case 'volume': {
      const vols = c.volumes.map(expand);
      for (const v of vols) {
        if (v === '') failAt('VOLUME specified can not be an empty string');
        st.config.volumes.push(v);
      }
      return [{ ...base, kind: 'volume', volumes: vols, createdBy: 'VOLUME ' + goSlice(vols) }];
    }
    case 'expose': {
      const words: string[] = [];
      for (const p of c.ports) {
        try {
          words.push(...processWords(p, lookup, ctx.escape).words);
        } catch (e) {
          failAt((e as Error).message);
        }
      }
      const ports = new Set<string>();
      for (const w of words) for (const p of parsePortSpec(w, lint, location, failAt)) ports.add(p);
      const sorted = [...ports].sort();
      st.config.exposedPorts.push(...sorted);
      return [{ ...base, kind: 'expose', ports: sorted, createdBy: 'EXPOSE map[' + sorted.map((p) => `${p}:{}`).join(' ') + ']' }];
    }
    case 'stopsignal': {
      const sig = expand(c.signal);
      validateSignal(sig, failAt);
      st.config.stopSignal = sig;
      return [{ ...base, kind: 'stopsignal', signal: sig, createdBy: 'STOPSIGNAL ' + sig }];
    }
    case 'shell':
      st.config.shell = [...c.shell];
      // BuildKit writes Shell to the config whatever it is, even ["/bin/sh", "-c"].
      st.config.shellSet = true;
      st.shellSet = true;
      return [{ ...base, kind: 'shell', shell: [...c.shell], createdBy: 'SHELL ' + goSlice(c.shell) }];
    case 'cmd':
    case 'entrypoint': {
      const prev = ctx.trackers[c.kind];
      if (prev) lint.run('MultipleInstructionsDisallowed', { file: ctx.file, line: prev, endLine: prev }, n.cmd.toUpperCase());
      ctx.trackers[c.kind] = line;
      let args = c.cmdLine;
      if (c.prependShell) {
        if (!st.shellSet) lint.run('JSONArgsRecommended', location, n.cmd.toUpperCase());
        args = [...st.config.shell, args.join(' ')];
      }
      if (c.kind === 'cmd') {
        st.config.cmd = args;
        ctx.cmdSet.value = true;
        return [{ ...base, kind: 'cmd', cmd: args, createdBy: 'CMD ' + goQuoteSlice(args) }];
      }
      st.config.entrypoint = args;
      // Docker resets CMD when ENTRYPOINT is set, unless this stage set CMD itself.
      if (!ctx.cmdSet.value) delete st.config.cmd;
      return [{ ...base, kind: 'entrypoint', entrypoint: args, createdBy: 'ENTRYPOINT ' + goQuoteSlice(args) }];
    }
    case 'healthcheck': {
      const prev = ctx.trackers.healthcheck;
      if (prev) lint.run('MultipleInstructionsDisallowed', { file: ctx.file, line: prev, endLine: prev }, n.cmd.toUpperCase());
      ctx.trackers.healthcheck = line;
      const h = c.healthcheck;
      st.config.healthcheck = clone(h);
      const d = (v?: number) => goQuote(formatDuration(v ?? 0));
      const createdBy = `HEALTHCHECK &{${goQuoteSlice(h.test)} ${d(h.intervalNs)} ${d(h.timeoutNs)} ${d(h.startPeriodNs)} ${d(h.startIntervalNs)} ${goQuoteRune(h.retries ?? 0)}}`;
      return [{ ...base, kind: 'healthcheck', healthcheck: clone(h), createdBy }];
    }
    case 'maintainer':
      st.config.author = c.maintainer;
      return [{ ...base, kind: 'maintainer', author: c.maintainer, createdBy: 'MAINTAINER ' + c.maintainer }];
    case 'onbuild':
      st.config.onBuild.push(c.expression);
      // BuildKit records no history entry for ONBUILD: an empty createdBy means "no history".
      return [{ ...base, kind: 'onbuild', trigger: c.expression, createdBy: '' }];
    case 'from':
      failAt('FROM inside a stage');
  }
  return [];
}

function runCommandString(args: string[], st: State): string {
  const parts: string[] = [];
  const idx = new Map<string, number>();
  for (const a of st.buildArgs) {
    const v = envGet(st.env, a.key) ?? a.value ?? '';
    const kv = `${a.key}=${v}`;
    const i = idx.get(a.key);
    if (i !== undefined) parts[i] = kv;
    else {
      idx.set(a.key, parts.length);
      parts.push(kv);
    }
  }
  const prefix = parts.length ? [`|${parts.length}`, ...parts] : [];
  return [...prefix, ...args].join(' ');
}

function dispatchRun(
  ctx: DispatchCtx,
  st: State,
  c: Parsed & { kind: 'run' },
  base: { location: SourceLocation; original: string; fromOnBuild?: true },
  expand: (w: string) => string,
  failAt: (m: string) => never,
): RunStep {
  const line = c.node.startLine;
  // As written ("/a/../b/"): the executor, like runc, makes what that spelling implies.
  const workdir = st.config.workingDir || '/';
  const mounts: RunMount[] = [];
  let sshCount = 0;
  for (const raw of c.mounts) {
    let m;
    try {
      m = parseMount(raw, expand);
    } catch (e) {
      if (e instanceof InstructionError) failAt(`RUN --mount=${raw}: ${e.message}`);
      throw e;
    }
    const abs = (t: string) => (t.startsWith('/') ? posix.normalize(t) : posix.join('/', workdir, t));
    const from: MountFrom | undefined = m.from ? ctx.resolveFrom(m.from, ctx.stage, line, false, 'RUN --mount from') : undefined;
    switch (m.type) {
      case 'bind':
        mounts.push({
          type: 'bind',
          target: abs(m.target!),
          source: posix.join('/', m.source ?? ''),
          from: from ?? { kind: 'context' },
          readwrite: !m.readonly,
        });
        break;
      case 'cache': {
        const cm: RunMount = {
          type: 'cache',
          target: abs(m.target!),
          id: m.id || m.target!,
          sharing: m.sharing ?? 'shared',
          readonly: m.readonly,
          source: posix.join('/', m.source ?? ''),
          mode: m.mode ?? 0o755,
          uid: m.uid ?? 0,
          gid: m.gid ?? 0,
        };
        if (from) cm.from = from;
        mounts.push(cm);
        break;
      }
      case 'tmpfs':
        mounts.push(m.size !== undefined ? { type: 'tmpfs', target: abs(m.target!), size: m.size } : { type: 'tmpfs', target: abs(m.target!) });
        break;
      case 'secret': {
        const id = m.source || m.id || posix.basename(m.target!);
        // With env= and no target the secret is only an environment variable (target "").
        const target = m.target ? abs(m.target) : m.env !== undefined ? '' : '/run/secrets/' + posix.basename(id);
        const sm: RunMount = { type: 'secret', id, target, required: m.required, mode: m.mode ?? 0o400, uid: m.uid ?? 0, gid: m.gid ?? 0 };
        if (m.env !== undefined) sm.env = m.env;
        mounts.push(sm);
        break;
      }
      case 'ssh':
        mounts.push({
          type: 'ssh',
          id: m.id || 'default',
          target: m.target ? abs(m.target) : `/run/buildkit/ssh_agent.${sshCount}`,
          required: m.required,
          mode: m.mode ?? 0o600,
          uid: m.uid ?? 0,
          gid: m.gid ?? 0,
        });
        sshCount++;
        break;
    }
  }

  const network = c.network ?? 'default';
  if (network !== 'default' && network !== 'none' && network !== 'host') failAt(`unsupported network mode "${network}" (valid: default, none, host)`);
  const security = c.security ?? 'sandbox';
  if (security !== 'sandbox' && security !== 'insecure') failAt(`unsupported security mode "${security}" (valid: sandbox, insecure)`);

  let args = c.cmdLine;
  if (c.files.length > 0) {
    if (args.length !== 1 || !c.prependShell) failAt(`parsing produced an invalid run command: ${goSlice(args)}`);
    const single = /^(\d*)<<(-?)(.+)$/.test(args[0].trim()) && args[0].trim().split(/\s+/).length === 1;
    if (single && c.files.length === 1) {
      const f = c.files[0];
      let data = f.content;
      if (f.chomp) data = chompHeredocContent(data);
      if (f.content.startsWith('#!')) {
        // A script with a shebang: mount it as a file and run it (BuildKit's /dev/pipes trick).
        const target = posix.join('/dev/pipes', f.name);
        mounts.push({ type: 'heredoc', target, content: data, mode: 0o755 });
        args = [target];
      } else {
        args = [data];
      }
    } else {
      let full = args[0];
      for (const f of c.files) full += '\n' + f.content + f.name;
      args = [full];
    }
  }
  if (c.prependShell) args = [...st.config.shell, args.join(' ')];

  const proxyEnv: [string, string][] = [];
  for (const [k, v] of ctx.given) if (PROXY_ARGS.includes(k.toLowerCase())) proxyEnv.push([k, v]);

  const step: RunStep = {
    ...base,
    kind: 'run',
    args,
    shellForm: c.prependShell,
    env: clone(st.config.env),
    buildArgs: st.env.filter(([k]) => st.argKeys.has(k)).map(([k, v]) => [k, v] as [string, string]),
    workdir,
    user: st.config.user,
    mounts,
    network,
    security,
    createdBy: 'RUN ' + runCommandString(args, st) + ' # buildkit',
  };
  if (proxyEnv.length) step.proxyEnv = proxyEnv;
  return step;
}

const reDigest: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

function isHTTPSource(src: string): boolean {
  return /^https?:\/\//.test(src) && !isGitSource(src);
}

function dispatchCopy(
  ctx: DispatchCtx,
  st: State,
  c: Parsed & { kind: 'copy' | 'add' },
  base: { location: SourceLocation; original: string; fromOnBuild?: true },
  expand: (w: string) => string,
  reportUnmatched: (u: Set<string>) => void,
  failAt: (m: string) => never,
): CopyStep {
  const isAdd = c.kind === 'add';
  const name = isAdd ? 'ADD' : 'COPY';
  const chown = c.chown !== undefined && c.chown !== '' ? expand(c.chown) : undefined;
  const chmod = c.chmod !== undefined && c.chmod !== '' ? expand(c.chmod) : undefined;
  const checksum = c.checksum !== undefined && c.checksum !== '' ? expand(c.checksum) : undefined;
  const srcs = c.sources.map(expand);
  const destRaw = expand(c.dest);
  if (chmod !== undefined) {
    try {
      parseChmod(chmod);
    } catch (err) {
      failAt((err as Error).message);
    }
  }
  let link = false;
  try {
    link = effectiveLink(c.link, chown, chmod);
  } catch (err) {
    failAt(`${name} ${(err as Error).message}`);
  }
  const sources: string[] = [];
  const urls: string[] = [];
  for (const s of srcs) {
    const git = parseGitRef(s);
    if (git) {
      if (!isAdd) failAt("source can't be a git ref for COPY");
      const bad = gitSourceProblem(git);
      if (bad !== undefined) failAt(`${redactCredentials(s)}: ${bad}`);
      urls.push(s);
    } else if (isHTTPSource(s)) {
      if (!isAdd) failAt("source can't be a URL for COPY");
      urls.push(s);
    } else {
      sources.push(s);
    }
  }
  if (checksum !== undefined) {
    if (srcs.length !== 1) failAt("checksum can't be specified for multiple sources");
    if (isGitSource(srcs[0]!)) {
      // For git the checksum is the commit (or annotated tag) sha, or a prefix of it (BuildKit).
      if (!/^[0-9a-fA-F]+$/.test(checksum)) failAt(`invalid checksum ${checksum} for Git URL, expected hex commit hash`);
    } else {
      if (!isHTTPSource(srcs[0])) failAt("checksum can't be specified for non-HTTP(S) sources");
      const m = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):(.*)$/.exec(checksum);
      if (!m) failAt(`invalid checksum digest format: ${checksum}`);
      const len = reDigest[m[1]];
      if (len === undefined) failAt(`unsupported digest algorithm: ${m[1]}`);
      if (!new RegExp(`^[a-f0-9]{${len}}$`).test(m[2])) failAt(`invalid checksum digest format: ${checksum}`);
    }
  }
  const inline = c.contents.map((h) => {
    if (!h.expand) return { name: h.path, content: h.data };
    // BuildKit's ExpandRaw: a backslash-escaped lexer that leaves quotes as they are.
    let r;
    try {
      r = processWord(h.data, (k) => envGet(st.env, k), '\\', { skipProcessQuotes: true });
    } catch (e) {
      failAt((e as Error).message);
    }
    reportUnmatched(r.unmatched);
    return { name: h.path, content: r.result };
  });

  const workdir = st.config.workingDir || '/';
  const destIsDir = destRaw === '' || destRaw === '.' || destRaw.endsWith('/') || destRaw.endsWith('/.');
  let dest = destRaw.startsWith('/') ? posix.normalize(destRaw) : posix.join(workdir, destRaw === '' ? '.' : destRaw);
  if (dest.length > 1) dest = dest.replace(/\/+$/, '');

  let createdBy = name;
  if (c.parents) createdBy += ' --parents';
  if (chown !== undefined) createdBy += ' --chown=' + chown;
  if (chmod !== undefined) createdBy += ' --chmod=' + chmod;
  for (const s of srcs) createdBy += ' ' + redactCredentials(s);
  for (const h of c.contents) createdBy += ' <<' + h.path;
  createdBy += ' ' + destRaw + ' # buildkit';

  const from = ctx.froms.get(c) ?? { kind: 'context' as const };
  const step: CopyStep = {
    ...base,
    // What progress and errors show: the instruction as written, credentials in URLs redacted.
    original: urls.length > 0 ? redactCredentials(base.original) : base.original,
    kind: 'copy',
    instruction: name,
    from,
    sources,
    urls,
    inline,
    dest,
    destIsDir,
    workdir,
    link,
    parents: c.parents,
    exclude: [...c.exclude],
    keepGitDir: c.keepGitDir,
    unpack: isAdd ? (c.unpack ?? true) : false,
    user: st.config.user,
    env: clone(st.config.env),
    createdBy,
  };
  if (chown !== undefined) step.chown = chown;
  if (chmod !== undefined) step.chmod = chmod;
  if (checksum !== undefined) step.checksum = checksum;
  return step;
}

/** One EXPOSE word -> "port/proto" entries (go-connections nat.ParsePortSpec for EXPOSE). */
function parsePortSpec(spec: string, lint: Linter, location: SourceLocation, failAt: (m: string) => never): string[] {
  let raw = spec;
  const slash = raw.indexOf('/');
  let proto = 'tcp';
  if (slash >= 0) {
    const p = raw.slice(slash + 1);
    raw = raw.slice(0, slash);
    if (p !== '') proto = p;
  }
  if (proto !== proto.toLowerCase()) lint.run('ExposeProtoCasing', location, spec);
  proto = proto.toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(proto)) failAt(`EXPOSE ${spec}: invalid proto: ${proto}`);
  if (raw.includes(':')) {
    // "ip:hostPort:containerPort" is accepted (the container port is exposed) but discouraged.
    lint.run('ExposeInvalidFormat', location, spec);
    raw = raw.slice(raw.lastIndexOf(':') + 1);
  }
  const m = /^(\d+)(?:-(\d+))?$/.exec(raw);
  if (!m) failAt(`EXPOSE ${spec}: invalid containerPort: ${raw}`);
  const start = Number(m[1]);
  const end = m[2] !== undefined ? Number(m[2]) : start;
  if (start > 65535 || end > 65535) failAt(`EXPOSE ${spec}: invalid containerPort: ${raw}`);
  if (end < start) failAt(`EXPOSE ${spec}: invalid range specified for container port: ${raw}`);
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

const signals = new Set([
  'ABRT',
  'ALRM',
  'BUS',
  'CHLD',
  'CLD',
  'CONT',
  'FPE',
  'HUP',
  'ILL',
  'INT',
  'IO',
  'IOT',
  'KILL',
  'PIPE',
  'POLL',
  'PROF',
  'PWR',
  'QUIT',
  'SEGV',
  'STKFLT',
  'STOP',
  'SYS',
  'TERM',
  'TRAP',
  'TSTP',
  'TTIN',
  'TTOU',
  'URG',
  'USR1',
  'USR2',
  'VTALRM',
  'WINCH',
  'XCPU',
  'XFSZ',
]);

/** moby/sys/signal.ParseSignal: a number > 0, or a name with or without SIG (RTMIN+n too). */
function validateSignal(sig: string, failAt: (m: string) => never): void {
  if (/^\d+$/.test(sig)) {
    const n = Number(sig);
    if (n === 0 || n >= 2 ** 32) failAt(`Invalid signal: ${sig}`);
    return;
  }
  const name = sig.toUpperCase().replace(/^SIG/, '');
  if (signals.has(name)) return;
  const rt = /^RTM(IN|AX)(?:([+-])(\d+))?$/.exec(name);
  if (rt) {
    const off = rt[3] ? Number(rt[3]) : 0;
    if ((rt[1] === 'IN' && rt[2] !== '-' && off <= 15) || (rt[1] === 'AX' && rt[2] !== '+' && off <= 14)) return;
  }
  failAt(`Invalid signal: ${sig}`);
}

export { isKnownInstruction };
