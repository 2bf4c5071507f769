// Load an image from a `docker save` tar or from an OCI image layout tar (`--output type=oci`).
//
// Both loaders check the archive's own integrity as they go (blob digests and sizes against their
// descriptors, layer diff_ids against the config), because a kiln archive that Docker or skopeo
// would reject must fail the test even when the files inside happen to be right.
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { decompress, readTar, sniffCompression } from './tar.js';

/** The image config JSON as written (Docker's and OCI's share the fields the harness reads). */
export interface RawImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  author?: string;
  config?: Record<string, unknown> | null;
  rootfs?: { type?: string; diff_ids?: string[] };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean; author?: string }[];
}

export interface LoadedImage {
  format: 'docker-archive' | 'oci-archive';
  config: RawImageConfig;
  /** Uncompressed layer tars, base first. */
  layers: Buffer[];
}

function sha256(buf: Buffer): string {
  return 'sha256:' + createHash('sha256').update(buf).digest('hex');
}

function parseJson<T>(buf: Buffer | undefined, what: string): T {
  if (!buf) throw new Error(`${what}: missing`);
  try {
    return JSON.parse(buf.toString('utf8')) as T;
  } catch (e) {
    throw new Error(`${what}: invalid JSON: ${(e as Error).message}`);
  }
}

/**
 * File name -> body of every regular file in the archive ("./" prefixes dropped). Symlinks to files
 * in the archive resolve to their target: `docker save` writes a layer that occurs twice in an image
 * (two RUNs with the same diff) once, and links the second directory's layer.tar to it.
 */
async function archiveFiles(file: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const links = new Map<string, string>();
  for (const { header, body } of await readTar(file, file)) {
    const name = posix.normalize(header.name).replace(/^(\.\/)+/, '');
    if (header.type === 'file' || header.type === 'contiguous-file') files.set(name, body);
    else if (header.type === 'symlink') links.set(name, posix.normalize(posix.join(posix.dirname(name), header.linkname)));
  }
  for (const [name, target] of links) {
    const body = files.get(target);
    if (body && !target.startsWith('../') && !posix.isAbsolute(target)) files.set(name, body);
  }
  return files;
}

function checkDiffIds(config: RawImageConfig, layers: Buffer[], what: string): void {
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== layers.length) {
    throw new Error(`${what}: config lists ${diffIds.length} diff_ids but the manifest has ${layers.length} layers`);
  }
  layers.forEach((layer, i) => {
    const got = sha256(layer);
    if (got !== diffIds[i]) throw new Error(`${what}: layer ${i} uncompressed digest ${got} != config diff_id ${diffIds[i]}`);
  });
  const nonEmpty = (config.history ?? []).filter((h) => !h.empty_layer).length;
  if (config.history && nonEmpty !== layers.length) {
    throw new Error(`${what}: history has ${nonEmpty} entries that are not empty_layer but the image has ${layers.length} layers`);
  }
}

/** A `docker save` archive holding exactly one image. */
export async function readDockerArchive(file: string): Promise<LoadedImage> {
  const files = await archiveFiles(file);
  const manifest = parseJson<{ Config: string; Layers: string[] }[]>(files.get('manifest.json'), `${file}: manifest.json`);
  if (!Array.isArray(manifest) || manifest.length !== 1) {
    throw new Error(`${file}: manifest.json should describe one image, describes ${Array.isArray(manifest) ? manifest.length : 'none'}`);
  }
  const [entry] = manifest;
  const config = parseJson<RawImageConfig>(files.get(entry.Config), `${file}: config ${entry.Config}`);
  const layers = entry.Layers.map((name) => {
    const body = files.get(name);
    if (!body) throw new Error(`${file}: layer ${name} named in manifest.json is missing`);
    return decompress(body, `${file}: ${name}`);
  });
  checkDiffIds(config, layers, file);
  return { format: 'docker-archive', config, layers };
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const LAYER_COMPRESSION: Record<string, 'gzip' | 'zstd' | 'none'> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
};

function nodeArch(): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', ppc64: 'ppc64le' } as Record<string, string>)[process.arch] ?? process.arch;
}

/** An OCI image layout packed as a tar: oci-layout, index.json, blobs/sha256/... */
export async function readOciArchive(file: string): Promise<LoadedImage> {
  const files = await archiveFiles(file);
  const layout = parseJson<{ imageLayoutVersion?: string }>(files.get('oci-layout'), `${file}: oci-layout`);
  if (layout.imageLayoutVersion !== '1.0.0') throw new Error(`${file}: oci-layout has imageLayoutVersion ${String(layout.imageLayoutVersion)}`);

  const blob = (d: Descriptor, what: string): Buffer => {
    const m = /^sha256:([0-9a-f]{64})$/.exec(d.digest ?? '');
    if (!m) throw new Error(`${file}: ${what}: unsupported digest ${String(d.digest)}`);
    const body = files.get(`blobs/sha256/${m[1]}`);
    if (!body) throw new Error(`${file}: ${what}: blob ${d.digest} is missing`);
    if (sha256(body) !== d.digest) throw new Error(`${file}: ${what}: blob content does not match ${d.digest}`);
    if (body.length !== d.size) throw new Error(`${file}: ${what}: descriptor size ${d.size} != blob size ${body.length}`);
    return body;
  };

  // Follow index.json (and nested indexes) down to the one manifest for this machine's platform.
  let desc: Descriptor | undefined;
  let index = parseJson<{ manifests?: Descriptor[] }>(files.get('index.json'), `${file}: index.json`);
  for (let depth = 0; depth < 4; depth++) {
    const all = index.manifests ?? [];
    const forUs = all.filter((m) => !m.platform || (m.platform.os === 'linux' && m.platform.architecture === nodeArch()));
    if (forUs.length !== 1) {
      throw new Error(`${file}: expected one manifest for linux/${nodeArch()} in an index, found ${forUs.length} of ${all.length}`);
    }
    desc = forUs[0];
    if (!INDEX_TYPES.has(desc.mediaType ?? '')) break;
    index = parseJson(blob(desc, 'nested index'), `${file}: nested index ${desc.digest}`);
    desc = undefined;
  }
  if (!desc) throw new Error(`${file}: indexes nest too deep`);
  const manifest = parseJson<{ schemaVersion?: number; mediaType?: string; config: Descriptor; layers: Descriptor[] }>(
    blob(desc, 'manifest'),
    `${file}: manifest ${desc.digest}`,
  );
  if (manifest.schemaVersion !== 2) throw new Error(`${file}: manifest schemaVersion ${String(manifest.schemaVersion)} != 2`);
  const config = parseJson<RawImageConfig>(blob(manifest.config, 'config'), `${file}: config ${manifest.config.digest}`);
  const layers = manifest.layers.map((l, i) => {
    const body = blob(l, `layer ${i}`);
    const want = LAYER_COMPRESSION[l.mediaType ?? ''];
    if (!want) throw new Error(`${file}: layer ${i} has unknown media type ${String(l.mediaType)}`);
    const got = sniffCompression(body);
    if (got !== want) throw new Error(`${file}: layer ${i} media type ${l.mediaType} but the blob is ${got}`);
    return decompress(body, `${file}: layer ${i}`);
  });
  checkDiffIds(config, layers, file);
  return { format: 'oci-archive', config, layers };
}
