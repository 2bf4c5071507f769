// An OCI image layout directory read for one image (a named build context oci-layout://): which
// descriptor a tag or digest names, and which blob files that image needs. Reads index.json and
// manifests only, every path resolved inside the layout; no npm package, so a client that sends a
// layout to a daemon starts as fast as one that does not.

import * as fsp from 'node:fs/promises';
import { resolveInRoot } from '../fsutil/rootpath.js';
import { digestHex, isIndexMediaType, isManifestMediaType, parseDigest, type Descriptor, type Index, type Manifest } from '../oci/index.js';
import { ImportError } from './import-error.js';

/** The descriptor `importLayoutImage` takes, without reading any blob but index.json. */
export async function findLayoutImage(dir: string, opts: { tag: string; digest?: string }, shownAs = dir): Promise<Descriptor> {
  let index: Index;
  try {
    index = JSON.parse(await fsp.readFile(await resolveInRoot(dir, 'index.json'), 'utf8')) as Index;
  } catch (err) {
    throw new ImportError(shownAs, `not an OCI image layout (index.json: ${(err as Error).message})`);
  }
  const all = Array.isArray(index.manifests) ? index.manifests : [];
  if (opts.digest !== undefined) {
    const d = all.find((m) => m.digest === opts.digest);
    if (d) return d;
    // A digest of something the layout holds but index.json does not list (a platform's manifest):
    // its media type is read from the blob itself.
    const file = await resolveInRoot(dir, `blobs/sha256/${digestHex(parseDigest(opts.digest, `${shownAs}: digest`))}`).catch(() => '');
    const st = file ? await fsp.stat(file).catch(() => undefined) : undefined;
    if (!st?.isFile()) throw new ImportError(shownAs, `the layout has no blob ${opts.digest}`);
    const body = JSON.parse(await fsp.readFile(file, 'utf8')) as { mediaType?: string; manifests?: unknown };
    const mediaType =
      body.mediaType ?? (Array.isArray(body.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json');
    return { mediaType, digest: opts.digest as Descriptor['digest'], size: st.size };
  }
  const named = all.filter((m) => {
    const ann = m.annotations ?? {};
    const ref = ann['org.opencontainers.image.ref.name'];
    const full = ann['io.containerd.image.name'];
    return ref === opts.tag || full?.endsWith(`:${opts.tag}`) === true;
  });
  if (named.length > 0) return named[0]!;
  if (all.length === 1) return all[0]!;
  throw new ImportError(
    shownAs,
    `no image tagged ${JSON.stringify(opts.tag)} in the layout (and it holds ${all.length} images): name one with :TAG or @sha256:DIGEST`,
  );
}

/** The blob files (layout-relative paths) an image of the layout needs: the descriptor and all below it. */
export async function layoutBlobPaths(dir: string, desc: Descriptor, shownAs = dir): Promise<string[]> {
  const out = new Set<string>();
  const visit = async (d: Descriptor): Promise<void> => {
    const rel = `blobs/sha256/${digestHex(parseDigest(d.digest, `${shownAs}: descriptor`))}`;
    if (out.has(rel)) return;
    out.add(rel);
    if (!isManifestMediaType(d.mediaType) && !isIndexMediaType(d.mediaType)) return;
    let body: Manifest & Index;
    try {
      body = JSON.parse(await fsp.readFile(await resolveInRoot(dir, rel), 'utf8')) as Manifest & Index;
    } catch (err) {
      throw new ImportError(shownAs, `blob ${d.digest}: ${(err as Error).message}`);
    }
    if (isManifestMediaType(d.mediaType)) {
      await visit(body.config);
      for (const l of body.layers ?? []) await visit(l);
    } else {
      for (const m of body.manifests ?? []) await visit(m);
    }
  };
  await visit(desc);
  return [...out];
}
