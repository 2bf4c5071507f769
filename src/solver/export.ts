// From a solved target stage to the outputs asked for: the layers (computed now, reused when known),
// the image config and manifest, then each exporter.

import type { ContentStore } from '../cache/content-store.js';
import { epochDate } from '../frontend/index.js';
import { toImageConfig } from '../image/config.js';
import { imageArchive, writeFileAtomic } from '../image/exporter/archive.js';
import { loadIntoDocker } from '../image/exporter/docker-load.js';
import { addLocalFiles, exportLocal, exportTar, type ExtraFile } from '../image/exporter/filesystem.js';
import { storeImage, type StoredImage } from '../image/exporter/manifest.js';
import { familiarString, formatReference, parseReference } from '../image/reference.js';
import type { RegistryClient } from '../image/registry/index.js';
import type { ImageStore } from '../image/store.js';
import { layerCompression, type Descriptor, type Digest, type HistoryEntry, type ImageConfig, type Platform } from '../oci/index.js';
import type { Compression, Snapshotter } from '../snapshotter/index.js';
import { mountView, withScope } from './mounted.js';
import type { ProgressTracker } from './progress.js';
import type { SolveResult } from './solver.js';
import type { RootLayout } from './state-root.js';
import { INLINE_CACHE_KEY, type CacheConfig } from '../cache/cache-manifest.js';
import { cacheMountLayers, cacheRecords, CREATED_LABEL } from './cache-io.js';
import { storeAttestedIndex } from '../image/exporter/attestation.js';
import { annotationsFor, layersKey, Recompressor, resolveImageOptions, type ImageExportOptions, type ResolvedImageOptions } from './image-output.js';
import { fileSubjects, provenancePredicate, provenanceStatement, statementFor, type ProvenanceOptions, type ProvenanceRequestInfo } from './provenance.js';

export type ExportOutput =
  | ({ type: 'image'; names: string[]; push: boolean } & ImageExportOptions)
  | ({ type: 'docker'; names: string[]; dest?: string; load: boolean } & ImageExportOptions)
  | ({ type: 'oci'; names: string[]; dest: string } & ImageExportOptions)
  | { type: 'local'; dest: string }
  | { type: 'tar'; dest: string };

/** Attestations for the image outputs (--provenance). */
export interface ExportAttestations {
  provenance?: { options: ProvenanceOptions; request: ProvenanceRequestInfo };
}

export interface ExportDeps {
  layout: RootLayout;
  store: ContentStore;
  snapshotter: Snapshotter;
  registry: RegistryClient;
  images: ImageStore;
}

export interface ExportResult {
  configDigest: Digest;
  manifestDigest: Digest;
  names: string[];
  pushed: Record<string, string>;
}

export interface Assembled {
  config: ImageConfig;
  layers: Descriptor[];
}

/**
 * Layers and history of the target stage for one compression, in order.
 *
 * Dates are taken from the build's results, not the clock, as BuildKit does, so a rebuild that comes
 * entirely from the cache yields the same image ID: a step's entry is dated when its snapshot was
 * made, a config-only entry (ENV, CMD...) shares the date of the nearest layer step after it (or
 * before it), and the image is as old as its newest entry.
 *
 * With SOURCE_DATE_EPOCH (as BuildKit's frontend and exporter do): every entry this build adds is
 * dated the epoch, the entries a base image brought keep theirs, the image is as old as its last
 * entry, and the layers' file times are clamped to the epoch (their own layer records).
 */
export async function assemble(
  result: SolveResult,
  compression: Compression,
  labels: Record<string, string>,
  snapshotter: Snapshotter,
  recompress: Recompressor,
  inlineCache?: CacheConfig,
): Promise<Assembled> {
  return assembleWith(result, { compression, force: false }, labels, snapshotter, recompress, inlineCache);
}

