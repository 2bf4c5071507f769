// Image-level commands on a root: load an OCI layout into the store, and run an image's command in
// a throw-away container (the demo and users without Docker can see what they built).

import type { Readable } from 'node:stream';
import { run } from '../executor/index.js';
import { imageArchive } from '../image/exporter/archive.js';
import type { StoredImage } from '../image/exporter/manifest.js';
import { importImage } from '../image/importer.js';
import { familiarString, formatReference, parseReference } from '../image/reference.js';
import type { ImageRecord } from '../image/store.js';
import { hostPlatform, isIndexMediaType, type Descriptor, type ImageConfig, type Index, type Manifest } from '../oci/index.js';
import { BaseImages } from './base-images.js';
import { mountDir, uniqueKey, withScope } from './mounted.js';
import type { RootServices } from './root.js';

/** Loads every image of the layout; `tag` names an image whose layout carries no full name. */
export async function loadImages(s: RootServices, source: string, tag?: string): Promise<ImageRecord[]> {
  const imported = await importImage(s.store, source);
  const records: ImageRecord[] = [];
  for (const img of imported) {
    const names = img.names.length ? img.names : tag ? [tag] : [];
    if (names.length === 0) {
      throw new Error(`${source}: the image ${img.manifest.digest} carries no name (only ${JSON.stringify(img.tag ?? '')}); give one with --tag`);
    }
    let config = img.manifest.digest;
    let size = 0;
    try {
      const m = await s.store.readJSON<Manifest>(img.manifest.digest);
      if (m.config) {
        config = m.config.digest;
        size = m.layers.reduce((n, l) => n + l.size, 0);
      }
    } catch {
      // An index: its config is per platform; the record keeps the index digest.
    }
    for (const n of names) {
      records.push({ name: formatReference(parseReference(n)), manifest: img.manifest, config, size, created: new Date().toISOString() });
    }
  }
  await s.images.put(records);
  return records;
}

export interface RunImageOptions {
  /** Replaces the image's CMD (the ENTRYPOINT stays), as `docker run IMAGE ARGS`. */
  args: string[];
  network: 'host' | 'none';
  onStdout(chunk: Buffer): void;
  onStderr(chunk: Buffer): void;
  signal?: AbortSignal;
}

/** Runs the image's entrypoint and command in runc on a throw-away snapshot; returns the exit code. */
export async function runImage(s: RootServices, name: string, opts: RunImageOptions): Promise<number> {
  const images = new BaseImages(s, hostPlatform(), false, opts.signal);
  const ref = formatReference(parseReference(name));
  if (!(await s.images.get(ref))) throw new Error(`no such image in kiln's store: ${name} (see \`kiln images\`)`);
  const image = await images.resolve(ref);
  const top = await images.unpack(image);
  const c = image.config.config ?? {};
  const argv = [...(c.Entrypoint ?? []), ...(opts.args.length ? opts.args : (c.Cmd ?? []))];
  if (argv.length === 0) throw new Error(`image ${name} has no ENTRYPOINT or CMD, and no command was given`);
  const key = uniqueKey('run');
  const mounts = await s.snapshotter.prepare(key, top);
  try {
    return await withScope(async (scope) => {
      const rootfs = await mountDir(scope, s.layout.tmp, mounts);
      const result = await run({
        rootfs,
        stateDir: s.layout.executor,
        args: argv,
        env: c.Env ?? [],
        cwd: c.WorkingDir || '/',
        user: c.User || undefined,
        network: opts.network,
        onStdout: opts.onStdout,
        onStderr: opts.onStderr,
        signal: opts.signal,
      });
      return result.exitCode;
    });
  } finally {
    await s.snapshotter.remove(key);
  }
}

/** An image of the store as the Docker API shows it: one entry per config, with every name on it. */
export interface StoredImageInfo {
  /** The config digest: Docker's image ID. */
  id: string;
  /** Full names ("docker.io/library/app:1.0") pointing at it, sorted. */
  names: string[];
  records: ImageRecord[];
  /** The single-platform image (for a name on an index, the host's platform, else the first). */
  image: StoredImage;
  config: ImageConfig;
}

