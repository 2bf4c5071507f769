// `kiln build`: docker build / buildx flags to a BuildRequest, progress to stderr, results to stdout.
//
// parseBuildArgs is pure (argv and environment in, a description of the invocation out) so every
// flag is covered by table tests; loadRequest reads the context and the Dockerfile; buildCommand runs
// the build and writes what the flags asked for (--iidfile, --metadata-file, -q, -o -).

import { createReadStream, readFileSync, statSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import {
  BuildFailure,
  CacheSpecError,
  ENTITLEMENTS,
  type Entitlement,
  hostPlatform,
  parseCacheFrom as parseCacheSpecFrom,
  parseCacheTo as parseCacheSpecTo,
  parsePlatform,
  type BuildRequest,
  type BuildResult,
  type CacheFrom,
  type CacheTo,
  type LintFinding,
  type OutputSpec,
  type Platform,
  type ProgressEvent,
} from '../client/client.js';
import { connect } from '../client/connect.js';
import { checkBuildContexts, parseBuildContexts } from './build-contexts.js';
import { formatCheck } from './check.js';
import { contextFromStdin, type StdinContext } from '../client/stdin-context.js';
import { normalizeImageName, resolveOutputs, STDOUT_DEST } from './outputs.js';
import { resolveAttestations } from './attest.js';
import { parseAnnotationFlags } from './annotations.js';
import { createDisplay, PROGRESS_MODES, type OutStream, type ProgressMode } from './progress/index.js';
import { PlainDisplay } from './progress/plain.js';
import { TtyDisplay } from './progress/tty.js';
import { loadSecrets, parseSecretFlag, parseSshFlag, resolveSsh, sshForwards, type SshSource, type SecretSpec, type SshSpec } from './secrets.js';
import { UsageError } from './usage.js';
import { withSourceDateEpoch } from './source-date-epoch.js';

export { UsageError };

export const BUILD_HELP = `Usage: kiln build [OPTIONS] PATH

Build an image from a Dockerfile. PATH is the build context: a directory, or "-" for a tar
(plain or gzip) on stdin, whose Dockerfile -f names inside it (stdin that is not a tar is the
Dockerfile itself, with an empty context).

Options:
  -f, --file FILE            Dockerfile to use (default: PATH/Dockerfile; "-" reads stdin)
  -t, --tag NAME[:TAG]       Name the image (repeatable); alone, stores it in kiln's image store
      --target STAGE         Build this stage and what it needs
      --build-arg K=V        Set a build argument; "K" alone takes K from the environment (repeatable)
                             SOURCE_DATE_EPOCH=SECONDS (default: $SOURCE_DATE_EPOCH) dates the
                             image's config and history at it and clamps its layers' file times
      --label K=V            Set a label on the image (repeatable)
      --platform OS/ARCH[,..]  Target platform(s) (default: this machine's); several build one
                             image each under an image index (oci, image, push outputs) or a
                             directory each (local, tar: linux_amd64/...); not for type=docker
      --network MODE         Network for RUN steps: default (= host), host or none
      --pids-limit N         Processes each RUN may have (default: the config's, 2048), up to
                             the config's max-run-pids-limit
      --allow ENTITLEMENT    Let RUN use network.host (RUN --network=host) or security.insecure
                             (RUN --security=insecure), if kiln's config permits it (repeatable)
      --no-cache             Do not use the cache
      --no-cache-filter STAGE  Do not use the cache for these stages (repeatable, comma-separated)
      --cache-from SRC       Import build cache: type=local,src=DIR | type=registry,ref=REF | REF
      --cache-to DEST        Export build cache: type=local,dest=DIR | type=registry,ref=REF
                             (with mode=min|max; cache mounts included) | type=inline
      --pull                 Always ask the registry for base images
      --secret SPEC          A secret for RUN --mount=type=secret (repeatable): id=ID,src=FILE |
                             id=ID,env=VAR | id=ID (the variable ID); type=file|env as buildx;
                             GIT_AUTH_TOKEN[.HOST] / GIT_AUTH_HEADER[.HOST] authenticate ADD of git
      --ssh default|ID[=SOCKET|KEY[,KEY]]  An SSH agent for RUN --mount=type=ssh (repeatable;
                             default: $SSH_AUTH_SOCK; key files get a private agent); "default"
                             also authenticates ADD of git@HOST:REPO and ssh:// repositories
      --build-context NAME=VALUE  An extra named context for FROM NAME, COPY --from=NAME and
                             RUN --mount=from=NAME (repeatable); a stage or image of that name is
                             replaced by it. VALUE: DIR | docker-image://REF |
                             oci-layout://PATH[:TAG][@sha256:DIGEST] | https://HOST/archive.tar
  -o, --output SPEC          Where the result goes (repeatable), BuildKit's CSV syntax:
                               type=local,dest=DIR          the final filesystem as a directory
                               type=tar,dest=FILE           ... as one tarball ("dest=-": stdout)
                               type=oci,dest=FILE[,name=N]  an OCI layout tarball
                               type=docker,dest=FILE[,name=N]  a tarball for "docker load"
                               type=docker[,name=N]         load into the local Docker daemon
                               type=image,name=A,B[,push=true]  kiln's image store (and push)
                               type=registry,name=N         = type=image,push=true
                             plus, for image, docker and oci: compression=gzip|zstd|uncompressed,
                             compression-level=N (gzip 0-9, zstd 0-22), force-compression=true
                             (recompress base layers too), oci-mediatypes=false (Docker schema 2
                             media types), oci-artifact=false (BuildKit's older attestation
                             manifests), annotation[-TYPE][[PLATFORM]].KEY=VALUE (TYPE: manifest,
                             index, manifest-descriptor, index-descriptor);
                             "-o DIR" is type=local,dest=DIR and "-o -" a tarball on stdout
      --annotation [TYPE[,TYPE][[PLATFORM]]:]KEY=VALUE  Add an annotation to every image output
                             (default TYPE: manifest; repeatable)
      --provenance true|false|mode=min|max[,version=v1|v0.2][,builder-id=ID]
                             = --attest type=provenance,...: attach a SLSA provenance attestation
                             to image outputs (provenance.json in local and tar ones; none by default)
      --attest type=provenance[,mode=min|max][,disabled=true]  Add an attestation (repeatable)
      --load                 = --output type=docker (load into Docker)
      --push                 = --output type=image,push=true (push the -t names)
      --iidfile FILE         Write the image ID to FILE
      --metadata-file FILE   Write the build result's metadata (digests, names) to FILE as JSON
  -q, --quiet                Print nothing but the image ID (on stdout)
      --progress MODE        auto, tty, plain, rawjson or quiet (default: auto, or $BUILDKIT_PROGRESS)
      --dry-run              Print the step graph as JSON and exit; run nothing
      --check                Check the Dockerfile against the lint rules and exit; build nothing
                             (non-zero exit when a rule set to error fails; JSON with --progress rawjson)
      --root DIR             kiln's state directory (default: $KILN_ROOT, /var/lib/kiln for root)
      --addr ADDR            Build on this kiln daemon: unix:///path.sock or tcp://HOST:PORT
                             (default: $KILN_HOST; else the daemon on unix:///run/kiln/kiln.sock
                             when one answers; else in this process). Repeated (or KILN_HOST=A,B):
                             a fleet; each context always goes to the same one of them
      --tlscacert, --tlscert, --tlskey FILE   TLS for a tcp:// daemon
  -h, --help                 This help
`;

/** What a `kiln build` command line asks for, before anything is read from disk. */
export interface BuildInvocation {
  help: boolean;
  /** --check: lint only (the request is a dry run), findings on stdout. */
  check?: boolean;
  /** The context argument as given. */
  context: string;
  /** -f as given ("-" is stdin); undefined means CONTEXT/Dockerfile. */
  file?: string;
  /** The request minus what loadRequest reads (context directory, Dockerfile text). */
  request: Omit<BuildRequest, 'context' | 'dockerfile'>;
  /** -t names, normalised ("app" -> "docker.io/library/app:latest"). */
  tags: string[];
  progress: ProgressMode;
  /** -q: only the image ID, on stdout. */
  quiet: boolean;
  iidfile?: string;
  metadataFile?: string;
  root?: string;
  /** --secret: read when the build starts (loadSecrets), never kept in the invocation. */
  secrets?: SecretSpec[];
  /** --ssh. */
  ssh?: SshSpec[];
}

const BOOLEAN_FLAGS = ['no-cache', 'pull', 'push', 'load', 'dry-run', 'check', 'quiet', 'help'] as const;

/** One --cache-from value (the parser is the server's: daemon.json's `cache-from` takes the same). */
export function parseCacheFrom(value: string): CacheFrom {
  return cacheFlag('--cache-from', value, parseCacheSpecFrom);
}

/** One --cache-to value. */
export function parseCacheTo(value: string): CacheTo {
  return cacheFlag('--cache-to', value, parseCacheSpecTo);
}

function cacheFlag<T>(flag: string, value: string, parse: (value: string) => T): T {
  try {
    return parse(value);
  } catch (err) {
    if (err instanceof CacheSpecError) throw flagError(flag, value, err.reason);
    throw err;
  }
}

function flagError(flag: string, value: string, reason: string): UsageError {
  return new UsageError(`invalid argument ${JSON.stringify(value)} for "${flag}" flag: ${reason}`);
}

/**
 * Go flags accept "--pull=false"; node's parseArgs refuses a value on a boolean. Rewrite the
 * explicit forms so scripts written for docker keep working.
 */
function expandBooleanValues(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^--([a-z-]+)=(.*)$/s.exec(a);
    if (m && (BOOLEAN_FLAGS as readonly string[]).includes(m[1]!)) {
      const v = m[2]!;
      if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) out.push(`--${m[1]}`);
      else if (!['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) throw flagError(`--${m[1]}`, v, 'want true or false');
      continue;
    }
    out.push(a);
  }
  return out;
}

/** Docker's "K=V" list flags; `fromEnv` makes a bare "K" take K's value from the environment. */
function keyValues(flag: string, values: string[], env: NodeJS.ProcessEnv, fromEnv: boolean): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const item of values) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (key.trim() === '') throw flagError(flag, item, 'empty key (want KEY=VALUE)');
    // As docker: "--build-arg K" takes K from the environment and stays unset if it has none there;
    // "--label K" is K with an empty value.
    if (eq >= 0) out[key] = item.slice(eq + 1);
    else out[key] = fromEnv ? env[key] : '';
  }
  return out;
}

