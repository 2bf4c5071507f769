// Image archives: an OCI image layout tarball (type=oci) and the tarball `docker load` reads
// (type=docker). As BuildKit does, the docker archive is also a valid OCI layout: it carries
// index.json and oci-layout beside Docker's manifest.json, so either tool can read it.

import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import type tarStream from 'tar-stream';
import { tarStream as loadTarStream } from '../../util/lazy-modules.js';
import type { ContentStore } from '../../cache/content-store.js';
import { MediaType, digestHex, type Descriptor, type Index } from '../../oci/index.js';
import type { StoredImage } from './manifest.js';

export interface ArchiveOptions {
  /** Full names ("docker.io/library/x:tag") for annotations, and familiar ones for manifest.json. */
  names: { full: string; familiar: string }[];
  format: 'oci' | 'docker';
  /** The image's date for index.json's org.opencontainers.image.created annotation (BuildKit writes
   * it; kiln does only with SOURCE_DATE_EPOCH, where it is the epoch, so archives stay reproducible). */
  created?: string;
  /**
   * What index.json points at, when not the image manifest itself: an index holding the image and
   * its attestations. `extraBlobs` are the blobs it adds (written after the image's own).
   */
  root?: Descriptor;
  extraBlobs?: Descriptor[];
}

/** Streams the archive; the caller pipes it to a file or to Docker's /images/load. */
export function imageArchive(store: ContentStore, image: StoredImage, opts: ArchiveOptions): Readable {
  const pack = loadTarStream().pack();
  void writeArchive(pack, store, image, opts).then(
    () => pack.finalize(),
    (err: Error) => pack.destroy(err),
  );
  // tar-stream's streams are streamx streams; hand callers a plain Node stream.
  return Readable.from(pack);
}

async function writeArchive(pack: tarStream.Pack, store: ContentStore, image: StoredImage, opts: ArchiveOptions): Promise<void> {
  const blobPath = (d: Descriptor) => `blobs/sha256/${digestHex(d.digest)}`;
  await addEntry(pack, { name: 'blobs/', type: 'directory', mode: 0o755 });
  await addEntry(pack, { name: 'blobs/sha256/', type: 'directory', mode: 0o755 });
  const written = new Set<string>();
  for (const d of [...image.layers, image.config, image.manifest, ...(opts.extraBlobs ?? [])]) {
    if (written.has(d.digest)) continue; // the same layer twice in one image is stored once
    written.add(d.digest);
    await addEntry(pack, { name: blobPath(d), size: d.size, mode: 0o444 }, await store.readStream(d.digest));
  }
  await addEntry(pack, { name: 'oci-layout', mode: 0o444 }, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await addEntry(pack, { name: 'index.json', mode: 0o444 }, JSON.stringify(layoutIndex(opts.root ?? image.manifest, opts)));

  if (opts.format === 'docker') {
    const dockerManifest = [
      {
        Config: blobPath(image.config),
        RepoTags: opts.names.map((n) => n.familiar),
        Layers: image.layers.map(blobPath),
      },
    ];
    await addEntry(pack, { name: 'manifest.json', mode: 0o444 }, JSON.stringify(dockerManifest));
  }
}

/** index.json: the root (a manifest, or a multi-platform image's index) once per name, annotated. */
function layoutIndex(root: Descriptor, opts: Omit<ArchiveOptions, 'format'>): Index {
  const created = opts.created !== undefined ? { 'org.opencontainers.image.created': opts.created } : undefined;
  const manifests: Descriptor[] = opts.names.length
    ? opts.names.map((n) => ({
        ...root,
        annotations: {
          ...root.annotations,
          'io.containerd.image.name': n.full,
          ...created,
          'org.opencontainers.image.ref.name': n.full.slice(n.full.lastIndexOf(':') + 1),
        },
      }))
    : [created ? { ...root, annotations: { ...root.annotations, ...created } } : root];
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests };
}

/** A multi-platform image: its index (already in the store) and the image of each platform. */
export interface StoredIndex {
  index: Descriptor;
  images: StoredImage[];
}

/**
 * An OCI layout tarball of a multi-platform image. As BuildKit's oci exporter writes it, index.json
 * holds one entry, the image index (with the names as annotations), and that index lists the
 * platform manifests. There is no docker form: `docker load` cannot take an index.
 */
export function indexArchive(store: ContentStore, image: StoredIndex, opts: Omit<ArchiveOptions, 'format'>): Readable {
  const pack = loadTarStream().pack();
  void writeIndexArchive(pack, store, image, opts).then(
    () => pack.finalize(),
    (err: Error) => pack.destroy(err),
  );
  return Readable.from(pack);
}

async function writeIndexArchive(pack: tarStream.Pack, store: ContentStore, image: StoredIndex, opts: Omit<ArchiveOptions, 'format'>): Promise<void> {
  const blobPath = (d: Descriptor) => `blobs/sha256/${digestHex(d.digest)}`;
  await addEntry(pack, { name: 'blobs/', type: 'directory', mode: 0o755 });
  await addEntry(pack, { name: 'blobs/sha256/', type: 'directory', mode: 0o755 });
  const written = new Set<string>();
  // Layers shared by the platforms (a COPY of the same files into scratch) are stored once.
  for (const d of [...image.images.flatMap((i) => [...i.layers, i.config, i.manifest]), image.index]) {
    if (written.has(d.digest)) continue;
    written.add(d.digest);
    await addEntry(pack, { name: blobPath(d), size: d.size, mode: 0o444 }, await store.readStream(d.digest));
  }
  await addEntry(pack, { name: 'oci-layout', mode: 0o444 }, JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const root: Descriptor = { mediaType: image.index.mediaType, digest: image.index.digest, size: image.index.size };
  await addEntry(pack, { name: 'index.json', mode: 0o444 }, JSON.stringify(layoutIndex(root, opts)));
}

async function addEntry(pack: tarStream.Pack, header: Partial<tarStream.Header> & { name: string }, body?: string | Readable): Promise<void> {
  const full = { mtime: new Date(0), uid: 0, gid: 0, ...header } as tarStream.Header;
  if (body === undefined || typeof body === 'string') {
    await new Promise<void>((resolve, reject) => pack.entry(full, body ?? '', (err) => (err ? reject(err) : resolve())));
    return;
  }
  let settle!: (err?: Error | null) => void;
  const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
  const entry = pack.entry(full, (err) => settle(err));
  for await (const chunk of body) {
    if (!entry.write(chunk as Buffer)) await once(entry as unknown as NodeJS.EventEmitter, 'drain');
  }
  (entry as unknown as { end(): void }).end(); // streamx typings want an argument; none is needed
  await done;
}

/** Writes a stream to `dest` through a temporary file, so a failed export leaves no half archive. */
export async function writeFileAtomic(dest: string, data: Readable): Promise<void> {
  const tmp = path.join(path.dirname(path.resolve(dest)), `.${path.basename(dest)}.kiln-tmp-${process.pid}`);
  try {
    await pipeline(data, createWriteStream(tmp, { mode: 0o644 }));
    await fsp.rename(tmp, dest);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
