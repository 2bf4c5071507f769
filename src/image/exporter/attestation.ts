// Attestations attached to an image as BuildKit attaches them (docs/attestations/attestation-storage.md,
// exporter/containerimage/writer.go): the image goes into an index beside an attestation manifest,
//
//   index ─┬─ image manifest          platform linux/amd64
//          └─ attestation manifest    platform unknown/unknown, annotations
//                                       vnd.docker.reference.type = attestation-manifest
//                                       vnd.docker.reference.digest = <image manifest digest>
//             layers: one in-toto statement each (application/vnd.in-toto+json,
//                     annotation in-toto.io/predicate-type)
//
// The attestation manifest is in the OCI artifact form current BuildKit writes by default (compat
// version 30, `oci-artifact=true`): artifactType application/vnd.docker.attestation.manifest.v1+json,
// the empty JSON config, and `subject` naming the image manifest. Attestations need OCI media types.
//
// This module only writes documents into the content store; which outputs get attestations and
// what the statements say is decided by the caller.

import type { ContentStore } from '../../cache/content-store.js';
import { familiarName, parseReference } from '../reference.js';
import { MediaType, formatPlatform, type Descriptor, type Index, type Manifest, type Platform } from '../../oci/index.js';

export const IN_TOTO_MEDIA_TYPE = 'application/vnd.in-toto+json';
export const ATTESTATION_ARTIFACT_TYPE = 'application/vnd.docker.attestation.manifest.v1+json';
export const REFERENCE_TYPE_ANNOTATION = 'vnd.docker.reference.type';
export const REFERENCE_DIGEST_ANNOTATION = 'vnd.docker.reference.digest';
export const ATTESTATION_MANIFEST_TYPE = 'attestation-manifest';
export const PREDICATE_TYPE_ANNOTATION = 'in-toto.io/predicate-type';
/** The platform BuildKit gives attestation manifests in an index, so runtimes never pick them. */
export const UNKNOWN_PLATFORM: Platform = { architecture: 'unknown', os: 'unknown' };

/** The OCI image spec's empty descriptor ("{}"), with its data inline as the spec allows. */
const EMPTY_JSON = '{}';

export interface InTotoSubject {
  name: string;
  digest: Record<string, string>;
}

export interface InTotoStatement {
  _type: string;
  predicateType: string;
  subject: InTotoSubject[];
  predicate: unknown;
}

/** Sorted keys, as Go's encoding/json writes maps: the same annotations give the same digest. */
function sorted(m: Record<string, string>): Record<string, string> | undefined {
  const keys = Object.keys(m).sort();
  return keys.length ? Object.fromEntries(keys.map((k) => [k, m[k]!])) : undefined;
}

/** A descriptor with its optional fields in the OCI order (mediaType, digest, size, annotations, platform). */
function descriptor(d: Descriptor, annotations?: Record<string, string>, platform?: Platform): Descriptor {
  const a = annotations ? sorted(annotations) : undefined;
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, ...(a ? { annotations: a } : {}), ...(platform ? { platform } : {}) };
}

/**
 * A package URL for an image name, as BuildKit's purl.RefToPURL writes subjects and materials:
 * pkg:docker/NAMESPACE/NAME@TAG?platform=OS%2FARCH (a digest, when pinned, as a qualifier).
 * Hand-written: kiln needs only this one docker form of the purl spec.
 */
export function imagePurl(name: string, platform?: Platform, type: 'docker' | 'oci' = 'docker'): string {
  const ref = parseReference(name);
  const familiar = familiarName(ref);
  const parts = familiar.split('/');
  const last = parts.pop()!;
  // Go's url.PathEscape leaves ':' (a registry's port) alone; '@', '?', '#', '%' and the like are escaped.
  const seg = (s: string) => encodeURIComponent(s).replace(/%3A/gi, ':');
  const path = [type, ...parts.map(seg), seg(last)].join('/');
  const version = ref.digest === undefined ? (ref.tag ?? 'latest') : ref.tag;
  const qualifiers: [string, string][] = [];
  if (ref.digest) qualifiers.push(['digest', ref.digest]);
  if (platform) qualifiers.push(['platform', formatPlatform(platform)]);
  qualifiers.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const query = qualifiers.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
  return `pkg:${path}${version ? `@${seg(version)}` : ''}${query ? `?${query}` : ''}`;
}

export interface AttestedIndexOptions {
  /** The image manifest and the platform it is for. */
  image: Descriptor;
  platform: Platform;
  statements: InTotoStatement[];
  /** manifest-descriptor annotations: on the image's entry in the index. */
  manifestDescriptor?: Record<string, string>;
  /** index annotations: in the index document. */
  index?: Record<string, string>;
  /** index-descriptor annotations: on the descriptor that points at the index. */
  indexDescriptor?: Record<string, string>;
  /**
   * false: the older attestation manifest BuildKit wrote before compatibility version 30
   * (`oci-artifact=false`): an image config for platform unknown/unknown whose diff_ids are the
   * statements' digests, and no artifactType or subject.
   */
  ociArtifact?: boolean;
}

export interface AttestedIndex {
  /** The index, with the index-descriptor annotations. */
  index: Descriptor;
  /** Every blob written besides the image's own (for archives): statements, config, manifest, index. */
  blobs: Descriptor[];
}

/** Writes the statements, the attestation manifest and the index holding both manifests. */
export async function storeAttestedIndex(store: ContentStore, opts: AttestedIndexOptions): Promise<AttestedIndex> {
  const layers: Descriptor[] = [];
  for (const st of opts.statements) {
    const d = await store.ingest(undefined, JSON.stringify(st), IN_TOTO_MEDIA_TYPE);
    layers.push(descriptor(d, { [PREDICATE_TYPE_ANNOTATION]: st.predicateType }));
  }
  let attestation: Manifest;
  let configBlob: Descriptor;
  if (opts.ociArtifact === false) {
    const cfg = {
      architecture: UNKNOWN_PLATFORM.architecture,
      os: UNKNOWN_PLATFORM.os,
      config: {},
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    };
    const c = await store.ingest(undefined, JSON.stringify(cfg), MediaType.ociConfig);
    configBlob = { mediaType: MediaType.ociConfig, digest: c.digest, size: c.size };
    attestation = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: configBlob, layers };
  } else {
    const empty = await store.ingest(undefined, EMPTY_JSON, MediaType.ociEmpty);
    configBlob = { mediaType: MediaType.ociEmpty, digest: empty.digest, size: empty.size };
    const config = { ...configBlob, data: Buffer.from(EMPTY_JSON).toString('base64') };
    attestation = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType: ATTESTATION_ARTIFACT_TYPE,
      config: config as Descriptor,
      layers,
      subject: { mediaType: opts.image.mediaType, digest: opts.image.digest, size: opts.image.size },
    };
  }
  const attDesc = await store.ingest(undefined, JSON.stringify(attestation), MediaType.ociManifest);
  const index: Index = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [
      descriptor(opts.image, opts.manifestDescriptor, opts.platform),
      descriptor(attDesc, { [REFERENCE_DIGEST_ANNOTATION]: opts.image.digest, [REFERENCE_TYPE_ANNOTATION]: ATTESTATION_MANIFEST_TYPE }, UNKNOWN_PLATFORM),
    ],
  };
  const indexAnnotations = opts.index ? sorted(opts.index) : undefined;
  if (indexAnnotations) index.annotations = indexAnnotations;
  const idx = await store.ingest(undefined, JSON.stringify(index), MediaType.ociIndex);
  return {
    index: descriptor(idx, opts.indexDescriptor),
    blobs: [...layers, configBlob, attDesc, idx],
  };
}