/** assemble with an output's layer options: compression level, and force-compression of base layers. */
async function assembleWith(
  result: SolveResult,
  opts: Pick<ResolvedImageOptions, 'compression' | 'level' | 'force' | 'deferLayers'>,
  labels: Record<string, string>,
  snapshotter: Snapshotter,
  recompress: Recompressor | undefined,
  inlineCache?: CacheConfig,
): Promise<Assembled> {
  const { compression, level } = opts;
  const layerOpts = { defer: opts.deferLayers === true };
  // The layers are independent: compute them side by side (each diff streams to disk and
  // compresses off the event loop), then walk the links in order.
  const epoch = result.graph.sourceDateEpoch;
  const epochStr = epoch !== undefined ? epochDate(epoch) : undefined;
  await Promise.all(result.target.links.map((l) => (l.kind === 'step' ? result.layers.get(l.snapshot, compression, epoch, level, layerOpts) : undefined)));
  const layers: Descriptor[] = [];
  const diffIds: Digest[] = [];
  const history: HistoryEntry[] = [];
  const undated: HistoryEntry[] = [];
  let lastDate: string | undefined;
  const dated = (entry: HistoryEntry, date: string) => {
    for (const u of undated.splice(0)) u.created = date;
    lastDate = date;
    return { created: date, ...entry };
  };
  for (const link of result.target.links) {
    switch (link.kind) {
      case 'config': {
        if (epochStr !== undefined) {
          history.push(dated(link.history, epochStr));
          break;
        }
        const entry: HistoryEntry = { ...link.history };
        undated.push(entry);
        history.push(entry);
        break;
      }
      case 'base': {
        // Base layers are exported as they were pulled: same blobs, same digests, no recompression,
        // unless force-compression asks for every layer in the output's compression.
        await result.baseImages.ensureBlobs(link.image);
        // An uncompressed layer (a base built by kiln and kept in its store) is compressed for an
        // output that compresses, as a push from Docker's store compresses its layers.
        const convert = (l: Descriptor) => opts.force || (compression !== 'none' && layerCompression(l.mediaType) === 'none');
        if (recompress && link.image.layers.some(convert))
          layers.push(...(await Promise.all(link.image.layers.map((l) => (convert(l) ? recompress.convert(l, compression, level) : l)))));
        else layers.push(...link.image.layers);
        diffIds.push(...link.image.config.rootfs.diff_ids);
        history.push(...(link.image.config.history ?? []));
        lastDate = link.image.config.created ?? lastDate;
        break;
      }
      case 'step': {
        const rec = await result.layers.get(link.snapshot, compression, epoch, level, layerOpts);
        const info = await snapshotter.stat(link.snapshot);
        // A step taken from an imported cache keeps the date it was first built on.
        const date = epochStr ?? info.labels[CREATED_LABEL] ?? info.created;
        if (rec.empty) {
          history.push(dated({ ...link.history, empty_layer: true }, date));
        } else {
          layers.push(rec.descriptor);
          diffIds.push(rec.diffId);
          history.push(dated(link.history, date));
        }
        break;
      }
    }
  }
  const fallback = lastDate ?? new Date(0).toISOString();
  for (const u of undated) u.created = fallback;
  // Key order as BuildKit writes entries: created first.
  const ordered = history.map(({ created, ...rest }) => ({ created, ...rest }));
  const newest =
    epochStr !== undefined
      ? (ordered.at(-1)?.created ?? epochStr) // BuildKit: the last entry's date
      : ordered.reduce<string>((max, h) => (h.created && h.created > max ? h.created : max), fallback);
  const stageConfig = result.target.stage.config;
  const withLabels = Object.keys(labels).length ? { ...stageConfig, labels: { ...stageConfig.labels, ...labels } } : stageConfig;
  const config = toImageConfig(withLabels, diffIds, ordered, newest);
  // Inline cache: the records ride in the image config, as BuildKit's moby.buildkit.cache.v0.
  if (inlineCache) (config as unknown as Record<string, unknown>)[INLINE_CACHE_KEY] = inlineCache;
  return { config, layers };
}

/**
 * The cache records of a solved build: the target's chain (min) or every stage it ran (max). Inline
 * records ride in the image and name its layers, so with SOURCE_DATE_EPOCH they name the clamped
 * ones (the only ones a push sends).
 */
export async function cacheConfigFor(
  result: SolveResult,
  mode: 'min' | 'max',
  deps: ExportDeps & { layers: SolveResult['layers'] },
  opts: { inline?: boolean } = {},
): Promise<CacheConfig> {
  const stages = mode === 'min' ? [result.target] : result.stages;
  const snapshots = stages.flatMap((s) => s.links.flatMap((l) => (l.kind === 'step' ? [l.snapshot] : [])));
  const records = await cacheRecords(snapshots, deps, opts.inline ? result.graph.sourceDateEpoch : undefined);
  // Cache mounts of the RUN steps this build ran: CI workers that start empty get them too.
  const ids = stages.flatMap((s) => s.stage.steps.flatMap((st) => (st.kind === 'run' ? st.mounts.flatMap((m) => (m.type === 'cache' ? [m.id] : [])) : [])));
  const cacheMounts = await cacheMountLayers(ids, deps);
  return cacheMounts.length ? { records, cacheMounts } : { records };
}

