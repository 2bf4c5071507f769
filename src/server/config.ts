// kiln's daemon settings, in the keys of Docker's daemon.json so an existing file can be reused:
// `registry-mirrors` and `insecure-registries`. Read from KILN_CONFIG, else /etc/kiln/daemon.json.

import { readFileSync } from 'node:fs';
import { ENTITLEMENTS, type CacheFrom, type CacheTo, type Entitlement, type RegistryConfig } from '../solver/index.js';
import { parseDuration, parseSize, type GcPolicy } from '../solver/gc.js';
import { CacheSpecError, parseCacheFrom, parseCacheTo } from './cache-spec.js';

export interface KilnConfig {
  registry: RegistryConfig;
  /** RUN containers at once. */
  maxParallelRuns: number;
  /** cgroup limits of every RUN container. */
  runLimits: { memoryBytes?: number; pids?: number };
  /**
   * Entitlements a build may be granted when it asks (`allowed-entitlements`, as buildkitd's
   * --allow-insecure-entitlement): none by default.
   */
  allowedEntitlements?: Entitlement[];
  /** Bytes of one step's log passed on before it is clipped (`step-log-max-size`; -1: no limit). */
  stepLogMaxBytes?: number;
  /** The most processes a build may ask a RUN to be allowed (kiln build --pids-limit). */
  maxRunPids?: number;
  /**
   * Automatic build cache collection after builds: `gc-keep-storage` ("10GB", or bytes) turns it on,
   * `gc-enabled: false` off. Docker's `builder.gc.{enabled,defaultKeepStorage}` is read too. Off
   * when neither is set: a root's cache is only pruned when asked.
   */
  gc?: GcPolicy;
  /** What `kiln daemon` enforces; embedded mode ignores it. */
  daemon: DaemonLimits;
  /**
   * The daemon's default cache import and export (`cache-from`, `cache-to`: lists of entries in
   * buildx's CSV form, as `kiln build --cache-from/--cache-to` takes them). A build that names no
   * cache import gets `from`, one that names no export gets `to`: a fleet of daemons shares its
   * cache through a registry. Registry and inline entries only. Embedded mode ignores them.
   */
  cache?: { from: CacheFrom[]; to: CacheTo[] };
}

/** The limits a shared service needs; every one is a key of daemon.json. */
export interface DaemonLimits {
  /** Builds that run at once; the rest wait in line, first in first out per client. */
  maxConcurrentBuilds: number;
  /** Bytes of files one build context may hold. */
  maxContextBytes: number;
  /** Bytes of a JSON request body (a build request, a context's file list). */
  maxRequestBodyBytes: number;
  /** Bytes of a request's headers (Node's http maxHeaderSize). */
  maxHeaderBytes: number;
  /** Context uploads received at once; more are refused with 429 until one ends. */
  maxConcurrentUploads: number;
  /** A build running longer than this is cancelled (0: no limit). */
  buildTimeoutMs: number;
  /** On SIGTERM, how long running builds may go on before they are cancelled. */
  shutdownGraceMs: number;
}

const DEFAULT_DAEMON: DaemonLimits = {
  maxConcurrentBuilds: 8,
  maxContextBytes: 8 * 1024 ** 3,
  maxRequestBodyBytes: 64 * 1024 ** 2,
  maxHeaderBytes: 16 * 1024,
  maxConcurrentUploads: 8,
  buildTimeoutMs: 0,
  shutdownGraceMs: 30_000,
};

/** A fork bomb in one RUN must not take the machine (or a shared daemon) down with it. */
// 2048 processes per RUN, as Podman and buildah default to: enough for any build's make -j, and a
// fork bomb on a 2-core CI worker stops there.
const DEFAULT_PIDS_LIMIT = 2048;
/** How far a build may raise its own RUN pids limit (--pids-limit) without a config change. */
const DEFAULT_MAX_RUN_PIDS = 32768;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): KilnConfig {
  const file = env.KILN_CONFIG ?? '/etc/kiln/daemon.json';
  let raw: Record<string, unknown> = {};
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(code === 'ENOENT' && env.KILN_CONFIG === undefined)) {
      throw new Error(`kiln config ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  }
  const strings = (key: string): string[] | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error(`kiln config ${file}: "${key}" must be a list of strings`);
    return v as string[];
  };
  const max = raw['max-parallel-runs'];
  const positive = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new Error(`kiln config ${file}: "${key}" must be a positive integer`);
    return v;
  };
  return {
    gc: gcPolicy(raw, file),
    registry: { mirrors: strings('registry-mirrors'), insecureRegistries: strings('insecure-registries') },
    maxParallelRuns: typeof max === 'number' && max >= 1 ? Math.floor(max) : 4,
    runLimits: { memoryBytes: positive('run-memory-bytes'), pids: positive('run-pids-limit') ?? DEFAULT_PIDS_LIMIT },
    allowedEntitlements: entitlements(strings('allowed-entitlements') ?? [], file),
    stepLogMaxBytes: stepLogMax(raw['step-log-max-size'], env.BUILDKIT_STEP_LOG_MAX_SIZE, file),
    maxRunPids: positive('max-run-pids-limit') ?? DEFAULT_MAX_RUN_PIDS,
    daemon: daemonLimits(raw, file, positive),
    cache: { from: cacheEntries('cache-from', parseCacheFrom), to: cacheEntries('cache-to', parseCacheTo) },
  };

  function cacheEntries<T extends CacheFrom | CacheTo>(key: 'cache-from' | 'cache-to', parse: (value: string) => T): T[] {
    return (strings(key) ?? []).map((value) => {
      let entry: T;
      try {
        entry = parse(value);
      } catch (err) {
        if (err instanceof CacheSpecError) throw new Error(`kiln config ${file}: "${key}": invalid entry ${JSON.stringify(value)}: ${err.reason}`);
        throw err;
      }
      // As for a request: a local cache names a directory on the daemon's host, which a fleet does
      // not share and which the daemon would write as root for every client.
      if (entry.type === 'local')
        throw new Error(
          `kiln config ${file}: "${key}": type=local is not available in the daemon's configuration (${JSON.stringify(value)}): use type=registry`,
        );
      return entry;
    });
  }
}

