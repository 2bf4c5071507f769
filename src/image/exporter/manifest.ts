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
  const mediaType = types === 'docker' ? dockerLayerType[d.mediaType] ?? d.mediaType : d.mediaType;
  return { mediaType, digest: d.digest, size: d.size };
}

export async function storeImage(store: ContentStore, config: ImageConfig, layers: Descriptor[], types: MediaTypes = 'oci'): Promise<StoredImage> {
  const configDesc = await store.ingest(undefined, JSON.stringify(config), types === 'oci' ? MediaType.ociConfig : MediaType.dockerConfig);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: types === 'oci' ? MediaType.ociManifest : MediaType.dockerManifest,
    config: { mediaType: configDesc.mediaType, digest: configDesc.digest, size: configDesc.size },
    layers: layers.map((l) => layerFor(l, types)),
  };
  const manifestDesc = await store.ingest(undefined, JSON.stringify(manifest), manifest.mediaType);
  return { manifest: manifestDesc, config: configDesc, layers: manifest.layers };
}