async function platformImage(s: RootServices, manifest: Descriptor): Promise<{ image: StoredImage; config: ImageConfig }> {
  let desc = manifest;
  let m = await s.store.readJSON<Manifest & Partial<Index>>(desc.digest);
  if (isIndexMediaType(m.mediaType ?? desc.mediaType) || Array.isArray(m.manifests)) {
    const list = (m.manifests ?? []).filter((d) => d.platform?.os !== 'unknown');
    const host = hostPlatform();
    const pick = list.find((d) => d.platform?.os === host.os && d.platform.architecture === host.architecture) ?? list[0];
    if (!pick) throw new Error(`image index ${desc.digest} lists no manifest`);
    desc = pick;
    m = await s.store.readJSON<Manifest & Partial<Index>>(desc.digest);
  }
  const config = await s.store.readJSON<ImageConfig>(m.config.digest);
  return { image: { manifest: desc, config: m.config, layers: m.layers }, config };
}

/** Every image of the store, one entry per image ID, newest record first. */
export async function describeImages(s: RootServices): Promise<StoredImageInfo[]> {
  const byConfig = new Map<string, ImageRecord[]>();
  for (const r of await s.images.list()) {
    const list = byConfig.get(r.config) ?? [];
    list.push(r);
    byConfig.set(r.config, list);
  }
  const out: StoredImageInfo[] = [];
  for (const records of byConfig.values()) {
    try {
      const { image, config } = await platformImage(s, records[0]!.manifest);
      out.push({ id: image.config.digest, names: records.map((r) => r.name).sort(), records, image, config });
    } catch {
      // A record whose blobs are gone (a damaged root) is left out rather than failing the list.
    }
  }
  return out;
}

/**
 * Finds an image as `docker` does: by name ("app" is docker.io/library/app:latest), by ID
 * ("sha256:<hex>"), or by a unique prefix of the ID's hex. Undefined when nothing matches.
 */
export async function findImage(s: RootServices, name: string): Promise<StoredImageInfo | undefined> {
  let full: string | undefined;
  try {
    full = formatReference(parseReference(name));
  } catch {
    // Not a reference: maybe an ID.
  }
  const all = await describeImages(s);
  if (full !== undefined) {
    const hit = all.find((i) => i.names.includes(full!));
    if (hit) return hit;
  }
  const m = /^(?:sha256:)?([0-9a-f]{1,64})$/.exec(name);
  if (!m) return undefined;
  const matches = all.filter(
    (i) => i.id.slice('sha256:'.length).startsWith(m[1]!) || i.records.some((r) => r.config.slice('sha256:'.length).startsWith(m[1]!)),
  );
  return matches.length === 1 ? matches[0] : undefined;
}

/**
 * A docker archive (`docker save`) of the images named. Each name is looked up as findImage does;
 * names given as references are the archive's tags, IDs add no tag. Several distinct images in
 * one archive are not supported (yet).
 */
export async function saveImages(s: RootServices, names: string[]): Promise<Readable> {
  if (names.length === 0) throw new ImageLookupError('no image named', 'invalid');
  let found: StoredImageInfo | undefined;
  const tags: { full: string; familiar: string }[] = [];
  for (const n of names) {
    const info = await findImage(s, n);
    if (!info) throw new ImageLookupError(`No such image: ${n}`, 'missing');
    if (found && found.id !== info.id) throw new ImageLookupError('saving several different images in one archive is not supported by kiln', 'unsupported');
    found = info;
    let ref;
    try {
      ref = parseReference(n);
    } catch {
      continue;
    }
    const full = formatReference(ref);
    if (info.names.includes(full) && !tags.some((t) => t.full === full)) tags.push({ full, familiar: familiarString(ref) });
  }
  return imageArchive(s.store, found!.image, { names: tags, format: 'docker' });
}

/**
 * Removes a name from the store (`docker rmi`). Given an ID, removes every name on it when it has
 * one, or when `force`. Answers the full names removed. The blobs stay until GC.
 */
export async function untagImage(s: RootServices, name: string, force = false): Promise<string[]> {
  const info = await findImage(s, name);
  if (!info) throw new ImageLookupError(`No such image: ${name}`, 'missing');
  let full: string | undefined;
  try {
    full = formatReference(parseReference(name));
  } catch {
    // An ID.
  }
  const names = full !== undefined && info.names.includes(full) ? [full] : info.names;
  if (names.length > 1 && !force) {
    throw new ImageLookupError(
      `conflict: unable to delete ${info.id.slice(7, 19)} (must be forced) - image is referenced in multiple repositories`,
      'conflict',
    );
  }
  for (const n of names) await s.images.remove(n);
  return names;
}

/** Why an image lookup failed, for the API to map onto a status. */
export class ImageLookupError extends Error {
  constructor(
    message: string,
    readonly kind: 'missing' | 'invalid' | 'conflict' | 'unsupported',
  ) {
    super(message);
    this.name = 'ImageLookupError';
  }
}