/** BuildKit's step log limit: 2 MiB unless the config (or BuildKit's own variable) says otherwise. */
function stepLogMax(value: unknown, envValue: string | undefined, file: string): number {
  const v = value ?? (envValue !== undefined && envValue !== '' ? (/^-?\d+$/.test(envValue) ? Number(envValue) : envValue) : undefined);
  if (v === undefined) return 2 * 1024 * 1024;
  if (v === -1) return -1;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === 'string') {
    try {
      return parseSize(v);
    } catch {
      /* reported below */
    }
  }
  throw new Error(`kiln config ${file}: "step-log-max-size" must be a size such as "2MiB", a number of bytes, or -1 for no limit`);
}

function entitlements(names: string[], file: string): Entitlement[] {
  for (const n of names) {
    if (!(ENTITLEMENTS as readonly string[]).includes(n))
      throw new Error(`kiln config ${file}: "allowed-entitlements": unknown entitlement ${JSON.stringify(n)} (known: ${ENTITLEMENTS.join(', ')})`);
  }
  return names as Entitlement[];
}

function daemonLimits(raw: Record<string, unknown>, file: string, positive: (key: string) => number | undefined): DaemonLimits {
  // Sizes as "8GB" or bytes, durations as "30s"/"1h" or milliseconds, as the gc keys take them.
  const size = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
    if (typeof v === 'string') {
      try {
        const n = parseSize(v);
        if (n > 0) return n;
      } catch {
        /* reported below */
      }
    }
    throw new Error(`kiln config ${file}: "${key}" must be a size such as "8GB" or a positive number of bytes`);
  };
  const duration = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
    if (typeof v === 'string') {
      try {
        return parseDuration(v);
      } catch {
        /* reported below */
      }
    }
    throw new Error(`kiln config ${file}: "${key}" must be a duration such as "30s" or "1h", or milliseconds`);
  };
  return {
    maxConcurrentBuilds: positive('max-concurrent-builds') ?? DEFAULT_DAEMON.maxConcurrentBuilds,
    maxContextBytes: size('max-context-size') ?? DEFAULT_DAEMON.maxContextBytes,
    maxRequestBodyBytes: size('max-request-body-size') ?? DEFAULT_DAEMON.maxRequestBodyBytes,
    maxHeaderBytes: size('max-header-size') ?? DEFAULT_DAEMON.maxHeaderBytes,
    maxConcurrentUploads: positive('max-concurrent-uploads') ?? DEFAULT_DAEMON.maxConcurrentUploads,
    buildTimeoutMs: duration('build-timeout') ?? DEFAULT_DAEMON.buildTimeoutMs,
    shutdownGraceMs: duration('shutdown-grace') ?? DEFAULT_DAEMON.shutdownGraceMs,
  };
}

function gcPolicy(raw: Record<string, unknown>, file: string): GcPolicy {
  const builder = raw.builder as { gc?: Record<string, unknown> } | undefined;
  const docker = builder && typeof builder === 'object' && builder.gc && typeof builder.gc === 'object' ? builder.gc : {};
  const enabledRaw = raw['gc-enabled'] ?? docker.enabled;
  const keepRaw = raw['gc-keep-storage'] ?? docker.defaultKeepStorage;
  if (enabledRaw !== undefined && typeof enabledRaw !== 'boolean') throw new Error(`kiln config ${file}: "gc-enabled" must be true or false`);
  let keepStorage = 0;
  if (keepRaw !== undefined) {
    if (typeof keepRaw === 'number' && Number.isSafeInteger(keepRaw) && keepRaw >= 0) keepStorage = keepRaw;
    else if (typeof keepRaw === 'string') {
      try {
        keepStorage = parseSize(keepRaw);
      } catch (err) {
        throw new Error(`kiln config ${file}: "gc-keep-storage": ${(err as Error).message}`);
      }
    } else throw new Error(`kiln config ${file}: "gc-keep-storage" must be a size such as "10GB" or a number of bytes`);
  }
  return { enabled: (enabledRaw ?? true) && keepStorage > 0, keepStorage };
}
