// The registry client: resolve a reference to a platform manifest and its config, fetch blobs into
// the content store (verified while they stream), and push images (blob by blob, skipping what the
// registry has, mounting across repositories when we know where a blob lives).
//
// Speaks the distribution HTTP API v2 (`/v2/<name>/manifests/<ref>`, `/v2/<name>/blobs/...`) with
// node:http (util/http-request.ts says why not fetch). Every error names the registry and repository.

import { ContentMismatchError, type ContentStore } from '../../cache/content-store.js';
import {
  type Descriptor,
  type Digest,
  type ImageConfig,
  type Index,
  type Manifest,
  type Platform,
  MANIFEST_ACCEPT,
  MediaType,
  formatPlatform,
  hostPlatform,
  isDigest,
  isIndexMediaType,
  isManifestMediaType,
  normalizePlatform,
  parseDigest,
  selectPlatform,
  sha256Digest,
} from '../../oci/index.js';
import { type ImageReference, formatReference, manifestReference, parseReference } from '../reference.js';
import { Authenticator } from './auth.js';
import { type Endpoint, type RegistryConfig, endpointsFor } from './config.js';
import { RegistryError, describeErrorBody } from './errors.js';
import { mapLimit } from '../../util/map-limit.js';
import { type HttpResponse, HttpRequestError, httpRequest } from '../../util/http-request.js';

/** Manifests and configs are small; refuse anything bigger than this instead of buffering it. */
const MAX_DOCUMENT_BYTES = 8 * 1024 * 1024;
const DEFAULT_CHUNK = 16 * 1024 * 1024;

export interface ResolvedImage {
  /** The reference as asked for, normalised. */
  reference: ImageReference;
  /** What the reference points to (an index or a manifest): pin a reference with `@digest`. */
  digest: Digest;
  mediaType: string;
  /** The single-platform manifest chosen: equal to `digest` when the reference names no index. Key caches by this. */
  manifestDigest: Digest;
  manifestDescriptor: Descriptor;
  manifest: Manifest;
  config: ImageConfig;
  /** Present when the reference named an index / manifest list. */
  index?: Index;
  /** Platform of the chosen image, from its config, normalised. */
  platform: Platform;
  /** Base URL of the endpoint that answered (a mirror or the registry itself). */
  source: string;
}

export type TransferEvent =
  | { kind: 'exists'; digest: Digest; size: number } // push: the registry already had it
  | { kind: 'mounted'; digest: Digest; size: number; from: string } // push: cross-repository mount
  | { kind: 'uploaded'; digest: Digest; size: number; chunks: number } // push: sent
  | { kind: 'cached'; digest: Digest; size: number } // pull: already in the content store
  | { kind: 'downloaded'; digest: Digest; size: number } // pull: fetched and verified
  | { kind: 'manifest'; digest: Digest; tag?: string }; // push: manifest or index PUT

export interface ResolveOptions {
  /** Cancels every request of the operation. */
  signal?: AbortSignal;
  /** Platform to pick from an index; default the host's (linux/<arch>). */
  platform?: Platform;
  /**
   * Also write the index, manifest and config documents into this store (byte for byte). What it
   * already holds of what the tag's document names by digest (a platform's manifest, the config) is
   * read from it instead of fetched: only the tag itself goes to the registry, as with BuildKit's
   * content store, so a warm build's base image costs one request, not three.
   */
  store?: ContentStore;
}

export interface PullOptions extends ResolveOptions {
  onEvent?: (e: TransferEvent) => void;
}

export interface FetchBlobOptions {
  onEvent?: (e: TransferEvent) => void;
  signal?: AbortSignal;
}

export interface PushOptions {
  signal?: AbortSignal;
  /** Repositories of the same registry known to hold a blob, as mount sources (`digest -> [path]`). */
  mountFrom?: Record<string, string[]>;
  onEvent?: (e: TransferEvent) => void;
}

export interface PushResult {
  /** Digest of the root document pushed (what the tag now points to). */
  digest: Digest;
  mediaType: string;
  size: number;
  reference: ImageReference;
}

