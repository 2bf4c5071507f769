// The build API: plain data that serialises, so the same request can go in-process (embedded mode)
// or over HTTP to a daemon.

import type {
  BuildErrorInfo,
  BuildGraph,
  CacheFrom,
  CacheTo,
  Entitlement,
  LintFinding,
  NamedContextBinding,
  Platform,
  ProgressEvent,
} from '../solver/index.js';
import type { AnnotationSpec } from '../image/annotations.js';

// Values come from their own modules rather than the solver's index: this file is the client's
// view of the API, and a client (`kiln build --addr`) must start without loading the whole solver.
export { familiarName, familiarString, formatReference, parseReference } from '../image/reference.js';
export { hostPlatform } from '../oci/platform.js';
export { parsePlatform } from '../frontend/platform.js';
export { parseSourceDateEpoch, SOURCE_DATE_EPOCH } from '../frontend/epoch.js';
// The client's half of a daemon build: plan locally to know what of the context to send.
export { buildErrorInfo } from '../solver/errors.js';
export { contextUsage } from '../solver/context-usage.js';
export { planBuild } from '../solver/plan.js';
export { walkContext } from '../context/walk.js';
// A client sends only the blobs of the image an oci-layout:// named context names.
export { findLayoutImage, layoutBlobPaths } from '../image/layout.js';
// Flag values of du and prune (sizes, durations, filters), parsed on the client's side.
export { parseDuration, parsePruneFilters, parseSize } from '../cache/gc.js';
// --cache-from/--cache-to values, read the same way by the CLI and by daemon.json.
export { CacheSpecError, parseCacheFrom, parseCacheTo, splitCsv } from './cache-spec.js';

/**
 * Where the build context comes from. A daemon takes only `synced` from its clients: a `dir` names a
 * path on the server's host, which only an in-process (embedded) caller may do.
 */
export type ContextSpec =
  /** A directory read in place, its .dockerignore applied (embedded mode). */
  | { type: 'dir'; path: string; ephemeral?: boolean }
  /**
   * A context the client synced to the daemon (already filtered), by identity and upload session.
   * An ephemeral one (a tar from stdin) is not kept for the next upload once the build is done.
   */
  | { type: 'synced'; id: string; session: string; ephemeral?: boolean };

/**
 * A named build context (--build-context NAME=...), as a request carries it. As with the main
 * context, a daemon takes only what a client synced; `dir` names a path on the server's host.
 */
export type NamedContextSpec =
  /** A directory of files (its own .dockerignore applied): NAME=DIR. */
  | { type: 'dir'; path: string }
  | { type: 'synced'; id: string; session: string }
  /** NAME=docker-image://REF: the image REF wherever NAME is used as an image. */
  | { type: 'docker-image'; ref: string }
  /** NAME=https://.../archive.tar: the files of the archive (or the one file) the URL serves. */
  | { type: 'url'; url: string }
  /** NAME=oci-layout://PATH[:TAG][@DIGEST]: an image of an OCI layout directory on the client. */
  | { type: 'oci-layout'; layout: { type: 'dir'; path: string } | { type: 'synced'; id: string; session: string }; tag: string; digest?: string };

/**
 * What planning knows of the named contexts without preparing them (a client planning what to
 * upload, a dry run): which names are files and which images. An OCI layout's image is not read
 * here, so its name stands for itself.
 */
export function namedContextBindings(specs: Readonly<Record<string, NamedContextSpec>> | undefined): Record<string, NamedContextBinding> | undefined {
  if (!specs) return undefined;
  const out: Record<string, NamedContextBinding> = {};
  for (const [name, spec] of Object.entries(specs)) {
    out[name] =
      spec.type === 'docker-image'
        ? { kind: 'image', ref: spec.ref }
        : spec.type === 'oci-layout'
          ? { kind: 'image', ref: `oci-layout://${name}` }
          : { kind: 'files' };
  }
  return out;
}

/** A failed build, with its details as fields (BuildErrorInfo), so a daemon can send it whole. */
export class BuildFailure extends Error {
  constructor(readonly info: BuildErrorInfo) {
    super(info.message);
    this.name = 'BuildFailure';
  }
}

export type LayerCompression = 'gzip' | 'zstd' | 'uncompressed';

// Annotations (exporter attributes and --annotation), parsed on the client's side.
export { AnnotationError, parseAnnotationAttr, parseAnnotationFlag } from '../image/annotations.js';
export type { AnnotationSpec } from '../image/annotations.js';

/** What BuildKit's image, docker and oci exporters share (compression, media types, annotations). */
export interface ImageOutputOptions {
  compression?: LayerCompression;
  /** gzip 0-9, zstd 0-22 (compression-level). */
  compressionLevel?: number;
  /** Recompress layers that exist in another compression (base image layers) too (force-compression). */
  forceCompression?: boolean;
  /** OCI media types (default) or Docker schema 2 ones (oci-mediatypes=false). */
  ociMediaTypes?: boolean;
  /** Attestation manifests as OCI artifacts (default) or in BuildKit's older image form (oci-artifact=false). */
  ociArtifact?: boolean;
  annotations?: AnnotationSpec[];
}

/** `--provenance` / `--attest type=provenance`: a SLSA provenance attestation on image outputs. */
export interface ProvenanceRequest {
  mode: 'min' | 'max';
  /** SLSA predicate version; v1 is BuildKit's default since v0.2x (frontend/attestations). */
  version: 'v1' | 'v0.2';
  builderId?: string;
  reproducible?: boolean;
}