/**
 * An output's image options. An image that stays in kiln's store (no push), or none at all (the
 * build only prints the image ID), gets uncompressed layers unless the output asks for a
 * compression: Docker's image store keeps layers so too, and the image ID depends only on the diff
 * IDs. The compressed blobs a push or an archive needs are made when one is asked for, once per
 * snapshot and compression (LayerRecords), so gzip's cost, seconds for a large layer, is paid only
 * by builds that send or write the image. Those uncompressed layers are deferred too: hashed for
 * their digests, their tars written only if something reads them (Docker's classic store does not
 * write a layer's tar either), which spares a large layer's bytes a second trip to disk.
 */
function imageOptionsFor(out: Extract<ExportOutput, { type: 'image' | 'docker' | 'oci' }> | undefined): ResolvedImageOptions {
  if (!out) return { ...resolveImageOptions({ compression: 'none' }), deferLayers: true };
  const kept = out.type === 'image' && !out.push;
  const unasked = out.compression === undefined && out.level === undefined && !out.force;
  return kept && unasked ? { ...resolveImageOptions({ ...out, compression: 'none' }), deferLayers: true } : resolveImageOptions(out);
}

/**
 * The compression and level of the layers exportResult makes for whatever it exports (its first
 * image output's, or uncompressed when there is none): what a solve can make ahead of it
 * (SolveRequest.eagerLayers).
 */
export function primaryLayerOptions(outputs: readonly ExportOutput[]): { compression: Compression; level?: number; defer?: boolean } {
  const first = outputs.find(
    (o): o is Extract<ExportOutput, { type: 'image' | 'docker' | 'oci' }> => o.type === 'image' || o.type === 'docker' || o.type === 'oci',
  );
  const o = imageOptionsFor(first);
  return { compression: o.compression, ...(o.level !== undefined ? { level: o.level } : {}), ...(o.deferLayers ? { defer: true } : {}) };
}

