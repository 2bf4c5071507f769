// FROM: base images resolved to a manifest digest (the cache keys FROM by it, never by the tag),
// their blobs fetched and their layers unpacked into a snapshot chain, each only when needed: a fully
// cached build never unpacks its base.

import { createHash } from 'node:crypto';
import type { ContentStore } from '../cache/content-store.js';
import type { BaseImageConfig } from '../frontend/types.js';
import { formatReference, parseReference } from '../image/reference.js';
import type { RegistryClient } from '../image/registry/index.js';
import type { ImageStore } from '../image/store.js';
import {
  formatPlatform,
  isIndexMediaType,
  platformMatches,
  selectPlatform,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type Index,
  type Manifest,
  type Platform,
} from '../oci/index.js';
import type { Snapshotter } from '../snapshotter/index.js';
import { commitActive, snapshotExists, uniqueKey } from './mounted.js';

export interface BaseImage {
  /** Normalised reference, e.g. docker.io/library/busybox:latest. */
  name: string;
  manifestDigest: Digest;
  /** What the reference resolved to (an index, or the manifest itself): provenance names this one. */
  digest?: Digest;
  config: ImageConfig;
  layers: Descriptor[];
  /** Where it came from: kiln's image store or a registry endpoint. */
  source: string;
}

/** Chain IDs as the OCI image spec defines them: one per layer, naming the snapshot after it. */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

export function layerSnapshotName(chainId: string): string {
  return `layer-${chainId.replace(/^sha256:/, '')}`;
}

/** Whether a snapshot is an unpacked base image layer (layerSnapshotName's), not a build step. */
export function isBaseLayerSnapshot(key: string): boolean {
  return key.startsWith('layer-');
}

export function toBaseImageConfig(config: ImageConfig): BaseImageConfig {
  const c = config.config ?? {};
  return {
    env: c.Env ?? [],
    ...(c.Cmd && { cmd: c.Cmd }),
    ...(c.Entrypoint && { entrypoint: c.Entrypoint }),
    ...(c.WorkingDir && { workingDir: c.WorkingDir }),
    ...(c.User && { user: c.User }),
    ...(c.Shell && { shell: c.Shell }),
    ...(c.ExposedPorts && { exposedPorts: Object.keys(c.ExposedPorts) }),
    ...(c.Volumes && { volumes: Object.keys(c.Volumes) }),
    ...(c.Labels && { labels: c.Labels }),
    ...(c.StopSignal && { stopSignal: c.StopSignal }),
    ...(c.Healthcheck?.Test && {
      healthcheck: {
        test: c.Healthcheck.Test,
        ...(c.Healthcheck.Interval !== undefined && { intervalNs: c.Healthcheck.Interval }),
        ...(c.Healthcheck.Timeout !== undefined && { timeoutNs: c.Healthcheck.Timeout }),
        ...(c.Healthcheck.StartPeriod !== undefined && { startPeriodNs: c.Healthcheck.StartPeriod }),
        ...(c.Healthcheck.StartInterval !== undefined && { startIntervalNs: c.Healthcheck.StartInterval }),
        ...(c.Healthcheck.Retries !== undefined && { retries: c.Healthcheck.Retries }),
      },
    }),
    ...(c.OnBuild && { onBuild: c.OnBuild }),
    os: config.os,
    architecture: config.architecture,
    ...(config.variant && { variant: config.variant }),
  };
}

export interface BaseImageDeps {
  store: ContentStore;
  images: ImageStore;
  registry: RegistryClient;
  snapshotter: Snapshotter;
}

/**
 * One per build: memoises resolution and unpacking per reference, so stages sharing a base resolve
 * and unpack it once even when they run at the same time.
 */
export class BaseImages {
  private readonly resolved = new Map<string, Promise<BaseImage>>();
  private readonly unpacked = new Map<string, Promise<string | undefined>>();
  private readonly fetched = new Map<string, Promise<void>>();

  constructor(
    private readonly deps: BaseImageDeps,
    private readonly platform: Platform,
    private readonly pull: boolean,
    private readonly signal?: AbortSignal,
  ) {}

  /** `ref` stands for the image `image` resolves (an OCI layout's image named as a build context). */
  pin(ref: string, image: () => Promise<BaseImage>): void {
    this.pinned.set(ref, image);
  }

  private readonly pinned = new Map<string, () => Promise<BaseImage>>();

  /**
   * `platform` is the stage's (FROM --platform=$BUILDPLATFORM pulls the build machine's image in a
   * cross build); by default the build's target platform.
   */
  resolve(ref: string, platform: Platform = this.platform): Promise<BaseImage> {
    const pinned = this.pinned.get(ref);
    if (pinned) return pinned();
    const name = formatReference(parseReference(ref));
    const id = `${formatPlatform(platform)} ${name}`;
    let p = this.resolved.get(id);
    if (!p) {
      p = this.doResolve(name, platform);
      this.resolved.set(id, p);
    }
    return p;
  }

