// The state a stage is converted with: its definition as the Dockerfile gives it (StageDef), the
// mutable state its instructions change as they are dispatched (State, BuildKit's dispatchState),
// the context every dispatcher reads (DispatchCtx), and the small environment helpers they share.
// convert.ts makes them; dispatch*.ts change them.

import type { DockerfileError } from './errors.js';
import type { Parsed } from './instructions.js';
import type { Linter } from './lint.js';
import type { Escape } from './parser.js';
import type { BaseImageConfig, MountFrom, Platform, SourceLocation, StageBase, StageImageConfig } from './types.js';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const DEFAULT_SHELL = ['/bin/sh', '-c'];
/** Args BuildKit defines without an ARG and never warns about when given. */
export const PROXY_ARGS = ['http_proxy', 'https_proxy', 'ftp_proxy', 'no_proxy', 'all_proxy'];
export const PLATFORM_ARGS = [
  'BUILDPLATFORM',
  'BUILDOS',
  'BUILDARCH',
  'BUILDVARIANT',
  'TARGETPLATFORM',
  'TARGETOS',
  'TARGETARCH',
  'TARGETVARIANT',
  'TARGETSTAGE',
];
/** Args that configure BuildKit itself and never reach the RUN environment. */
export const NON_ENV_ARGS = new Set(['BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE']);

export type Env = [string, string][];

export interface StageDef {
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
export interface State {
  /** The LLB state's env: image ENV and ARG values, in order, later writers replacing. */
  env: Env;
  argKeys: Set<string>; // keys of `env` whose last writer was an ARG
  buildArgs: { key: string; value?: string }[];
  config: StageImageConfig;
  shellSet: boolean;
  workdirSet: boolean;
  platform: Platform;
}

export function clone<T>(v: T): T {
  return structuredClone(v);
}

export function envSet(env: Env, k: string, v: string): void {
  const i = env.findIndex(([key]) => key === k);
  if (i >= 0) env[i] = [k, v];
  else env.push([k, v]);
}

export function envGet(env: Env, k: string): string | undefined {
  return env.find(([key]) => key === k)?.[1];
}

function splitEnv(kv: string): [string, string] {
  const i = kv.indexOf('=');
  return i < 0 ? [kv, ''] : [kv.slice(0, i), kv.slice(i + 1)];
}

/** The stage named `name` (case-insensitive) defined before stage `before`; the latest such one. */
export function findStage(stages: StageDef[], name: string, before: number): StageDef | undefined {
  const lower = name.toLowerCase();
  for (let i = Math.min(before, stages.length) - 1; i >= 0; i--) if (stages[i].name === lower) return stages[i];
  return undefined;
}

export function initialState(img: BaseImageConfig | undefined, platform: Platform, scratch: boolean): State {
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

export interface DispatchCtx {
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
