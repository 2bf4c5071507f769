// What the differential suite compares of an image, in a normalised form that can be cached as JSON.
//
// Normalisation removes only differences that mean nothing to a container runtime: `null` versus an
// absent field versus an empty list or map (Docker's Go structs write `null`, OCI writers omit),
// the order of map keys, and zero durations in a healthcheck (Docker omits them). Env keeps its
// order: Docker keeps a variable's first position when it is redefined, and that is observable.
import type { LoadedImage, RawImageConfig } from './image-archive.js';
import { applyLayers, type FsEntry } from './rootfs.js';

export interface Healthcheck {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface NormalizedConfig {
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: string[];
  Volumes?: string[];
  Labels?: Record<string, string>;
  StopSignal?: string;
  Healthcheck?: Healthcheck;
  Shell?: string[];
  OnBuild?: string[];
  Author?: string;
  architecture?: string;
  os?: string;
  variant?: string;
}

export interface HistoryItem {
  createdBy: string;
  emptyLayer: boolean;
}

export interface ImageSummary {
  config: NormalizedConfig;
  history: HistoryItem[];
  layerCount: number;
  rootfs: FsEntry[];
  /** path -> base64 content, for the files an expectation reads. */
  contents: Record<string, string>;
}

function list(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.length > 0 ? v.map(String) : undefined;
}

function keys(v: unknown): string[] | undefined {
  return v && typeof v === 'object' && Object.keys(v).length > 0 ? Object.keys(v).sort() : undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function healthcheck(v: unknown): Healthcheck | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const h = v as Record<string, unknown>;
  const out: Healthcheck = {};
  const test = list(h.Test);
  if (test) out.Test = test;
  for (const k of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries'] as const) {
    if (typeof h[k] === 'number' && h[k] !== 0) out[k] = h[k];
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

export function normalizeConfig(raw: RawImageConfig): NormalizedConfig {
  const c = (raw.config ?? {}) as Record<string, unknown>;
  const labels = c.Labels && typeof c.Labels === 'object' ? (c.Labels as Record<string, string>) : {};
  const out: NormalizedConfig = {
    Env: list(c.Env),
    Cmd: list(c.Cmd),
    Entrypoint: list(c.Entrypoint),
    WorkingDir: str(c.WorkingDir),
    User: str(c.User),
    ExposedPorts: keys(c.ExposedPorts),
    Volumes: keys(c.Volumes),
    Labels: keys(labels) ? Object.fromEntries(keys(labels)!.map((k) => [k, labels[k]])) : undefined,
    StopSignal: str(c.StopSignal),
    Healthcheck: healthcheck(c.Healthcheck),
    Shell: list(c.Shell),
    OnBuild: list(c.OnBuild),
    Author: str(raw.author),
    architecture: str(raw.architecture),
    os: str(raw.os),
    variant: str(raw.variant),
  };
  for (const k of Object.keys(out) as (keyof NormalizedConfig)[]) if (out[k] === undefined) delete out[k];
  return out;
}

/**
 * The summary of a loaded image, plus the contents of the files named in `keep` (base64, for the
 * expectations; the summary itself only has their digests).
 */
export async function summarize(image: LoadedImage, what: string, keep: string[] = []): Promise<ImageSummary> {
  const applied = await applyLayers(image.layers, what);
  const contents: Record<string, string> = {};
  for (const p of keep) {
    const body = applied.read(p);
    if (body) contents[p] = body.toString('base64');
  }
  return {
    config: normalizeConfig(image.config),
    history: (image.config.history ?? []).map((h) => ({ createdBy: h.created_by ?? '', emptyLayer: h.empty_layer === true })),
    layerCount: image.layers.length,
    rootfs: applied.entries,
    contents,
  };
}
