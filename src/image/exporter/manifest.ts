// Stores an image (config + layers already in the content store) as a manifest, in OCI or Docker
// media types. Exporters and the image store start from the resulting descriptor.

import type { ContentStore } from '../../cache/content-store.js';
import { MediaType, type Descriptor, type ImageConfig, type Manifest } from '../../oci/index.js';

export type MediaTypes = 'oci' | 'docker';

export interface StoredImage {
  manifest: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
}

const dockerLayerType: Record<string, string> = {
  [MediaType.ociLayerGzip]: MediaType.dockerLayerGzip,
  [MediaType.ociLayer]: 'application/vnd.docker.image.rootfs.diff.tar',
};

/** Docker's media types cannot say zstd; such layers keep their OCI type as BuildKit does. */
function layerFor(d: Descriptor, types: MediaTypes): Descriptor {
  const mediaType = types === 'docker' ? (dockerLayerType[d.mediaType] ?? d.mediaType) : d.mediaType;
  return { mediaType, digest: d.digest, size: d.size };
}

/** Sorted keys (as Go writes maps), or undefined for none. */
function annotationMap(m: Record<string, string> | undefined): Record<string, string> | undefined {
  const keys = Object.keys(m ?? {}).sort();
  return keys.length ? Object.fromEntries(keys.map((k) => [k, m![k]!])) : undefined;
}

export interface StoreImageOptions {
  /** Annotations of the manifest document (BuildKit's annotation-manifest). */
  manifest?: Record<string, string>;
  /** Annotations of the descriptor pointing at it, in an index or index.json (annotation-manifest-descriptor). */
  descriptor?: Record<string, string>;
}

export async function storeImage(
  store: ContentStore,
  config: ImageConfig,
  layers: Descriptor[],
  types: MediaTypes = 'oci',
  annotations: StoreImageOptions = {},
): Promise<StoredImage> {
  const configDesc = await store.ingest(undefined, JSON.stringify(config), types === 'oci' ? MediaType.ociConfig : MediaType.dockerConfig);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: types === 'oci' ? MediaType.ociManifest : MediaType.dockerManifest,
    config: { mediaType: configDesc.mediaType, digest: configDesc.digest, size: configDesc.size },
    layers: layers.map((l) => layerFor(l, types)),
  };
  const manifestAnnotations = annotationMap(annotations.manifest);
  if (manifestAnnotations) manifest.annotations = manifestAnnotations;
  const stored = await store.ingest(undefined, JSON.stringify(manifest), manifest.mediaType);
  const descAnnotations = annotationMap(annotations.descriptor);
  const manifestDesc = descAnnotations ? { ...stored, annotations: descAnnotations } : stored;
  return { manifest: manifestDesc, config: configDesc, layers: manifest.layers };
}
