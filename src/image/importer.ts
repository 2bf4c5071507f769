// `kiln load`: an OCI image layout (a directory, or a tarball of one: what `--output type=oci` and
// `type=docker` write) into kiln's content store. Every blob is verified against its digest on the
// way in, so a tampered layout is refused rather than stored under a name it does not match.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { tarStream } from '../util/lazy-modules.js';
import type { ContentStore } from '../cache/content-store.js';
import { resolveInRoot } from '../fsutil/rootpath.js';
import { digestHex, isIndexMediaType, isManifestMediaType, parseDigest, type Descriptor, type Index, type Manifest } from '../oci/index.js';
import { ImportError } from './import-error.js';
import { findLayoutImage } from './layout.js';

export { findLayoutImage, layoutBlobPaths } from './layout.js';

export interface ImportedImage {
  manifest: Descriptor;
  /** Names from the layout's annotations (io.containerd.image.name, else a full ref.name). */
  names: string[];
  /** The bare tag of org.opencontainers.image.ref.name when it is only a tag ("latest"). */
  tag?: string;
}

export { ImportError };

export async function importImage(store: ContentStore, source: string): Promise<ImportedImage[]> {
  const st = await fsp.stat(source).catch((err: Error) => {
    throw new ImportError(source, `cannot read: ${err.message}`);
  });
  if (st.isDirectory()) return importLayout(store, source, source);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-load-'));
  try {
    await unpackLayoutTar(source, dir);
    return await importLayout(store, dir, source);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

// Only the layout's own files are taken from the tarball (index.json, oci-layout, blobs/sha256/*),
// as plain files; anything else (links, devices, other paths) is skipped, so the archive cannot
// place anything outside the temporary directory.
async function unpackLayoutTar(file: string, dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const extract = tarStream().extract();
  extract.on('entry', (header, stream, next) => {
    const name = header.name.replace(/^\.\//, '');
    const wanted = header.type === 'file' && (name === 'index.json' || name === 'oci-layout' || /^blobs\/sha256\/[0-9a-f]{64}$/.test(name));
    if (!wanted) {
      stream.on('end', next);
      stream.resume();
      return;
    }
    const out = fs.createWriteStream(path.join(dir, name), { mode: 0o600 });
    stream.pipe(out);
    out.on('finish', () => next());
    out.on('error', (err) => next(err));
  });
  try {
    await pipeline(fs.createReadStream(file), extract);
  } catch (err) {
    throw new ImportError(file, `not a readable tar archive: ${(err as Error).message}`, { cause: err });
  }
}

async function importLayout(store: ContentStore, dir: string, shownAs: string): Promise<ImportedImage[]> {
  let index: Index;
  try {
    index = JSON.parse(await fsp.readFile(await resolveInRoot(dir, 'index.json'), 'utf8')) as Index;
  } catch (err) {
    throw new ImportError(
      shownAs,
      `not an OCI image layout (index.json: ${(err as Error).message}); Docker's own \`docker save\` archives before Docker 25 are not supported`,
    );
  }
  if (!Array.isArray(index.manifests)) throw new ImportError(shownAs, 'index.json has no manifests');
  const out: ImportedImage[] = [];
  for (const desc of index.manifests) {
    await ingestTree(store, dir, desc, shownAs);
    const ann = desc.annotations ?? {};
    const refName = ann['org.opencontainers.image.ref.name'];
    const full = ann['io.containerd.image.name'] ?? (refName && /[/:]/.test(refName) ? refName : undefined);
    out.push({ manifest: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size }, names: full ? [full] : [], tag: full ? undefined : refName });
  }
  return out;
}

/** Ingests a descriptor and, for manifests and indexes, everything they point to. */
async function ingestTree(store: ContentStore, dir: string, desc: Descriptor, shownAs: string): Promise<void> {
  const digest = parseDigest(desc.digest, `${shownAs}: descriptor`);
  try {
    // Resolved inside the layout: a blob that is a link cannot make kiln read a file of this host
    // (a layout a daemon's client synced is as hostile as any context).
    const file = await resolveInRoot(dir, `blobs/sha256/${digestHex(digest)}`);
    // Opened first: a missing blob is this error, not a stream error nobody listens to yet.
    const handle = await fsp.open(file, 'r');
    try {
      await store.ingest({ digest, size: desc.size, mediaType: desc.mediaType }, handle.createReadStream());
    } finally {
      await handle.close().catch(() => undefined);
    }
  } catch (err) {
    throw new ImportError(shownAs, `blob ${digest}: ${(err as Error).message}`, { cause: err });
  }
  if (isManifestMediaType(desc.mediaType)) {
    const m = await store.readJSON<Manifest>(digest);
    await ingestTree(store, dir, m.config, shownAs);
    for (const l of m.layers) await ingestTree(store, dir, l, shownAs);
  } else if (isIndexMediaType(desc.mediaType)) {
    const i = await store.readJSON<Index>(digest);
    for (const m of i.manifests) await ingestTree(store, dir, m, shownAs);
  }
}

/**
 * One image of an OCI layout directory into the store (a named build context `oci-layout://PATH
 * [:TAG][@DIGEST]`): the descriptor with `digest`, else the one whose ref.name is `tag`, else the
 * layout's only one (buildx's resolveDigest). Everything it points to is ingested and verified.
 */
export async function importLayoutImage(store: ContentStore, dir: string, opts: { tag: string; digest?: string }, shownAs = dir): Promise<Descriptor> {
  const desc = await findLayoutImage(dir, opts, shownAs);
  await ingestTree(store, dir, desc, shownAs);
  return { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
}
