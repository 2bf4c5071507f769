// The frontend's output: a Dockerfile translated into plain, serialisable data.
//
// The solver consumes a BuildGraph and never sees Dockerfile syntax; everything here is already
// expanded (build args, ENV, stage names resolved to indices) so that a step's definition is
// self-contained: it can be hashed for a cache key and run without looking back at the file.

/** Where a piece of the graph came from, for error messages and progress (1-based lines). */
export interface SourceLocation {
  file: string;
  line: number;
  endLine: number;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** The parts of a base image's config that a Dockerfile build inherits or reacts to. */
export interface BaseImageConfig {
  env: string[]; // "K=V", as in the OCI config
  cmd?: string[];
  entrypoint?: string[];
  workingDir?: string;
  user?: string;
  shell?: string[];
  exposedPorts?: string[]; // "80/tcp"
  volumes?: string[];
  labels?: Record<string, string>;
  stopSignal?: string;
  healthcheck?: Healthcheck;
  onBuild?: string[]; // ONBUILD triggers of the base image: they run first in the stage using it
  os?: string;
  architecture?: string;
  variant?: string;
}

export interface Healthcheck {
  test: string[]; // ["NONE"], ["CMD", ...] or ["CMD-SHELL", "cmd"]
  intervalNs?: number;
  timeoutNs?: number;
  startPeriodNs?: number;
  startIntervalNs?: number;
  retries?: number;
}

/** The image config a stage ends with (base image config merged with the stage's instructions). */
export interface StageImageConfig {
  env: [string, string][];
  cmd?: string[];
  entrypoint?: string[];
  workingDir: string; // "" when never set; "/" for FROM scratch, as BuildKit's empty image
  user: string; // "" when never set
  shell: string[]; // default ["/bin/sh", "-c"]
  /** Shell was set (SHELL, or the base image's config): the config records it even when it is
   * the default, as BuildKit does. */
  shellSet?: boolean;
  exposedPorts: string[]; // sorted "80/tcp"
  volumes: string[];
  labels: Record<string, string>;
  stopSignal?: string;
  healthcheck?: Healthcheck;
  onBuild: string[];
  author?: string; // MAINTAINER
  os: string;
  architecture: string;
  variant?: string;
}

export type StageBase =
  | { kind: 'scratch' }
  | { kind: 'image'; ref: string } // expanded reference as written (normalisation is the image room's job)
  | { kind: 'stage'; index: number } // FROM an earlier stage (index into BuildGraph.stages by Stage.index)
  /** FROM a named build context of files (--build-context NAME=DIR): those files on an empty image. */
  | { kind: 'context'; name: string };

export interface Stage {
  /** Position of the FROM in the Dockerfile (0-based). Stable even when other stages are pruned. */
  index: number;
  name?: string; // lower-cased, as BuildKit compares stage names case-insensitively
  location: SourceLocation;
  base: StageBase;
  platform?: string; // FROM --platform, expanded
  steps: Step[];
  /** Indices of the stages this stage needs: its base stage and every COPY --from / RUN --mount from=. */
  dependsOn: number[];
  /** Final image config of this stage (meaningful for the exported stage). */
  config: StageImageConfig;
}

/** What every step carries. `createdBy` is the history text BuildKit would write for it; it is ""
 * for steps BuildKit writes no history entry for (ONBUILD). */
export interface StepBase {
  location: SourceLocation;
  /** The instruction as written (continuations joined), for progress output: "RUN make". */
  original: string;
  createdBy: string;
  /** True when the step came from a base image's ONBUILD trigger. */
  fromOnBuild?: boolean;
}

/** Steps that change the filesystem. */
export interface RunStep extends StepBase {
  kind: 'run';
  /** The argv to execute, shell already prepended for the shell form. */
  args: string[];
  shellForm: boolean;
  /** Image env in effect ("K","V"), base image env included when it was known. */
  env: [string, string][];
  /** ARG values in scope; they reach the process env (after image env) but not the image config.
   * Only args whose value was set after any ENV of the same name are listed, so applying `env`
   * then `buildArgs` gives the environment BuildKit would use. */
  buildArgs: [string, string][];
  /** HTTP_PROXY & co. given as build args: they reach the process env but, as in BuildKit, are
   * kept out of history and should be kept out of the cache key. */
  proxyEnv?: [string, string][];
  workdir: string; // absolute
  user: string; // "" = root / image default
  mounts: RunMount[];
  network: 'default' | 'none' | 'host';
  security: 'sandbox' | 'insecure';
}

export type RunMount =
  | {
      type: 'bind';
      target: string;
      source: string; // path inside `from` (default "/")
      from: MountFrom;
      readwrite: boolean;
    }
  | {
      type: 'cache';
      target: string;
      id: string; // defaults to target
      sharing: 'shared' | 'private' | 'locked';
      readonly: boolean;
      from?: MountFrom;
      source: string;
      mode: number; // default 0o755
      uid: number;
      gid: number;
    }
  | { type: 'tmpfs'; target: string; size?: number }
  | {
      type: 'secret';
      id: string; // defaults to basename of target
      target: string; // default /run/secrets/<id>; "" when only exposed as `env`
      env?: string; // expose as env var instead of / as well as a file
      required: boolean;
      mode: number; // default 0o400
      uid: number;
      gid: number;
    }
  | {
      type: 'ssh';
      id: string; // default "default"
      target: string; // default /run/buildkit/ssh_agent.<n>
      required: boolean;
      mode: number; // default 0o600
      uid: number;
      gid: number;
    }
  /** A heredoc with a shebang that BuildKit runs as a file: mounted read-only at `target`. */
  | { type: 'heredoc'; target: string; content: string; mode: number };

export type MountFrom =
  /** The build context, or with `name` a named one (--build-context NAME=DIR / an archive URL). */
  { kind: 'context'; name?: string } | { kind: 'stage'; index: number } | { kind: 'image'; ref: string };

export interface CopyStep extends StepBase {
  kind: 'copy';
  instruction: 'COPY' | 'ADD';
  from: MountFrom;
  /** Source paths or patterns as written after expansion (relative to the context / stage root). */
  sources: string[];
  /** ADD sources that are URLs (http, https) or git repositories. */
  urls: string[];
  /** Heredoc sources: files whose content is inline. */
  inline: { name: string; content: string }[];
  /** Destination after expansion; relative destinations are already joined to `workdir`. */
  dest: string;
  /** True when the destination as written ended in "/" (or is "." / ends in "/." ): a directory. */
  destIsDir: boolean;
  workdir: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  parents: boolean;
  exclude: string[];
  checksum?: string; // ADD --checksum
  keepGitDir: boolean; // ADD --keep-git-dir
  /** ADD auto-extracts local tar archives; COPY never does. */
  unpack: boolean;
  user: string; // for names in --chown lookup and default ownership
  /** Env at this point, used when a source lookup needs the image (rare), kept for completeness. */
  env: [string, string][];
}

/** WORKDIR makes the directory (as BuildKit does) and so may produce a layer. */
export interface WorkdirStep extends StepBase {
  kind: 'workdir';
  path: string; // absolute, cleaned
  user: string; // owner of directories it creates
}

/** Steps that only change the image config (history entries with empty_layer). */
export type ConfigStep = StepBase &
  (
    | { kind: 'env'; vars: [string, string][] }
    | { kind: 'arg'; args: { name: string; value?: string }[] }
    | { kind: 'label'; labels: [string, string][] }
    | { kind: 'maintainer'; author: string }
    | { kind: 'cmd'; cmd: string[] }
    | { kind: 'entrypoint'; entrypoint: string[] }
    | { kind: 'expose'; ports: string[] }
    | { kind: 'volume'; volumes: string[] }
    | { kind: 'user'; user: string }
    | { kind: 'shell'; shell: string[] }
    | { kind: 'stopsignal'; signal: string }
    | { kind: 'healthcheck'; healthcheck: Healthcheck }
    | { kind: 'onbuild'; trigger: string }
  );

export type Step = RunStep | CopyStep | WorkdirStep | ConfigStep;

export interface LintFinding {
  rule: string; // BuildKit's rule name, e.g. "JSONArgsRecommended"
  message: string;
  location: SourceLocation;
  /** "warning", or "error" when `# check=error=true` turns it into one. */
  level: 'warning' | 'error';
}

export interface BuildGraph {
  /** All stages the target reaches, in Dockerfile order. */
  stages: Stage[];
  /** Stage.index of the stage being built (the last one unless --target chose another). */
  target: number;
  /** `# syntax=` directive if present (kiln is its own frontend; recorded, not followed). */
  syntax?: string;
  escape: '\\' | '`';
  /** Image references used as bases (FROM, COPY --from, RUN --mount from=) whose config was not
   * supplied in FrontendOptions.baseImages; the solver resolves them and translates again. */
  unresolvedImages: string[];
  warnings: LintFinding[];
  /** Build args given but not consumed by any ARG the target reaches (Docker warns about these). */
  unusedBuildArgs: string[];
  /** SOURCE_DATE_EPOCH in seconds, when the build has one: the image's dates and its layers' file
   * times are clamped to it (see epoch.ts). */
  sourceDateEpoch?: number;
}

export interface FrontendOptions {
  /** Name used in errors and locations, usually "Dockerfile". */
  filename: string;
  /** --build-arg values; `undefined` means "--build-arg K" whose value comes from the caller's env. */
  buildArgs?: Record<string, string | undefined>;
  target?: string;
  /** Platform of the machine doing the build (BUILDPLATFORM...) and of the result (TARGETPLATFORM...). */
  buildPlatform?: Platform;
  targetPlatform?: Platform;
  /** Configs of base images by the expanded reference string, when the solver has resolved them. */
  baseImages?: Record<string, BaseImageConfig>;
  /**
   * Named build contexts (--build-context) by their normalised name (namedContextKey): FROM, COPY
   * --from and RUN --mount from= naming one use it instead of an image, and a stage of that name is
   * replaced by it, as in BuildKit.
   */
  namedContexts?: Record<string, NamedContextBinding>;
}

/** What a named build context stands for in the graph. */
export type NamedContextBinding =
  /** A tree of files (a directory, an unpacked archive): no image config, as BuildKit's local source. */
  | { kind: 'files' }
  /** An image (docker-image://REF, or an OCI layout the solver resolves by `ref`). */
  | { kind: 'image'; ref: string };