export async function exportResult(
  result: SolveResult,
  outputs: ExportOutput[],
  labels: Record<string, string>,
  deps: ExportDeps,
  progress: ProgressTracker,
  inlineCache?: CacheConfig,
  attest: ExportAttestations = {},
): Promise<ExportResult> {
  const recompress = new Recompressor(deps.store, deps.layout.tmp);
  const assembled = new Map<string, Promise<Assembled>>();
  const assembleFor = (o: ResolvedImageOptions) => {
    const id = layersKey(o);
    let p = assembled.get(id);
    if (!p) assembled.set(id, (p = assembleWith(result, o, labels, deps.snapshotter, recompress, inlineCache)));
    return p;
  };
  const stored = new Map<string, Promise<StoredImage & { platform: Platform }>>();
  const imageFor = (o: ResolvedImageOptions) => {
    const id = `${layersKey(o)}/${o.types}/${JSON.stringify(o.annotations)}`;
    let p = stored.get(id);
    if (!p) {
      p = assembleFor(o).then(async (a) => {
        const platform = platformOf(a.config);
        const placed = annotationsFor(o, platform);
        const img = await storeImage(deps.store, a.config, a.layers, o.types, { manifest: placed.manifest, descriptor: placed.manifestDescriptor });
        return { ...img, platform };
      });
      stored.set(id, p);
    }
    return p;
  };
  // The provenance predicate is the build's, made once; each output's statement names its own image.
  let predicate: Promise<ReturnType<typeof provenancePredicate>> | undefined;
  const provenanceFor = (platform: Platform) =>
    (predicate ??= (async () => {
      const p = attest.provenance!;
      const images = await result.baseImages.resolvedImages();
      return provenancePredicate(
        {
          graph: result.graph,
          images,
          started: result.started,
          finished: new Date(),
          platform,
          ...(result.gitCommits ? { gitCommits: result.gitCommits } : {}),
        },
        p.request,
        p.options,
      );
    })());
  /** The descriptor an output points at: the image manifest, or an index with its attestations. */
  const rootFor = async (
    img: StoredImage & { platform: Platform },
    o: ResolvedImageOptions,
    names: string[],
  ): Promise<{ root: Descriptor; blobs: Descriptor[] }> => {
    if (!attest.provenance) return { root: img.manifest, blobs: [] };
    const placed = annotationsFor(o, img.platform);
    const statement = provenanceStatement(await provenanceFor(img.platform), names, img.manifest.digest, img.platform);
    const { annotations: _descriptorOnly, ...manifest } = img.manifest;
    const indexed = await storeAttestedIndex(deps.store, {
      image: manifest,
      platform: img.platform,
      statements: [statement],
      manifestDescriptor: placed.manifestDescriptor,
      index: placed.index,
      indexDescriptor: placed.indexDescriptor,
      ociArtifact: o.ociArtifact,
    });
    return { root: indexed.index, blobs: indexed.blobs };
  };

  // Even with no output asked for, the image is assembled: its ID is what `kiln build` prints.
  // Making the layers (diff, tar, compress) is most of an export's time: show it as its own step.
  const imageOutputs = outputs.filter(
    (o): o is Extract<ExportOutput, { type: 'image' | 'docker' | 'oci' }> => o.type === 'image' || o.type === 'docker' || o.type === 'oci',
  );
  const first = imageOutputs[0];
  const primary: StoredImage = await progress.step('exporting layers', () => imageFor(imageOptionsFor(first)));
  // What the first image output points at (an index, with attestations): containerimage.digest.
  let primaryRoot: Descriptor | undefined;
  const pushed: Record<string, string> = {};
  const allNames: string[] = [];
  const epoch = result.graph.sourceDateEpoch;
  const created = epoch !== undefined ? epochDate(epoch) : undefined;

  for (const out of outputs) {
    await progress.step(describe(out), async (v) => {
      switch (out.type) {
        case 'image': {
          const o = imageOptionsFor(out);
          const img = await imageFor(o);
          const names = out.names.map(normalise);
          // The attestation travels only with a push: kiln's store keeps the image manifest itself.
          const { root } = out.push ? await rootFor(img, o, names) : { root: img.manifest };
          if (out === first) primaryRoot = root;
          allNames.push(...names);
          const size = img.layers.reduce((s, l) => s + l.size, 0);
          // The store keeps the image manifest: its readers (run, save, FROM) want an image, not attestations.
          await deps.images.put(
            names.map((name) => ({ name, manifest: img.manifest, config: img.config.digest, size, created: result.started.toISOString() })),
          );
          if (out.push) {
            for (const name of names) {
              const r = await deps.registry.push(name, root, deps.store);
              pushed[name] = r.digest;
              v.log('stdout', `pushed ${name}@${r.digest}\n`);
            }
          }
          break;
        }
        case 'docker':
        case 'oci': {
          const o = imageOptionsFor(out);
          const img = await imageFor(o);
          const names = out.names.map((n) => ({ full: normalise(n), familiar: familiarString(parseReference(n)) }));
          if (out.type === 'docker') allNames.push(...names.map((n) => n.full));
          const { root, blobs } = await rootFor(
            img,
            o,
            names.map((n) => n.full),
          );
          if (out === first) primaryRoot = root;
          const archive = () => imageArchive(deps.store, img, { names, format: out.type, created, root, extraBlobs: blobs });
          if (out.dest) await writeFileAtomic(out.dest, archive());
          if (out.type === 'docker' && out.load) {
            const messages = await loadIntoDocker(archive());
            for (const m of messages) v.log('stdout', m + '\n');
          }
          break;
        }
        case 'local':
        case 'tar': {
          const snapshot = await result.target.snapshot();
          await withScope(async (scope) => {
            const rootfs = await mountView(scope, deps.snapshotter, deps.layout.tmp, snapshot);
            // BuildKit's local and tar exporters write attestations as files beside the result
            // (provenance.json), naming every regular file of it as a subject.
            const extra: ExtraFile[] = [];
            if (attest.provenance) {
              const platform = platformOf(result.target.stage.config);
              const statement = statementFor(await provenanceFor(platform), await fileSubjects(rootfs));
              extra.push({ name: 'provenance.json', content: JSON.stringify(statement, null, 2) });
            }
            if (out.type === 'local') {
              await exportLocal(rootfs, out.dest, { epoch });
              await addLocalFiles(out.dest, extra, epoch);
            } else await exportTar(rootfs, out.dest, { epoch }, extra);
          });
          break;
        }
      }
    });
  }
  return { configDigest: primary.config.digest, manifestDigest: (primaryRoot ?? primary.manifest).digest, names: allNames, pushed };
}

/** The platform an image config (or a stage's config) says it is for. */
function platformOf(config: Pick<ImageConfig, 'os' | 'architecture' | 'variant'>): Platform {
  return { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) };
}

export function normalise(name: string): string {
  return formatReference(parseReference(name));
}

function describe(out: ExportOutput): string {
  switch (out.type) {
    case 'image':
      return `exporting to image${out.names.length ? ` ${out.names.join(', ')}` : ''}${out.push ? ' (push)' : ''}`;
    case 'docker':
      return out.load ? 'exporting to docker (load)' : `exporting to docker image format ${out.dest}`;
    case 'oci':
      return `exporting to oci image format ${out.dest}`;
    case 'local':
      return `copying files to ${out.dest}`;
    case 'tar':
      return `sending tarball to ${out.dest}`;
  }
}
