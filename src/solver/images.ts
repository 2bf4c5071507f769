// Image-level commands on a root: load an OCI layout into the store, and run an image's command in
// a throw-away container (the demo and users without Docker can see what they built).

import { run } from '../executor/index.js';
import { importImage } from '../image/importer.js';
import { formatReference, parseReference } from '../image/reference.js';
import type { ImageRecord } from '../image/store.js';
import { hostPlatform, type Manifest } from '../oci/index.js';
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
  const argv = [...(c.Entrypoint ?? []), ...(opts.args.length ? opts.args : c.Cmd ?? [])];
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