interface FetchedDocument {
  bytes: Buffer;
  digest: Digest;
  mediaType: string;
  json: Record<string, unknown>;
}

interface RequestSpec {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** `/v2/...` under the endpoint, or an absolute URL (upload locations). */
  url: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  scopes: string[];
  signal?: AbortSignal;
}

function pullScope(path: string): string {
  return `repository:${path}:pull`;
}
function pushScope(path: string): string {
  return `repository:${path}:pull,push`;
}

export class RegistryClient {
  private readonly auth: Authenticator;
  private readonly userAgent: string;
  /** Where blobs were seen, per registry domain: digest -> repository paths. Feeds cross-repo mounts. */
  private readonly seen = new Map<string, Map<string, Set<string>>>();

  constructor(readonly config: RegistryConfig = {}) {
    this.userAgent = config.userAgent ?? 'kiln';
    this.auth = new Authenticator(config, this.userAgent);
  }

  // ---- transport -----------------------------------------------------------------------------

  private async send(ep: Endpoint, repo: string, spec: RequestSpec): Promise<HttpResponse> {
    const url = spec.url.startsWith('/') ? ep.base + spec.url : spec.url;
    const origin = new URL(ep.base).origin;
    // A mirror authenticates as itself; the registry proper with the reference's domain.
    const credsDomain = ep.mirror ? new URL(ep.base).host : ep.domain;
    const attempt = async (forceNew: boolean): Promise<HttpResponse> => {
      const headers: Record<string, string> = { 'user-agent': this.userAgent, ...spec.headers };
      const authz = await this.auth.authorization(origin, credsDomain, spec.scopes, forceNew);
      if (authz) headers.authorization = authz;
      try {
        return await httpRequest(url, { method: spec.method, headers, body: spec.body, signal: spec.signal });
      } catch (err) {
        if (spec.signal?.aborted) throw err;
        const why = err instanceof HttpRequestError ? (err.code ?? (err.cause as Error | undefined)?.message) : undefined;
        throw new RegistryError(ep.domain, repo, `${spec.method} ${url}: ${why ?? (err as Error).message}`, undefined, undefined, {
          cause: err,
        });
      }
    };
    const hadAuth = this.auth.knows(origin);
    let res = await attempt(false);
    if (res.status === 401) {
      const learned = this.auth.learn(origin, res.headers.get('www-authenticate'));
      if (learned) {
        await res.discard();
        res = await attempt(hadAuth);
      }
    }
    return res;
  }

  private async fail(ep: Endpoint, repo: string, what: string, res: HttpResponse): Promise<never> {
    const text = await res.text().catch(() => '');
    const { code, text: detail } = describeErrorBody(text);
    const auth = res.status === 401 ? ' (authentication required or credentials refused)' : res.status === 403 ? ' (access denied)' : '';
    throw new RegistryError(
      ep.domain,
      repo,
      `${what}: HTTP ${res.status}${auth}${detail ? `: ${detail}` : ''}${ep.mirror ? ` (mirror ${ep.base})` : ''}`,
      res.status,
      code,
    );
  }

  private remember(domain: string, digest: Digest, path: string): void {
    let byDigest = this.seen.get(domain);
    if (!byDigest) this.seen.set(domain, (byDigest = new Map()));
    let paths = byDigest.get(digest);
    if (!paths) byDigest.set(digest, (paths = new Set()));
    paths.add(path);
  }

  /** Tries each endpoint in order (mirrors first for Docker Hub); the last failure is rethrown with the earlier ones noted. */
  private async withEndpoints<T>(ref: ImageReference, fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    const eps = endpointsFor(ref.domain, this.config);
    const failures: string[] = [];
    for (const [i, ep] of eps.entries()) {
      try {
        return await fn(ep);
      } catch (err) {
        // Any failure at a mirror (down, missing, bad content) falls through to the next endpoint, as Docker does.
        if (i === eps.length - 1) {
          if (failures.length && err instanceof Error) err.message += ` (after mirror failures: ${failures.join('; ')})`;
          throw err;
        }
        failures.push((err as Error).message);
      }
    }
    throw new Error('unreachable');
  }