function parseNetwork(value: string | undefined): 'host' | 'none' {
  if (value === undefined || value === 'default' || value === 'host') return 'host';
  if (value === 'none') return 'none';
  throw flagError('--network', value, 'network mode not supported (want default, host or none)');
}

function parseProgress(value: string, flag: string): ProgressMode {
  if ((PROGRESS_MODES as readonly string[]).includes(value)) return value as ProgressMode;
  throw flagError(flag, value, `want ${PROGRESS_MODES.slice(0, -1).join(', ')} or ${PROGRESS_MODES.at(-1)}`);
}

/** --platform A,B (repeatable, as buildx): the distinct target platforms, in the order given. */
function parsePlatformFlag(values: string[]): Platform[] {
  const specs = values
    .flatMap((v) => v.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length === 0) throw flagError('--platform', values.join(','), 'empty platform');
  const out = new Map<string, Platform>();
  for (const spec of specs) {
    let p: Platform;
    try {
      p = parsePlatform(spec, hostPlatform());
    } catch (err) {
      throw flagError('--platform', spec, (err as Error).message);
    }
    const key = [p.os, p.architecture, p.variant ?? ''].join('/');
    if (!out.has(key)) out.set(key, p);
  }
  return [...out.values()];
}

/** Flags to an invocation. Pure: reads nothing but `argv` and `env`; throws UsageError. */
export function parseBuildArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): BuildInvocation {
  let parsed;
  try {
    parsed = parseArgs({
      args: expandBooleanValues(argv),
      allowPositionals: true,
      strict: true,
      options: {
        file: { type: 'string', short: 'f' },
        tag: { type: 'string', short: 't', multiple: true },
        target: { type: 'string' },
        'build-arg': { type: 'string', multiple: true },
        label: { type: 'string', multiple: true },
        platform: { type: 'string', multiple: true },
        network: { type: 'string' },
        allow: { type: 'string', multiple: true },
        'pids-limit': { type: 'string' },
        'no-cache': { type: 'boolean' },
        'no-cache-filter': { type: 'string', multiple: true },
        'cache-from': { type: 'string', multiple: true },
        'cache-to': { type: 'string', multiple: true },
        pull: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        check: { type: 'boolean' },
        output: { type: 'string', short: 'o', multiple: true },
        annotation: { type: 'string', multiple: true },
        provenance: { type: 'string' },
        attest: { type: 'string', multiple: true },
        load: { type: 'boolean' },
        push: { type: 'boolean' },
        iidfile: { type: 'string' },
        'metadata-file': { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
        progress: { type: 'string' },
        secret: { type: 'string', multiple: true },
        ssh: { type: 'string', multiple: true },
        'build-context': { type: 'string', multiple: true },
        root: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  const empty = (flag: string, value: string | undefined) => {
    if (value === '') throw flagError(flag, value, 'empty value');
    return value;
  };
  if (v.help) {
    return {
      help: true,
      context: '',
      request: { buildArgs: {}, dryRun: false, outputs: [], labels: {}, network: 'host', noCache: false, pull: false },
      tags: [],
      progress: 'auto',
      quiet: false,
    };
  }
  if (positionals.length !== 1) throw new UsageError(`"kiln build" requires exactly 1 argument (the build context), got ${positionals.length}`);

  const tags = (v.tag ?? []).map((t) => normalizeImageName(t, `invalid argument ${JSON.stringify(t)} for "-t, --tag" flag`));
  const annotations = parseAnnotationFlags(v.annotation ?? []);
  const outputs: OutputSpec[] = resolveOutputs({ outputs: v.output ?? [], tags, load: v.load ?? false, push: v.push ?? false, annotations });
  const attest = resolveAttestations({ attest: v.attest ?? [], provenance: v.provenance });

  const quiet = v.quiet ?? false;
  let progress: ProgressMode = 'auto';
  if (v.progress !== undefined) progress = parseProgress(v.progress, '--progress');
  else if (env.BUILDKIT_PROGRESS) progress = parseProgress(env.BUILDKIT_PROGRESS, 'BUILDKIT_PROGRESS');
  if (quiet) progress = 'quiet';
  // -q's one line of stdout is the image ID; a tarball there would be corrupted by it. (With
  // --progress=quiet alone the ID is simply not printed when stdout carries an output.)
  if (quiet && outputs.some((o) => 'dest' in o && o.dest === STDOUT_DEST)) {
    throw new UsageError('-q prints the image ID on stdout: it cannot be used with an output to stdout (dest=-)');
  }

  const request: BuildInvocation['request'] = {
    buildArgs: withSourceDateEpoch(keyValues('--build-arg', v['build-arg'] ?? [], env, true), env),
    dryRun: (v['dry-run'] ?? false) || (v.check ?? false),
    outputs,
    labels: keyValues('--label', v.label ?? [], env, false) as Record<string, string>,
    network: parseNetwork(v.network),
    noCache: v['no-cache'] ?? false,
    pull: v.pull ?? false,
  };
  // As buildx: repeatable, comma-separated; the daemon (or the config) still has to permit each.
  const allow = (v.allow ?? []).flatMap((a) => a.split(',')).map((a) => a.trim());
  for (const a of allow) if (!(ENTITLEMENTS as readonly string[]).includes(a)) throw flagError('--allow', a, `want ${ENTITLEMENTS.join(' or ')}`);
  if (allow.length) request.allow = [...new Set(allow)] as Entitlement[];
  if (v['pids-limit'] !== undefined) {
    const n = Number(v['pids-limit']);
    if (!/^\d+$/.test(v['pids-limit']) || !Number.isSafeInteger(n) || n < 1)
      throw flagError('--pids-limit', v['pids-limit'], 'want a positive number of processes');
    request.runPidsLimit = n;
  }
  const target = empty('--target', v.target);
  if (target !== undefined) request.target = target;
  // As buildx: repeatable, and each value may list several stages separated by commas.
  const noCacheFilter = (v['no-cache-filter'] ?? []).flatMap((f) => f.split(',')).map((s) => s.trim().toLowerCase());
  if (noCacheFilter.some((s) => s === '')) throw flagError('--no-cache-filter', (v['no-cache-filter'] ?? []).join(','), 'empty stage name');
  if (noCacheFilter.length) request.noCacheFilter = noCacheFilter;
  const cacheFrom = (v['cache-from'] ?? []).map(parseCacheFrom);
  if (cacheFrom.length) request.cacheFrom = cacheFrom;
  const cacheTo = (v['cache-to'] ?? []).map(parseCacheTo);
  if (cacheTo.length) request.cacheTo = cacheTo;
  if (v.platform !== undefined) {
    const platforms = parsePlatformFlag(v.platform);
    if (platforms.length === 1) request.platform = platforms[0];
    else request.platforms = platforms;
  }
  const namedContexts = parseBuildContexts(v['build-context'] ?? []);
  if (namedContexts) request.namedContexts = namedContexts;
  if (attest.provenance) request.attest = attest;

  const inv: BuildInvocation = { help: false, context: positionals[0]!, request, tags, progress, quiet };
  if (v.check) inv.check = true;
  // These report the image ID, which exists only once the image is assembled.
  if (quiet || v.iidfile !== undefined || v['metadata-file'] !== undefined) request.imageId = true;
  const file = empty('-f, --file', v.file);
  if (file !== undefined) inv.file = file;
  const iidfile = empty('--iidfile', v.iidfile);
  if (iidfile !== undefined) inv.iidfile = iidfile;
  const metadataFile = empty('--metadata-file', v['metadata-file']);
  if (metadataFile !== undefined) inv.metadataFile = metadataFile;
  const root = empty('--root', v.root);
  if (root !== undefined) inv.root = root;
  if (v.secret?.length) inv.secrets = v.secret.map(parseSecretFlag);
  if (v.ssh?.length) inv.ssh = v.ssh.map(parseSshFlag);
  return inv;
}

/** Reads what the request needs from disk: the context directory (checked) and the Dockerfile. */
export function loadRequest(inv: BuildInvocation, readStdin = () => readFileSync(0, 'utf8')): BuildRequest {
  const contextDir = path.resolve(inv.context);
  let st;
  try {
    st = statSync(contextDir);
  } catch {
    throw new UsageError(`unable to prepare context: path ${JSON.stringify(inv.context)} not found`);
  }
  if (!st.isDirectory()) throw new UsageError(`unable to prepare context: ${JSON.stringify(inv.context)} is not a directory`);
  return { ...inv.request, context: { type: 'dir', path: contextDir }, dockerfile: readDockerfile(inv.file, contextDir, readStdin) };
}

function readDockerfile(file: string | undefined, contextDir: string, readStdin: () => string): BuildRequest['dockerfile'] {
  if (file === '-') return { name: 'Dockerfile', text: readStdin() };
  const p = file === undefined ? path.join(contextDir, 'Dockerfile') : path.resolve(file);
  try {
    return { name: file ?? 'Dockerfile', text: readFileSync(p, 'utf8'), path: p };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'ENOENT' ? `failed to read Dockerfile: open ${p}: no such file or directory` : `failed to read Dockerfile ${p}: ${(err as Error).message}`,
    );
  }
}

/**
 * A failed build's message. A failed RUN's last lines of output are quoted after it unless the
 * display already showed them in BuildKit's error block (plain, tty).
 */
export function formatBuildError(err: unknown, outputShown: boolean): string {
  if (!(err instanceof BuildFailure)) return err instanceof Error ? err.message : String(err);
  const { message, outputTail } = err.info;
  return outputTail && !outputShown ? `${message}\n--- last lines of output ---\n${outputTail}` : message;
}

export function formatFinding(f: LintFinding): string {
  return `${f.level === 'error' ? 'ERROR' : 'WARN'}: ${f.rule}: ${f.message} (${f.location.file} line ${f.location.line})`;
}

/** buildx's --metadata-file keys, sorted as Go's JSON encoder writes a map. */
export function buildMetadata(image: NonNullable<BuildResult['image']>): Record<string, string> {
  // A multi-platform image is an index, which has no config of its own (as buildx writes it).
  const meta: Record<string, string> = image.platforms
    ? { 'containerimage.digest': image.manifestDigest }
    : {
        'containerimage.config.digest': image.configDigest,
        'containerimage.digest': image.manifestDigest,
      };
  if (image.names.length > 0) meta['image.name'] = image.names.join(',');
  return meta;
}

/** The client as this command uses it: the progress callback and the abort signal are optional. */
export interface BuildClient {
  build(req: BuildRequest, onProgress?: (event: ProgressEvent) => void, signal?: AbortSignal): Promise<BuildResult>;
  /** Releases the state root for other kiln processes. */
  close?(): Promise<void>;
}

export interface BuildIO {
  stdout: OutStream & NodeJS.WritableStream;
  stderr: OutStream;
  /** Where `kiln build -` reads its context (default: the process's stdin). */
  stdin?: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
  /** Created after --root is applied to env, so the client sees it. */
  client?: () => BuildClient;
}

/** Outputs that go to stdout are written to a temporary file first, then copied out. */
async function redirectStdoutOutputs(outputs: OutputSpec[], stdoutIsTTY: boolean): Promise<{ file?: string; cleanup: () => Promise<void> }> {
  const target = outputs.find((o) => 'dest' in o && o.dest === STDOUT_DEST) as (OutputSpec & { dest: string }) | undefined;
  if (!target) return { cleanup: async () => {} };
  if (stdoutIsTTY) throw new UsageError(`refusing to write a ${target.type} tarball to the terminal: redirect stdout or give dest=FILE`);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-output-'));
  target.dest = path.join(dir, 'output.tar');
  return { file: target.dest, cleanup: () => fsp.rm(dir, { recursive: true, force: true }) };
}

export async function buildCommand(argv: string[], io: BuildIO = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  let inv: BuildInvocation;
  let request: BuildRequest;
  let secretsAndSsh: Pick<BuildRequest, 'secrets' | 'ssh'>;
  let sshSources: SshSource[] = [];
  try {
    inv = parseBuildArgs(argv, io.env);
    if (inv.help) {
      io.stdout.write(BUILD_HELP);
      return 0;
    }
    if (inv.context === '-' && inv.file === '-') throw new UsageError('the context and the Dockerfile cannot both come from stdin ("-")');
    if (inv.request.namedContexts) inv.request.namedContexts = checkBuildContexts(inv.request.namedContexts);
    if (inv.context !== '-') request = loadRequest(inv);
    secretsAndSsh = {};
    if (inv.secrets) secretsAndSsh.secrets = loadSecrets(inv.secrets, io.env);
    if (inv.ssh) sshSources = resolveSsh(inv.ssh, io.env);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`kiln build: ${err.message}\nSee 'kiln build --help'.\n`);
      return 1;
    }
    throw err;
  }
  // `kiln build -`: a tar context (or a lone Dockerfile) on stdin, unpacked to a private directory.
  let stdinContext: StdinContext | undefined;
  if (inv.context === '-') {
    try {
      stdinContext = await contextFromStdin(io.stdin ?? process.stdin, inv.file);
    } catch (err) {
      io.stderr.write(`ERROR: ${(err as Error).message}\n`);
      return 1;
    }
    request = { ...inv.request, context: { type: 'dir', path: stdinContext.dir, ephemeral: true }, dockerfile: stdinContext.dockerfile };
  }
  // Key files given to --ssh get a private agent for the length of the build.
  let ssh: Awaited<ReturnType<typeof sshForwards>> | undefined;
  if (sshSources.length > 0) {
    try {
      ssh = await sshForwards(sshSources, io.env);
    } catch (err) {
      await stdinContext?.cleanup();
      io.stderr.write(`kiln build: ${(err as Error).message}\n`);
      return 1;
    }
    secretsAndSsh!.ssh = ssh.forwards;
  }
  try {
    return await buildWith(inv, { ...request!, ...secretsAndSsh! }, io);
  } finally {
    await ssh?.stop();
    await stdinContext?.cleanup();
  }
}

async function buildWith(inv: BuildInvocation, request: BuildRequest, io: BuildIO): Promise<number> {
  // The state root must be in place before the client (and its server) exist.
  if (inv.root !== undefined) io.env.KILN_ROOT = path.resolve(inv.root);

  let stdoutOutput: Awaited<ReturnType<typeof redirectStdoutOutputs>>;
  try {
    stdoutOutput = await redirectStdoutOutputs(request.outputs, io.stdout.isTTY === true);
  } catch (err) {
    io.stderr.write(`kiln build: ${(err as Error).message}\n`);
    return 1;
  }

  const display = createDisplay(inv.progress, io.stderr, io.env);
  const abort = new AbortController();
  let interrupts = 0;
  // First Ctrl-C cancels the build and lets it clean up; a second one leaves at once.
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      display.note('cancelling (press Ctrl-C again to exit now)');
      abort.abort(new Error('build cancelled by user (SIGINT)'));
    } else {
      display.finish();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);

  let client: BuildClient;
  try {
    client = io.client ? io.client() : await connect({ root: inv.root !== undefined ? path.resolve(inv.root) : undefined, env: io.env });
  } catch (err) {
    process.off('SIGINT', onSigint);
    await stdoutOutput.cleanup();
    io.stderr.write(`kiln build: ${(err as Error).message}\n`);
    return 1;
  }
  try {
    const result = await client.build(request, (e) => display.event(e), abort.signal);
    display.finish();
    if (inv.check) {
      // As buildx: the report on stdout; a rule set to error (# check=error=true) fails the command.
      io.stdout.write(
        inv.progress === 'rawjson' ? JSON.stringify({ warnings: result.warnings }) + '\n' : formatCheck(result.warnings, request.dockerfile.text),
      );
      return result.warnings.some((w) => w.level === 'error') ? 1 : 0;
    }
    if (inv.progress !== 'quiet') {
      for (const w of result.warnings) io.stderr.write(formatFinding(w) + '\n');
      if (result.graph.unusedBuildArgs.length > 0) {
        io.stderr.write(`[Warning] One or more build-args [${result.graph.unusedBuildArgs.join(' ')}] were not consumed\n`);
      }
    }
    if (result.warnings.some((w) => w.level === 'error')) {
      io.stderr.write('kiln build: lint violations are errors here (# check=error=true)\n');
      return 1;
    }
    if (request.dryRun) {
      io.stdout.write(JSON.stringify(result.graph, null, 2) + '\n');
      return 0;
    }
    if (stdoutOutput.file) await pipeline(createReadStream(stdoutOutput.file), io.stdout, { end: false });
    const image = result.image;
    if (request.outputs.length === 0 && (display instanceof PlainDisplay || display instanceof TtyDisplay)) {
      // As buildx: nothing was asked for, so nothing was exported; say where the result went.
      io.stderr.write('WARNING: No output specified: the build result is only in the build cache. Use -t NAME to keep it as an image, or -o to export it.\n');
    }
    if (inv.iidfile !== undefined) {
      if (image) await fsp.writeFile(inv.iidfile, image.id);
      else io.stderr.write(`WARNING: --iidfile ${inv.iidfile}: the build produced no image, nothing written\n`);
    }
    if (inv.metadataFile !== undefined && image) {
      await fsp.writeFile(inv.metadataFile, JSON.stringify(buildMetadata(image), null, 2));
    }
    if (inv.progress === 'quiet' && image && !stdoutOutput.file) io.stdout.write(image.id + '\n');
    return 0;
  } catch (err) {
    display.finish();
    io.stderr.write(`ERROR: ${formatBuildError(err, display instanceof PlainDisplay || display instanceof TtyDisplay)}\n`);
    return abort.signal.aborted ? 130 : 1;
  } finally {
    process.off('SIGINT', onSigint);
    await client.close?.().catch((err: unknown) => io.stderr.write(`WARNING: releasing kiln's state root: ${(err as Error).message}\n`));
    await stdoutOutput.cleanup();
  }
}
