// Named build contexts (--build-context NAME=...) made ready for a build: a directory (read in place
// or synced by a client) is a ContextSource like the main context; an https archive is downloaded
// and unpacked into a private directory that then is one too (BuildKit: llb.HTTP copied with
// AttemptUnpack); an OCI layout's image is ingested into the content store and pinned, so FROM and
// COPY --from use it as a base image; docker-image://REF simply stands for REF. As in BuildKit, a
// context is only loaded when a step uses it: an unused URL is never fetched, nor can it fail.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { ContentStore } from '../cache/content-store.js';
import { directoryContext, type ContextSource } from '../context/index.js';
import { detectArchive, download, extractTar } from '../fileop/index.js';
import { redactCredentials } from '../frontend/index.js';
import type { NamedContextBinding } from '../frontend/types.js';
import { importLayoutImage } from '../image/importer.js';
import { isIndexMediaType, selectPlatform, type ImageConfig, type Index, type Manifest, type Platform } from '../oci/index.js';
import type { BaseImage } from './base-images.js';
import { uniqueKey } from './mounted.js';

/** A named context as a build request gives it to the solver. */
export type NamedContextInput =
  /** Files: a directory read in place (its own .dockerignore) or a synced copy. */
  | { kind: 'files'; source: ContextSource }
  /** docker-image://REF */
  | { kind: 'image'; ref: string }
  /** https://.../archive.tar: downloaded, unpacked when it is an archive. */
  | { kind: 'url'; url: string }
  /** oci-layout://PATH[:TAG][@DIGEST]: `dir` is the layout on this host (in place or synced). */
  | { kind: 'oci-layout'; dir: string; tag: string; digest?: string };

/** A named context ready for the solver; `pinned` resolves an OCI layout's image when first asked. */
export type NamedContext = { kind: 'files'; source: ContextSource } | { kind: 'image'; ref: string; pinned?: () => Promise<BaseImage> };

export interface PreparedContexts {
  contexts: Map<string, NamedContext>;
  /** Removes what preparing made (unpacked archives); call when the build is done. */
  cleanup(): Promise<void>;
}

/** What the frontend needs to know of each name. */
export function contextBindings(contexts: ReadonlyMap<string, NamedContext>): Record<string, NamedContextBinding> {
  const out: Record<string, NamedContextBinding> = {};
  for (const [name, c] of contexts) out[name] = c.kind === 'files' ? { kind: 'files' } : { kind: 'image', ref: c.ref };
  return out;
}

export interface PrepareDeps {
  store: ContentStore;
  /** A directory under the root for unpacked archives. */
  tmp: string;
  platform: Platform;
  /** Runs one preparation as a progress vertex. */
  step<T>(name: string, fn: () => Promise<T>): Promise<T>;
}

export function prepareNamedContexts(inputs: Readonly<Record<string, NamedContextInput>>, deps: PrepareDeps): PreparedContexts {
  const contexts = new Map<string, NamedContext>();
  const dirs: string[] = [];
  const cleanup = async () => {
    for (const d of dirs.splice(0)) await fsp.rm(d, { recursive: true, force: true }).catch(() => undefined);
  };
  for (const [name, input] of Object.entries(inputs)) {
    switch (input.kind) {
      case 'files':
      case 'image':
        contexts.set(name, input);
        break;
      case 'url': {
        const dir = path.join(deps.tmp, uniqueKey('context-url'));
        dirs.push(dir);
        // The archive's own .dockerignore is not applied: BuildKit copies an http context whole.
        const unpacked = directoryContext(dir, { identity: `url:${name}`, excludes: [] });
        const fetched = once(() => deps.step(`[context ${name}] ${redactCredentials(input.url)}`, () => fetchArchive(input.url, dir)));
        // Quiet: the download's own line says what was loaded. Every step reads the entries (for its
        // key) before the files, so the download happens there, once.
        contexts.set(name, { kind: 'files', source: { ...unpacked, quiet: true, entries: async () => (await fetched(), unpacked.entries()) } });
        break;
      }
      case 'oci-layout': {
        const ref = `oci-layout://${name}`;
        contexts.set(name, {
          kind: 'image',
          ref,
          pinned: once(() => deps.step(`[context ${name}] load metadata from the OCI layout`, () => layoutImage(name, input, deps))),
        });
        break;
      }
    }
  }
  return { contexts, cleanup };
}

/** `fn` run on the first call only; every call gets its result. */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/** Downloads `url` into `dir`: a tar archive (compressed or not) unpacked, any other file as is. */
async function fetchArchive(url: string, dir: string): Promise<void> {
  const got = await download(url);
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    const compression = await detectArchive(got.file);
    if (compression !== undefined) {
      // The extractor ADD uses: names cannot leave `dir`, links cannot point writes out of it.
      await extractTar(got.file, compression, dir, '/');
    } else {
      await fsp.copyFile(got.file, path.join(dir, got.filename));
      await fsp.chmod(path.join(dir, got.filename), 0o600);
    }
  } finally {
    await got.cleanup();
  }
}

async function layoutImage(name: string, input: Extract<NamedContextInput, { kind: 'oci-layout' }>, deps: PrepareDeps): Promise<BaseImage> {
  const shownAs = `--build-context ${name}=oci-layout://`;
  let desc = await importLayoutImage(deps.store, input.dir, { tag: input.tag, digest: input.digest }, shownAs);
  if (isIndexMediaType(desc.mediaType)) {
    const index = await deps.store.readJSON<Index>(desc.digest);
    const i = selectPlatform(
      deps.platform,
      index.manifests.map((m) => m.platform),
    );
    if (i < 0) throw new Error(`${shownAs}: the image ${desc.digest} has no manifest for the build's platform`);
    desc = index.manifests[i]!;
  }
  const manifest = await deps.store.readJSON<Manifest>(desc.digest);
  const config = await deps.store.readJSON<ImageConfig>(manifest.config.digest);
  return { name: `oci-layout://${name}@${desc.digest}`, manifestDigest: desc.digest, config, layers: manifest.layers, source: 'OCI layout' };
}
