// kiln's daemon settings, in the keys of Docker's daemon.json so an existing file can be reused:
// `registry-mirrors` and `insecure-registries`. Read from KILN_CONFIG, else /etc/kiln/daemon.json.

import { readFileSync } from 'node:fs';
import type { RegistryConfig } from '../solver/index.js';

export interface KilnConfig {
  registry: RegistryConfig;
  /** RUN containers at once. */
  maxParallelRuns: number;
  /** cgroup limits of every RUN container. */
  runLimits: { memoryBytes?: number; pids?: number };
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
    registry: { mirrors: strings('registry-mirrors'), insecureRegistries: strings('insecure-registries') },
    maxParallelRuns: typeof max === 'number' && max >= 1 ? Math.floor(max) : 4,
    runLimits: { memoryBytes: positive('run-memory-bytes'), pids: positive('run-pids-limit') ?? DEFAULT_PIDS_LIMIT },
  };
}
