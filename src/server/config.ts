// kiln's daemon settings, in the keys of Docker's daemon.json so an existing file can be reused:
// `registry-mirrors` and `insecure-registries`. Read from KILN_CONFIG, else /etc/kiln/daemon.json.

import { readFileSync } from 'node:fs';
import type { RegistryConfig } from '../solver/index.js';
import { parseSize, type GcPolicy } from '../solver/gc.js';

export interface KilnConfig {
  registry: RegistryConfig;
  /** RUN containers at once. */
  maxParallelRuns: number;
  /** cgroup limits of every RUN container. */
  runLimits: { memoryBytes?: number; pids?: number };
  /**
   * Automatic build cache collection after builds: `gc-keep-storage` ("10GB", or bytes) turns it on,
   * `gc-enabled: false` off. Docker's `builder.gc.{enabled,defaultKeepStorage}` is read too. Off
   * when neither is set: a root's cache is only pruned when asked.
   */
  gc?: GcPolicy;
}

/** A fork bomb in one RUN must not take the machine (or a shared daemon) down with it. */
const DEFAULT_PIDS_LIMIT = 16384;

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
  };
}

function gcPolicy(raw: Record<string, unknown>, file: string): GcPolicy {
  const builder = raw['builder'] as { gc?: Record<string, unknown> } | undefined;
  const docker = builder && typeof builder === 'object' && builder.gc && typeof builder.gc === 'object' ? builder.gc : {};
  const enabledRaw = raw['gc-enabled'] ?? docker['enabled'];
  const keepRaw = raw['gc-keep-storage'] ?? docker['defaultKeepStorage'];
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