  // ---- documents -----------------------------------------------------------------------------

  private async getDocument(ep: Endpoint, path: string, reference: string, signal?: AbortSignal): Promise<FetchedDocument> {
    const res = await this.send(ep, path, {
      method: 'GET',
      url: `/v2/${path}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      scopes: [pullScope(path)],
      signal,
    });
    if (!res.ok) await this.fail(ep, path, `manifest ${reference}`, res);
    const bytes = await readLimited(
      res,
      MAX_DOCUMENT_BYTES,
      () => new RegistryError(ep.domain, path, `manifest ${reference} is larger than ${MAX_DOCUMENT_BYTES} bytes`),
    );
    const digest = sha256Digest(bytes);
    if (isDigest(reference) && digest !== reference) {
      throw new RegistryError(ep.domain, path, `manifest ${reference}: content hashes to ${digest} (digest mismatch)`);
    }
    const claimed = res.headers.get('docker-content-digest');
    if (claimed?.startsWith('sha256:') && claimed !== digest) {
      throw new RegistryError(ep.domain, path, `manifest ${reference}: content hashes to ${digest} but the registry says ${claimed}`);
    }
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new RegistryError(ep.domain, path, `manifest ${reference} (${digest}) is not valid JSON`);
    }
    const contentType = res.headers.get('content-type')?.split(';')[0]?.trim();
    const mediaType = documentMediaType(json, contentType);
    if (json.schemaVersion === 1 || mediaType === MediaType.dockerManifestSchema1 || mediaType === MediaType.dockerManifestSchema1Signed) {
      throw new RegistryError(ep.domain, path, `manifest ${reference} is Docker schema 1, which kiln does not support`);
    }
    if (!isManifestMediaType(mediaType) && !isIndexMediaType(mediaType)) {
      throw new RegistryError(ep.domain, path, `manifest ${reference} has unsupported media type ${JSON.stringify(mediaType)}`);
    }
    return { bytes, digest, mediaType, json };
  }

  private async getBlobBuffer(ep: Endpoint, path: string, desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
    const digest = parseDigest(desc.digest, `registry ${ep.domain} repository ${path}`);
    if (desc.size > MAX_DOCUMENT_BYTES) throw new RegistryError(ep.domain, path, `blob ${digest} is ${desc.size} bytes: too large for a config`);
    const res = await this.send(ep, path, { method: 'GET', url: `/v2/${path}/blobs/${digest}`, scopes: [pullScope(path)], signal });
    if (!res.ok) await this.fail(ep, path, `blob ${digest}`, res);
    const bytes = await readLimited(res, desc.size, () => new RegistryError(ep.domain, path, `blob ${digest}: more than the expected ${desc.size} bytes`));
    const got = sha256Digest(bytes);
    if (got !== digest || bytes.length !== desc.size) {
      throw new RegistryError(ep.domain, path, `blob ${digest}: content hashes to ${got} (${bytes.length} bytes, expected ${desc.size}): digest mismatch`);
    }
    return bytes;
  }

  // ---- resolve and pull ----------------------------------------------------------------------

  /** Resolves a reference to one platform's manifest and config. */
  async resolve(reference: string | ImageReference, opts: ResolveOptions = {}): Promise<ResolvedImage> {
    const ref = typeof reference === 'string' ? parseReference(reference) : reference;
    return this.withEndpoints(ref, (ep) => this.resolveAt(ep, ref, opts));
  }

  private async resolveAt(ep: Endpoint, ref: ImageReference, opts: ResolveOptions): Promise<ResolvedImage> {
    const want = normalizePlatform(opts.platform ?? hostPlatform());
    const path = ref.path;
    const top = await this.getDocument(ep, path, manifestReference(ref), opts.signal);
    const docs: FetchedDocument[] = [top];
    let index: Index | undefined;
    let manifestDoc = top;
    let manifestDescriptor: Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length };
    if (isIndexMediaType(top.mediaType)) {
      index = validateIndex(top.json, ep, path, top.digest);
      const entries = index.manifests.filter((m) => isManifestMediaType(m.mediaType));
      const chosen = selectPlatform(
        want,
        entries.map((m) => m.platform),
      );
      if (chosen < 0) {
        const have = entries.map((m) => (m.platform ? formatPlatform(m.platform) : 'unknown')).join(', ');
        throw new RegistryError(
          ep.domain,
          path,
          `${formatReference(ref)}: no manifest for platform ${formatPlatform(want)} in index ${top.digest} (it has: ${have || 'nothing'})`,
        );
      }
      manifestDescriptor = entries[chosen]!;
      manifestDoc =
        (await storedDocument(opts.store, manifestDescriptor.digest, manifestDescriptor.mediaType)) ??
        (await this.getDocument(ep, path, manifestDescriptor.digest, opts.signal));
      if (!isManifestMediaType(manifestDoc.mediaType)) {
        throw new RegistryError(ep.domain, path, `index ${top.digest} entry ${manifestDescriptor.digest} is not an image manifest (${manifestDoc.mediaType})`);
      }
      if (manifestDoc.bytes.length !== manifestDescriptor.size) {
        throw new RegistryError(
          ep.domain,
          path,
          `manifest ${manifestDescriptor.digest} has ${manifestDoc.bytes.length} bytes, index says ${manifestDescriptor.size}`,
        );
      }
      docs.push(manifestDoc);
    }
    const manifest = validateManifest(manifestDoc.json, ep, path, manifestDoc.digest);
    const configBytes = (await storedBlob(opts.store, manifest.config)) ?? (await this.getBlobBuffer(ep, path, manifest.config, opts.signal));
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    } catch {
      throw new RegistryError(ep.domain, path, `config ${manifest.config.digest} is not valid JSON`);
    }
    if (opts.store) {
      for (const d of docs) await opts.store.ingest({ digest: d.digest, size: d.bytes.length, mediaType: d.mediaType }, d.bytes);
      await opts.store.ingest(manifest.config, configBytes);
    }
    if (!ep.mirror) this.remember(ep.domain, manifest.config.digest, path);
    return {
      reference: ref,
      digest: top.digest,
      mediaType: top.mediaType,
      manifestDigest: manifestDoc.digest,
      manifestDescriptor,
      manifest,
      config,
      ...(index ? { index } : {}),
      platform: normalizePlatform({ os: config.os ?? want.os, architecture: config.architecture ?? want.architecture, variant: config.variant }),
      source: ep.base,
    };
  }

  /**
   * Fetches one blob into the store, verified against its digest and size while it streams.
   * Skips the download when the store has it already.
   */
  async fetchBlob(reference: string | ImageReference, desc: Descriptor, store: ContentStore, opts: FetchBlobOptions = {}): Promise<Descriptor> {
    const { onEvent, signal } = opts;
    const ref = typeof reference === 'string' ? parseReference(reference) : reference;
    const digest = parseDigest(desc.digest, `registry ${ref.domain} repository ${ref.path}`);
    if (await store.has(digest)) {
      onEvent?.({ kind: 'cached', digest, size: desc.size });
      return desc;
    }
    return this.withEndpoints(ref, async (ep) => {
      const res = await this.send(ep, ref.path, { method: 'GET', url: `/v2/${ref.path}/blobs/${digest}`, scopes: [pullScope(ref.path)], signal });
      if (!res.ok) await this.fail(ep, ref.path, `blob ${digest}`, res);
      const stream = res.body;
      try {
        const got = await store.ingest({ digest, size: desc.size, mediaType: desc.mediaType }, stream);
        if (!ep.mirror) this.remember(ep.domain, digest, ref.path);
        onEvent?.({ kind: 'downloaded', digest, size: got.size });
        return { ...desc, digest, size: got.size };
      } catch (err) {
        stream.destroy();
        if (err instanceof ContentMismatchError) {
          throw new RegistryError(ep.domain, ref.path, `blob ${digest}: ${err.message}${ep.mirror ? ` (mirror ${ep.base})` : ''}`, undefined, undefined, {
            cause: err,
          });
        }
        throw err;
      }
    });
  }

  /** Resolves and downloads a whole single-platform image (documents, config and layers) into the store. */
  async pull(reference: string | ImageReference, store: ContentStore, opts: PullOptions = {}): Promise<ResolvedImage> {
    const image = await this.resolve(reference, { ...opts, store });
    await mapLimit(image.manifest.layers, this.config.concurrency ?? 3, (layer) =>
      this.fetchBlob(image.reference, layer, store, { onEvent: opts.onEvent, signal: opts.signal }),
    );
    return image;
  }

  // ---- push ----------------------------------------------------------------------------------

  /**
   * Pushes the image rooted at `root` (a manifest or an index, with everything it references present
   * in `store`) to `reference`. Blobs the registry has are skipped; blobs seen in another repository
   * of the same registry are mounted. The root is PUT under the reference's tag (or its digest when
   * it has no tag). Returns the root's digest.
   */
  async push(reference: string | ImageReference, root: Descriptor, store: ContentStore, opts: PushOptions = {}): Promise<PushResult> {
    const ref = typeof reference === 'string' ? parseReference(reference, { defaultTag: false }) : reference;
    const eps = endpointsFor(ref.domain, this.config);
    const ep = eps[eps.length - 1]!; // never push to a mirror
    if (ref.digest && ref.digest !== root.digest) {
      throw new RegistryError(ref.domain, ref.path, `cannot push ${root.digest} to ${formatReference(ref)}: the reference pins another digest`);
    }
    await this.pushNode(ep, ref, root, store, opts, ref.tag);
    return { digest: root.digest, mediaType: root.mediaType, size: root.size, reference: ref };
  }

  private async pushNode(ep: Endpoint, ref: ImageReference, desc: Descriptor, store: ContentStore, opts: PushOptions, tag?: string): Promise<void> {
    const bytes = await store.readBuffer(desc.digest);
    const json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    const mediaType = desc.mediaType || documentMediaType(json, undefined);
    if (isIndexMediaType(mediaType)) {
      const index = validateIndex(json, ep, ref.path, desc.digest);
      for (const child of index.manifests) await this.pushNode(ep, ref, child, store, opts);
    } else if (isManifestMediaType(mediaType)) {
      const manifest = validateManifest(json, ep, ref.path, desc.digest);
      await mapLimit([manifest.config, ...manifest.layers], this.config.concurrency ?? 3, (b) => this.pushBlob(ep, ref, b, store, opts));
    } else {
      throw new RegistryError(ep.domain, ref.path, `cannot push ${desc.digest}: media type ${JSON.stringify(mediaType)} is neither a manifest nor an index`);
    }
    const target = tag ?? desc.digest;
    const res = await this.send(ep, ref.path, {
      method: 'PUT',
      url: `/v2/${ref.path}/manifests/${target}`,
      headers: { 'content-type': mediaType },
      body: bytes,
      scopes: [pushScope(ref.path)],
      signal: opts.signal,
    });
    if (res.status !== 201 && res.status !== 200) await this.fail(ep, ref.path, `put manifest ${target}`, res);
    await res.discard();
    const claimed = res.headers.get('docker-content-digest');
    if (claimed && claimed !== desc.digest) {
      throw new RegistryError(ep.domain, ref.path, `put manifest ${target}: registry stored ${claimed}, we sent ${desc.digest}`);
    }
    opts.onEvent?.({ kind: 'manifest', digest: desc.digest, ...(tag ? { tag } : {}) });
  }

  /** Best-effort DELETE of an upload session we will not use (the registry would purge it later anyway). */
  private async abandonUpload(ep: Endpoint, path: string, location: string, scopes: string[]): Promise<void> {
    try {
      const res = await this.send(ep, path, { method: 'DELETE', url: new URL(location, ep.base).toString(), scopes });
      await res.discard();
    } catch {
      // ignore: an open upload session costs the registry a little disk until its purge
    }
  }

  private async pushBlob(ep: Endpoint, ref: ImageReference, desc: Descriptor, store: ContentStore, opts: PushOptions): Promise<void> {
    const path = ref.path;
    const digest = parseDigest(desc.digest, `push to registry ${ep.domain} repository ${path}`);
    const scopes = [pushScope(path)];

    const head = await this.send(ep, path, { method: 'HEAD', url: `/v2/${path}/blobs/${digest}`, scopes, signal: opts.signal });
    if (head.ok) {
      this.remember(ep.domain, digest, path);
      opts.onEvent?.({ kind: 'exists', digest, size: desc.size });
      return;
    }
    if (head.status !== 404) await this.fail(ep, path, `head blob ${digest}`, head);

    const info = await store.info(digest);
    if (!info) throw new RegistryError(ep.domain, path, `cannot push blob ${digest}: not in the content store ${store.root}`);

    let location: string | undefined;
    const sources = new Set([...(opts.mountFrom?.[digest] ?? []), ...(this.seen.get(ep.domain)?.get(digest) ?? [])]);
    sources.delete(path);
    for (const from of sources) {
      const q = new URLSearchParams({ mount: digest, from });
      const res = await this.send(ep, path, {
        method: 'POST',
        url: `/v2/${path}/blobs/uploads/?${q}`,
        headers: { 'content-length': '0' },
        scopes: [...scopes, pullScope(from)],
        signal: opts.signal,
      });
      await res.discard();
      if (res.status === 201) {
        if (location) await this.abandonUpload(ep, path, location, scopes);
        this.remember(ep.domain, digest, path);
        opts.onEvent?.({ kind: 'mounted', digest, size: info.size, from });
        return;
      }
      if (res.status === 202) {
        // The registry could not mount from there and opened an ordinary upload instead: keep the
        // first such session for our upload, close any further ones, and try the next source.
        const opened = res.headers.get('location') ?? undefined;
        if (!location) location = opened;
        else if (opened) await this.abandonUpload(ep, path, opened, scopes);
      }
      // 401/403/404 from one source: try the next, then upload.
    }

    if (!location) {
      const res = await this.send(ep, path, {
        method: 'POST',
        url: `/v2/${path}/blobs/uploads/`,
        headers: { 'content-length': '0' },
        scopes,
        signal: opts.signal,
      });
      if (res.status !== 202) await this.fail(ep, path, `start upload of blob ${digest}`, res);
      await res.discard();
      location = res.headers.get('location') ?? undefined;
    }
    if (!location) throw new RegistryError(ep.domain, path, `upload of blob ${digest}: registry sent no Location`);

    const chunkSize = this.config.chunkSize ?? DEFAULT_CHUNK;
    let chunks = 0;
    let finalBody: Uint8Array | undefined;
    if (info.size <= chunkSize) {
      finalBody = await store.readBuffer(digest); // monolithic: POST, then one PUT with the content
    } else {
      let offset = 0;
      for await (const chunk of rechunk(await store.readStream(digest), chunkSize)) {
        const res = await this.send(ep, path, {
          method: 'PATCH',
          url: new URL(location, ep.base).toString(),
          headers: {
            'content-type': 'application/octet-stream',
            'content-range': `${offset}-${offset + chunk.length - 1}`,
            'content-length': String(chunk.length),
          },
          body: chunk,
          scopes,
          signal: opts.signal,
        });
        if (res.status !== 202) await this.fail(ep, path, `upload chunk ${chunks} (bytes ${offset}-) of blob ${digest}`, res);
        await res.discard();
        location = res.headers.get('location') ?? location;
        offset += chunk.length;
        chunks++;
      }
    }
    const put = new URL(location, ep.base);
    put.searchParams.set('digest', digest);
    const res = await this.send(ep, path, {
      method: 'PUT',
      url: put.toString(),
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(finalBody?.length ?? 0) },
      body: finalBody ?? new Uint8Array(0),
      scopes,
      signal: opts.signal,
    });
    if (res.status !== 201) await this.fail(ep, path, `finish upload of blob ${digest}`, res);
    await res.discard();
    this.remember(ep.domain, digest, path);
    opts.onEvent?.({ kind: 'uploaded', digest, size: info.size, chunks: Math.max(1, chunks) });
  }
}

// ---- helpers -------------------------------------------------------------------------------------

/**
 * A blob the store holds, by digest and size (a config pulled before): undefined when it is absent
 * or does not hash to its digest (then it is fetched as if absent).
 */
async function storedBlob(store: ContentStore | undefined, desc: Descriptor): Promise<Buffer | undefined> {
  if (!store || !isDigest(desc.digest) || desc.size > MAX_DOCUMENT_BYTES) return undefined;
  const bytes = await store.readBuffer(desc.digest as Digest).catch(() => undefined);
  if (bytes === undefined || bytes.length !== desc.size || sha256Digest(bytes) !== desc.digest) return undefined;
  return bytes;
}

/** An image manifest the store holds by digest, as getDocument would return it; else undefined. */
async function storedDocument(store: ContentStore | undefined, digest: string, mediaType: string): Promise<FetchedDocument | undefined> {
  if (!store || !isDigest(digest)) return undefined;
  const bytes = await store.readBuffer(digest as Digest).catch(() => undefined);
  if (bytes === undefined || bytes.length > MAX_DOCUMENT_BYTES || sha256Digest(bytes) !== digest) return undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const type = documentMediaType(json, mediaType);
  if (json.schemaVersion === 1 || !isManifestMediaType(type)) return undefined;
  return { bytes, digest: digest as Digest, mediaType: type, json };
}

function documentMediaType(json: Record<string, unknown>, contentType: string | undefined): string {
  if (typeof json.mediaType === 'string' && json.mediaType) return json.mediaType;
  // OCI documents may omit mediaType: tell them apart by shape, then by the Content-Type header.
  if (Array.isArray(json.manifests)) return MediaType.ociIndex;
  if (json.config && Array.isArray(json.layers)) return MediaType.ociManifest;
  return contentType ?? '';
}

function checkDescriptor(d: unknown, where: string, ep: Endpoint, path: string): Descriptor {
  const desc = d as Descriptor;
  if (!desc || typeof desc !== 'object' || typeof desc.mediaType !== 'string' || !isDigest(desc.digest) || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw new RegistryError(ep.domain, path, `${where}: invalid descriptor ${JSON.stringify(d)?.slice(0, 200)}`);
  }
  return desc;
}

function validateManifest(json: Record<string, unknown>, ep: Endpoint, path: string, digest: Digest): Manifest {
  if (json.schemaVersion !== 2 || !Array.isArray(json.layers)) throw new RegistryError(ep.domain, path, `manifest ${digest}: not a schema 2 image manifest`);
  checkDescriptor(json.config, `manifest ${digest} config`, ep, path);
  for (const [i, l] of (json.layers as unknown[]).entries()) checkDescriptor(l, `manifest ${digest} layer ${i}`, ep, path);
  return json as unknown as Manifest;
}

function validateIndex(json: Record<string, unknown>, ep: Endpoint, path: string, digest: Digest): Index {
  if (json.schemaVersion !== 2 || !Array.isArray(json.manifests)) throw new RegistryError(ep.domain, path, `index ${digest}: not a schema 2 index`);
  for (const [i, m] of (json.manifests as unknown[]).entries()) checkDescriptor(m, `index ${digest} entry ${i}`, ep, path);
  return json as unknown as Index;
}

async function readLimited(res: HttpResponse, limit: number, tooBig: () => Error): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    await res.discard();
    throw tooBig();
  }
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) {
      res.body.destroy();
      throw tooBig();
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

/** Re-slices a stream into buffers of exactly `size` bytes (the last may be shorter). */
async function* rechunk(stream: AsyncIterable<Buffer>, size: number): AsyncIterable<Buffer> {
  let pending: Buffer[] = [];
  let have = 0;
  for await (const c of stream) {
    pending.push(c);
    have += c.length;
    while (have >= size) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, size);
      pending = [all.subarray(size)];
      have = all.length - size;
    }
  }
  if (have > 0) yield Buffer.concat(pending);
}