/** Where a build's result goes; several may be given (BuildKit's --output, -t, --load, --push). */
export type OutputSpec =
  /** Into kiln's image store under `names`; with push, also to the registry of each name. */
  | ({ type: 'image'; names: string[]; push: boolean } & ImageOutputOptions)
  /** A tarball `docker load` reads; `load` streams it into the local Docker daemon instead of (or as well as) `dest`. */
  | ({ type: 'docker'; names: string[]; dest?: string; load: boolean } & ImageOutputOptions)
  /** An OCI image layout tarball. */
  | ({ type: 'oci'; names: string[]; dest: string } & ImageOutputOptions)
  /** The final filesystem, as a directory. */
  | { type: 'local'; dest: string }
  /** The final filesystem, as one tarball. */
  | { type: 'tar'; dest: string };

export interface BuildRequest {
  /** The build context (a directory in embedded mode, a synced upload through a daemon). */
  context: ContextSpec;
  /** Named build contexts (--build-context), by name normalised as buildx does. */
  namedContexts?: Record<string, NamedContextSpec>;
  /** The Dockerfile: its display name (for errors), its text, and its host path when it is a file
   * (a `<Dockerfile>.dockerignore` beside it wins over the context's .dockerignore). */
  dockerfile: { name: string; text: string; path?: string };
  buildArgs: Record<string, string | undefined>;
  target?: string;
  platform?: Platform;
  /**
   * Several target platforms (--platform A,B): one image per platform under an image index (or one
   * directory per platform for local and tar outputs). Wins over `platform`; one entry is `platform`.
   */
  platforms?: Platform[];
  /** Translate only: return the step graph, run nothing. */
  dryRun: boolean;
  outputs: OutputSpec[];
  /**
   * Assemble the image (layers, config) even when no output asks for it, to report its ID. Without
   * it, a build with no outputs leaves its result in the cache only, as buildx does.
   */
  imageId?: boolean;
  /** Attestations for image outputs (--provenance, --attest); none unless asked for. */
  attest?: { provenance?: ProvenanceRequest };
  /** Extra labels on the final image (--label). */
  labels: Record<string, string>;
  /** Network for RUN steps without --network: the host's (default, as docker build) or none. */
  network: 'host' | 'none';
  /**
   * Entitlements the build asks for (--allow): `network.host` for RUN --network=host,
   * `security.insecure` for RUN --security=insecure. Granted only where the configuration permits.
   */
  allow?: Entitlement[];
  /** Processes each RUN may have, instead of the configured default (--pids-limit), up to kiln's maximum. */
  runPidsLimit?: number;
  noCache: boolean;
  /** Stages (by name) built without the cache (--no-cache-filter). */
  noCacheFilter?: string[];
  /** Caches to import (--cache-from type=local,src=DIR | type=registry,ref=REF). */
  cacheFrom?: CacheFrom[];
  /** Where to export the build cache (--cache-to type=local,dest=DIR | type=registry,ref=REF [mode=min|max] | type=inline). */
  cacheTo?: CacheTo[];
  /** Always ask the registry for base images instead of using local ones. */
  pull: boolean;
  /**
   * Secret values by id (--secret), base64: mounted into the RUN steps that ask for them, never
   * part of a cache key, a record, the image or a log. A daemon keeps them in memory for the build.
   */
  secrets?: Record<string, string>;
  /**
   * SSH agents the build may use (--ssh), by id. `socket` (embedded mode only) is the agent's socket
   * on this host; through a daemon the client keeps its agents and the daemon dials back (docs/api.md).
   */
  ssh?: SshForward[];
}

/** One `--ssh` entry. */
export interface SshForward {
  id: string;
  socket?: string;
}

export interface BuildResult {
  graph: BuildGraph;
  warnings: LintFinding[];
  /** Absent for a dry run. */
  image?: {
    /** The image ID as Docker shows it: the config digest. */
    id: string;
    manifestDigest: string;
    configDigest: string;
    /** Digests pushed, by name. */
    pushed: Record<string, string>;
    names: string[];
    /** A multi-platform build's platforms: then `id` and `manifestDigest` are the index's digest. */
    platforms?: string[];
  };
}

export type { BuildErrorInfo, BuildGraph, CacheFrom, CacheTo, Entitlement, LintFinding, Platform, ProgressEvent };
export { ENTITLEMENTS } from '../solver/ops/types.js';

/**
 * The outputs a daemon hands back to its client, in the order it numbers them: a file for each
 * `dest` (written there as is), a directory export (sent as a tarball, unpacked at `dest`), and a
 * docker archive for each --load (loaded into the client's Docker). Both sides derive the numbering
 * from the request with this one function.
 */
export type ClientOutputTarget = { kind: 'file'; dest: string } | { kind: 'local'; dest: string } | { kind: 'load' };

export function clientOutputTargets(outputs: readonly OutputSpec[]): { target: ClientOutputTarget; output: OutputSpec }[] {
  const out: { target: ClientOutputTarget; output: OutputSpec }[] = [];
  for (const o of outputs) {
    switch (o.type) {
      case 'image':
        break;
      case 'docker':
        if (o.dest !== undefined) out.push({ target: { kind: 'file', dest: o.dest }, output: o });
        if (o.load) out.push({ target: { kind: 'load' }, output: o });
        break;
      case 'oci':
      case 'tar':
        out.push({ target: { kind: 'file', dest: o.dest }, output: o });
        break;
      case 'local':
        out.push({ target: { kind: 'local', dest: o.dest }, output: o });
        break;
    }
  }
  return out;
}