  /** The images this build resolved (FROM, COPY --from, RUN --mount from=), for provenance. */
  async resolvedImages(): Promise<BaseImage[]> {
    const settled = await Promise.allSettled(this.resolved.values());
    return settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  }

  private async doResolve(name: string, platform: Platform): Promise<BaseImage> {
    if (!this.pull) {
      const local = await this.fromLocalStore(name, platform);
      if (local) return local;
    }
    const r = await this.deps.registry.resolve(name, { platform, store: this.deps.store, signal: this.signal });
    return { name, manifestDigest: r.manifestDigest, digest: r.digest, config: r.config, layers: r.manifest.layers, source: r.source };
  }

  // Images built by kiln (or loaded into its store) are found before any registry, as `docker build`
  // finds the daemon's own images.
  private async fromLocalStore(name: string, platform: Platform): Promise<BaseImage | undefined> {
    const rec = await this.deps.images.get(name);
    if (!rec || !(await this.deps.store.has(rec.manifest.digest))) return undefined;
    let manifestDesc = rec.manifest;
    if (isIndexMediaType(manifestDesc.mediaType)) {
      const index = await this.deps.store.readJSON<Index>(manifestDesc.digest);
      const i = selectPlatform(
        platform,
        index.manifests.map((m) => m.platform),
      );
      if (i < 0) return undefined;
      manifestDesc = index.manifests[i]!;
    }
    const manifest = await this.deps.store.readJSON<Manifest>(manifestDesc.digest);
    const config = await this.deps.store.readJSON<ImageConfig>(manifest.config.digest);
    // A single-platform image of another platform is not this stage's base: ask the registry, as
    // a cross build for arm64 must not quietly get the amd64 image the store holds.
    if (config.architecture && !platformMatches(platform, { os: config.os ?? platform.os, architecture: config.architecture, variant: config.variant }))
      return undefined;
    return { name, manifestDigest: manifestDesc.digest, digest: rec.manifest.digest, config, layers: manifest.layers, source: 'kiln image store' };
  }

  /** Fetches the image's layer blobs into the content store (export needs them; unpack too). */
  ensureBlobs(image: BaseImage): Promise<void> {
    let p = this.fetched.get(image.manifestDigest);
    if (!p) {
      p = (async () => {
        for (const layer of image.layers) {
          if (await this.deps.store.has(layer.digest)) continue;
          await this.deps.registry.fetchBlob(image.name, layer, this.deps.store, { signal: this.signal });
        }
      })();
      this.fetched.set(image.manifestDigest, p);
      p.catch(() => this.fetched.delete(image.manifestDigest));
    }
    return p;
  }

  /** The committed snapshot holding the image's root filesystem (undefined for an image with no layers). */
  unpack(image: BaseImage): Promise<string | undefined> {
    let p = this.unpacked.get(image.manifestDigest);
    if (!p) {
      p = this.doUnpack(image);
      this.unpacked.set(image.manifestDigest, p);
      p.catch(() => this.unpacked.delete(image.manifestDigest));
    }
    return p;
  }

  private async doUnpack(image: BaseImage): Promise<string | undefined> {
    const { snapshotter, store } = this.deps;
    const diffIds = image.config.rootfs.diff_ids;
    if (diffIds.length !== image.layers.length) {
      throw new Error(`image ${image.name}: config lists ${diffIds.length} diff IDs for ${image.layers.length} layers`);
    }
    const chain = chainIds(diffIds);
    let parent: string | undefined;
    for (let i = 0; i < chain.length; i++) {
      const name = layerSnapshotName(chain[i]!);
      if (await snapshotExists(snapshotter, name)) {
        if (i === chain.length - 1) await snapshotter.touch(name).catch(() => undefined); // recency for GC
      } else {
        await this.ensureBlobs(image);
        const key = uniqueKey('unpack');
        await snapshotter.prepare(key, parent);
        // A layer unpacked meanwhile by another build is kept (commitActive).
        await commitActive(snapshotter, key, name, async () => {
          const layer = image.layers[i]!;
          const applied = await snapshotter.applyLayer(key, await store.readStream(layer.digest), layer.mediaType);
          if (applied.diffID !== diffIds[i]) {
            throw new Error(`image ${image.name}: layer ${layer.digest} unpacks to ${applied.diffID}, but the config says ${diffIds[i]}`);
          }
        });
      }
      parent = name;
    }
    return parent;
  }
}
