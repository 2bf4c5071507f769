// Test helpers: a real docker-registry per test file (own port, storage and config), and tiny
// images built in a content store (one gzip tar layer + config + OCI manifest).

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { ContentStore } from '../../../src/cache/content-store.js';
import { type Descriptor, type ImageConfig, type Index, type Manifest, type Platform, MediaType, sha256Digest } from '../../../src/oci/index.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface RunningRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  dir: string;
  storage: string;
  proc: ChildProcess;
  stop(): Promise<void>;
  /** Path of a blob's data file in the registry's filesystem storage. */
  blobDataPath(digest: string): string;
}

export type RegistryAuth =
  | { kind: 'none' }
  | { kind: 'htpasswd'; file: string }
  | { kind: 'token'; realm: string; service: string; issuer: string; rootCertBundle: string };

export async function startRegistry(auth: RegistryAuth = { kind: 'none' }): Promise<RunningRegistry> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-registry-'));
  const storage = path.join(dir, 'storage');
  const port = await freePort();
  const authYaml =
    auth.kind === 'htpasswd'
      ? `auth:\n  htpasswd:\n    realm: kiln-test\n    path: ${auth.file}\n`
      : auth.kind === 'token'
        ? `auth:\n  token:\n    realm: ${auth.realm}\n    service: ${auth.service}\n    issuer: ${auth.issuer}\n    rootcertbundle: ${auth.rootCertBundle}\n`
        : '';
  const config = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: kiln-test-secret
${authYaml}`;
  const configPath = path.join(dir, 'config.yml');
  await fs.writeFile(configPath, config);
  const proc = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`docker-registry exited (${proc.exitCode}): ${stderr}`);
    try {
      await fetch(`http://${host}/v2/`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`docker-registry did not come up on ${host}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    host,
    dir,
    storage,
    proc,
    blobDataPath: (digest: string) => {
      const hex = digest.slice('sha256:'.length);
      return path.join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    },
    async stop() {
      if (proc.exitCode === null && proc.pid) {
        const exited = new Promise((r) => proc.once('exit', r));
        process.kill(proc.pid, 'SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, 'SIGKILL');
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/** A gzip tar with the given files, deterministic. Returns compressed bytes and the diff ID. */
export async function makeLayer(files: Record<string, string | Buffer>): Promise<{ gz: Buffer; diffId: string }> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) {
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    pack.entry({ name, size: body.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0 }, body);
  }
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  const raw = Buffer.concat(parts);
  return { gz: gzipSync(raw), diffId: sha256Digest(raw) };
}

/** Builds a one-layer OCI image in the store; returns its manifest descriptor (with platform). */
export async function makeImage(
  store: ContentStore,
  platform: Platform,
  files: Record<string, string | Buffer>,
  opts: { docker?: boolean } = {},
): Promise<Descriptor> {
  const mt = opts.docker
    ? { layer: MediaType.dockerLayerGzip, config: MediaType.dockerConfig, manifest: MediaType.dockerManifest }
    : { layer: MediaType.ociLayerGzip, config: MediaType.ociConfig, manifest: MediaType.ociManifest };
  const layer = await makeLayer(files);
  const layerDesc = await store.ingest(undefined, layer.gz, mt.layer);
  const config: ImageConfig = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: [layer.diffId as never] },
  };
  const configDesc = await store.ingest(undefined, JSON.stringify(config), mt.config);
  const manifest: Manifest = { schemaVersion: 2, mediaType: mt.manifest, config: configDesc, layers: [layerDesc] };
  const m = await store.ingest(undefined, JSON.stringify(manifest), mt.manifest);
  return { ...m, platform };
}

export async function makeIndex(store: ContentStore, manifests: Descriptor[], opts: { docker?: boolean } = {}): Promise<Descriptor> {
  const mediaType = opts.docker ? MediaType.dockerManifestList : MediaType.ociIndex;
  const index: Index = { schemaVersion: 2, mediaType, manifests };
  return store.ingest(undefined, JSON.stringify(index), mediaType);
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}
