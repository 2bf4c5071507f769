// Image output options end to end: real builds (embedded server), OCI and docker archives read back
// with the project's own archive reader (which checks every blob digest and layer diff_id),
// pushed manifests inspected with skopeo, and Docker 20.10 loading and pulling what kiln made.

import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, testEnv } from '../helpers/env.js';
import { initRepo, publish, startGitDaemon } from '../helpers/git-server.js';
import { readOciArchive } from '../e2e/harness/image-archive.js';
import { decompress, readTar } from '../e2e/harness/tar.js';
import type { BuildResult, OutputSpec } from '../../src/server/api.js';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const run = promisify(execFile);
const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);
const tmpFile = (name: string) => tracked(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-out-')), name));

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string };
}
interface Doc {
  mediaType?: string;
  artifactType?: string;
  manifests?: Desc[];
  config?: Desc & { data?: string };
  layers?: Desc[];
  subject?: Desc;
  annotations?: Record<string, string>;
}

/** index.json and every blob of an OCI layout tarball, by digest. */
async function layout(file: string): Promise<{ index: Doc; blob: (d: string) => Buffer; json: (d: string) => Doc; blobs: Map<string, Buffer> }> {
  const blobs = new Map<string, Buffer>();
  let index: Doc | undefined;
  for (const { header, body } of await readTar(file, file)) {
    const name = header.name.replace(/^\.\//, '');
    if (name === 'index.json') index = JSON.parse(body.toString('utf8')) as Doc;
    const m = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name);
    if (m) blobs.set(`sha256:${m[1]}`, body);
  }
  const blob = (d: string) => {
    const b = blobs.get(d);
    if (!b) throw new Error(`${file}: blob ${d} missing`);
    return b;
  };
  return { index: index!, blob, json: (d) => JSON.parse(blob(d).toString('utf8')) as Doc, blobs };
}

const sha256 = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

async function skopeoRaw(ref: string): Promise<Doc & { raw: string }> {
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  return { ...(JSON.parse(stdout) as Doc), raw: stdout };
}

async function registryBlob(repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`http://${testEnv().registry}/v2/${repo}/blobs/${digest}`);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

const unique = `${process.pid}-${Date.now().toString(36)}`;

// A compressible layer (so levels change the blob) on the busybox base (a gzip layer from the registry).
const DOCKERFILE = 'FROM busybox\nRUN seq 1 60000 > /numbers && echo built > /msg\nCOPY hello.txt /hello.txt\nCMD ["cat", "/msg"]\n';

describe('compression, compression-level and force-compression', () => {
  let root: string;
  let ctx: string;
  beforeAll(() => {
    root = tracked(kilnRoot());
    ctx = tracked(makeContext({ Dockerfile: DOCKERFILE, 'hello.txt': 'hello\n' }));
  });

  it('gzip, zstd and uncompressed at several levels carry the same layer contents; levels change the blobs', async () => {
    const files = {
      gz1: tmpFile('gz1.tar'),
      gz9: tmpFile('gz9.tar'),
      zs1: tmpFile('zs1.tar'),
      zs19: tmpFile('zs19.tar'),
      raw: tmpFile('raw.tar'),
      dflt: tmpFile('d.tar'),
    };
    const outputs: OutputSpec[] = [
      { type: 'oci', names: [], dest: files.gz1, compression: 'gzip', compressionLevel: 1 },
      { type: 'oci', names: [], dest: files.gz9, compression: 'gzip', compressionLevel: 9 },
      { type: 'oci', names: [], dest: files.zs1, compression: 'zstd', compressionLevel: 1 },
      { type: 'oci', names: [], dest: files.zs19, compression: 'zstd', compressionLevel: 19 },
      { type: 'oci', names: [], dest: files.raw, compression: 'uncompressed' },
      { type: 'oci', names: [], dest: files.dflt },
    ];
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs });
    } finally {
      await srv.close();
    }
    // readOciArchive decompresses every layer and checks it against the config's diff_ids.
    const loaded = await Promise.all(Object.values(files).map((f) => readOciArchive(f)));
    const diffIds = loaded.map((l) => l.config.rootfs?.diff_ids);
    for (const d of diffIds) expect(d).toEqual(diffIds[0]);
    for (const l of loaded) expect(l.layers.map(sha256)).toEqual(loaded[0]!.layers.map(sha256));

    const manifests = await Promise.all(
      Object.values(files).map(async (f) => {
        const l = await layout(f);
        return l.json(l.index.manifests![0]!.digest);
      }),
    );
    const [gz1, gz9, zs1, zs19, raw, dflt] = manifests.map((m) => m.layers!);
    // Layer 0 is busybox's, exported as pulled (gzip) whatever the output asks: no force-compression.
    for (const ls of [gz1, gz9, zs1, zs19, raw, dflt]) expect(ls![0]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(new Set([gz1, gz9, zs1, zs19, raw, dflt].map((ls) => ls![0]!.digest)).size).toBe(1);
    // The built layer (the RUN's) in each compression.
    expect(gz1![1]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(zs1![1]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    expect(raw![1]!.mediaType).toBe('application/vnd.oci.image.layer.v1.tar');
    expect(gz9![1]!.size).toBeLessThan(gz1![1]!.size);
    expect(zs19![1]!.size).toBeLessThan(zs1![1]!.size);
    // No level: the default (gzip 6) blob, neither level 1's nor level 9's.
    expect(dflt![1]!.digest).not.toBe(gz1![1]!.digest);
    expect(dflt![1]!.digest).not.toBe(gz9![1]!.digest);
    // The uncompressed layer's digest is its diff ID.
    expect(raw![1]!.digest).toBe(diffIds[0]![1]);
  });

  it('force-compression converts the base layers too, keeping their diff IDs', async () => {
    const zs = tmpFile('zs.tar');
    const raw = tmpFile('raw.tar');
    const srv = server(root);
    try {
      await build(srv, ctx, {
        outputs: [
          { type: 'oci', names: [], dest: zs, compression: 'zstd', forceCompression: true },
          { type: 'oci', names: [], dest: raw, compression: 'uncompressed', forceCompression: true },
        ],
      });
    } finally {
      await srv.close();
    }
    const plain = await readOciArchive(raw);
    const zstd = await readOciArchive(zs);
    expect(zstd.config.rootfs?.diff_ids).toEqual(plain.config.rootfs?.diff_ids);
    const zl = await layout(zs);
    const zm = zl.json(zl.index.manifests![0]!.digest);
    expect(zm.layers!.map((l) => l.mediaType)).toEqual(zm.layers!.map(() => 'application/vnd.oci.image.layer.v1.tar+zstd'));
    const rl = await layout(raw);
    const rm = rl.json(rl.index.manifests![0]!.digest);
    expect(rm.layers!.map((l) => l.mediaType)).toEqual(rm.layers!.map(() => 'application/vnd.oci.image.layer.v1.tar'));
    // Uncompressed blobs are the diffs themselves: digest = diff ID, and zstd decompresses to the same bytes.
    expect(rm.layers!.map((l) => l.digest)).toEqual(plain.config.rootfs?.diff_ids);
    expect(decompress(zl.blob(zm.layers![0]!.digest), 'zstd base layer')).toEqual(rl.blob(rm.layers![0]!.digest));
  });

  it("keeps an image that stays in kiln's store uncompressed, and compresses every layer, its kiln-built base's too, for a push or an archive", async () => {
    const lazyRoot = tracked(kilnRoot());
    const unique = `${process.pid}-${Date.now()}`;
    const local = `kiln-lazy-base:${unique}`;
    const ref = `${testEnv().registry}/kiln-lazy:${unique}`;
    const oci = tmpFile('lazy.tar');
    const srv = server(lazyRoot);
    try {
      await build(srv, tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo one > /one\n' })), {
        outputs: [{ type: 'image', names: [local], push: false }],
      });
      await build(srv, tracked(makeContext({ Dockerfile: `FROM ${local}\nRUN echo two > /two\n` })), {
        outputs: [
          { type: 'image', names: [ref], push: true },
          { type: 'oci', names: [], dest: oci },
        ],
      });
    } finally {
      await srv.close();
    }
    const blob = (d: string) => fs.readFileSync(path.join(lazyRoot, 'content', 'blobs', 'sha256', d.slice('sha256:'.length)));
    const images = JSON.parse(fs.readFileSync(path.join(lazyRoot, 'images.json'), 'utf8')) as { images: Record<string, { manifest: Desc }> };
    const stored = JSON.parse(blob(images.images[`docker.io/library/${local}`]!.manifest.digest).toString('utf8')) as Doc;
    // The pulled base layer stays as it came; the built one is the diff itself (digest = diff ID).
    expect(stored.layers!.map((l) => l.mediaType)).toEqual(['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar']);
    const storedConfig = JSON.parse(blob(stored.config!.digest).toString('utf8')) as { rootfs: { diff_ids: string[] } };
    expect(stored.layers![1]!.digest).toBe(storedConfig.rootfs.diff_ids[1]);

    const gzip = ['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar+gzip'];
    expect((await skopeoRaw(ref)).layers!.map((l) => l.mediaType)).toEqual(gzip);
    // readOciArchive decompresses each layer and checks it against the config's diff_ids.
    const archive = await readOciArchive(oci);
    expect(archive.config.rootfs?.diff_ids?.slice(0, 2)).toEqual(storedConfig.rootfs.diff_ids);
    const l = await layout(oci);
    expect(l.json(l.index.manifests![0]!.digest).layers!.map((d) => d.mediaType)).toEqual(gzip);
  });
});

describe('oci-mediatypes', () => {
  it('OCI types by default for image, docker and oci outputs; oci-mediatypes=false gives Docker schema 2, which docker load and docker pull take', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: DOCKERFILE, 'hello.txt': 'hello\n' }));
    const dockerDefault = tmpFile('dd.tar');
    const dockerV2 = tmpFile('d2.tar');
    const ref = `${testEnv().registry}/kiln-test/outputs-v2:${unique}`;
    const srv = server(root);
    try {
      await build(srv, ctx, {
        outputs: [
          { type: 'docker', names: [`kiln-outputs-d1:${unique}`], dest: dockerDefault, load: false },
          { type: 'docker', names: [`kiln-outputs-d2:${unique}`], dest: dockerV2, load: false, ociMediaTypes: false },
          { type: 'image', names: [ref], push: true, ociMediaTypes: false },
        ],
      });
    } finally {
      await srv.close();
    }
    const d1 = await layout(dockerDefault);
    const m1 = d1.json(d1.index.manifests![0]!.digest);
    expect(m1.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(m1.config!.mediaType).toBe('application/vnd.oci.image.config.v1+json');

    const d2 = await layout(dockerV2);
    expect(d2.index.manifests![0]!.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    const m2 = d2.json(d2.index.manifests![0]!.digest);
    expect(m2.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(m2.config!.mediaType).toBe('application/vnd.docker.container.image.v1+json');
    expect(new Set(m2.layers!.map((l) => l.mediaType))).toEqual(new Set(['application/vnd.docker.image.rootfs.diff.tar.gzip']));

    const pushed = await skopeoRaw(ref);
    expect(pushed.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    expect(pushed.config!.mediaType).toBe('application/vnd.docker.container.image.v1+json');
    expect(pushed.layers!.every((l) => l.mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe(true);

    for (const [file, name] of [
      [dockerDefault, `kiln-outputs-d1:${unique}`],
      [dockerV2, `kiln-outputs-d2:${unique}`],
    ] as const) {
      const loaded = await docker(['load', '-i', file]);
      expect(loaded.code, loaded.stderr).toBe(0);
      const ran = await docker(['run', '--rm', name]);
      expect(ran.stdout).toBe('built\n');
      await docker(['rmi', name]);
    }
    const pulled = await docker(['pull', ref]);
    expect(pulled.code, pulled.stderr).toBe(0);
    const ran = await docker(['run', '--rm', ref]);
    expect(ran.stdout).toBe('built\n');
    await docker(['rmi', ref]);
  });
});

describe('annotations and provenance', () => {
  let httpServer: http.Server;
  let port: number;
  beforeAll(async () => {
    httpServer = http.createServer((_req, res) => res.writeHead(200).end('downloaded\n'));
    await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
    port = (httpServer.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => httpServer.close(() => r())));

  const SECRET = 'SUPERSECRET-value-7f3a';
  const PASSWORD = 'pa55w0rd-9c1e';
  // A build arg's value is in the image config's ARG history entry (as BuildKit writes it): only
  // the attestation is checked for this one.
  const ARG_PASSWORD = 'argpa55-41d0';
  const dockerfile = () =>
    [
      'FROM busybox',
      `ADD http://fetcher:${PASSWORD}@127.0.0.1:${port}/file.txt /file.txt`,
      'RUN --mount=type=secret,id=tok,required=true test -s /run/secrets/tok && echo built > /msg',
      'ARG REPO',
      'CMD ["cat", "/msg"]',
      '',
    ].join('\n');
  const request = (outputs: OutputSpec[], provenance?: { mode: 'min' | 'max'; version?: 'v1' | 'v0.2' }) => ({
    outputs,
    secrets: { tok: Buffer.from(SECRET).toString('base64') },
    buildArgs: { REPO: `https://alice:${ARG_PASSWORD}@git.example/repo.git` },
    ...(provenance ? { attest: { provenance: { version: 'v1' as const, ...provenance } } } : {}),
  });

  it('pushes an index with the image and its attestation manifest; the statement names what the build used and no secret', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: dockerfile() }));
    const repo = `kiln-test/provenance-${unique}`;
    const ref = `${testEnv().registry}/${repo}:max`;
    const srv = server(root);
    let result: BuildResult;
    try {
      ({ result } = await build(srv, ctx, {
        ...request([{ type: 'image', names: [ref], push: true }], { mode: 'max' }),
        dockerfile: { name: 'Dockerfile', text: dockerfile() },
      }));
    } finally {
      await srv.close();
    }
    const index = await skopeoRaw(ref);
    expect(index.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(result!.image!.pushed[ref]).toBe(sha256(Buffer.from(index.raw)));
    // containerimage.digest is what was pushed: the index, as BuildKit reports it.
    expect(result!.image!.manifestDigest).toBe(sha256(Buffer.from(index.raw)));
    expect(index.manifests).toHaveLength(2);
    const [image, att] = index.manifests!;
    expect(image!.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(att!.platform).toEqual({ architecture: 'unknown', os: 'unknown' });
    expect(att!.annotations).toEqual({ 'vnd.docker.reference.digest': image!.digest, 'vnd.docker.reference.type': 'attestation-manifest' });

    const attManifest = await skopeoRaw(`${testEnv().registry}/${repo}@${att!.digest}`);
    expect(attManifest.artifactType).toBe('application/vnd.docker.attestation.manifest.v1+json');
    expect(attManifest.config!.mediaType).toBe('application/vnd.oci.empty.v1+json');
    expect(attManifest.subject!.digest).toBe(image!.digest);
    expect(attManifest.layers).toHaveLength(1);
    const layer = attManifest.layers![0]!;
    expect(layer.mediaType).toBe('application/vnd.in-toto+json');
    expect(layer.annotations).toEqual({ 'in-toto.io/predicate-type': 'https://slsa.dev/provenance/v1' });
    const statementBytes = await registryBlob(repo, layer.digest);
    const st = JSON.parse(statementBytes.toString('utf8'));
    expect(st._type).toBe('https://in-toto.io/Statement/v1');
    expect(st.subject).toEqual([{ name: `pkg:docker/${testEnv().registry}/${repo}@max?platform=linux%2Famd64`, digest: { sha256: image!.digest.slice(7) } }]);
    const def = st.predicate.buildDefinition;
    expect(def.externalParameters.configSource).toEqual({ path: 'Dockerfile' });
    expect(def.externalParameters.request.frontend).toBe('dockerfile.v0');
    expect(def.externalParameters.request.args).toEqual({ 'build-arg:REPO': 'https://alice:xxxxx@git.example/repo.git' });
    expect(def.externalParameters.request.secrets).toEqual([{ id: 'tok' }]);
    expect(def.externalParameters.request.locals).toEqual([{ name: 'context' }, { name: 'dockerfile' }]);
    // busybox resolves through the test registry (the Docker Hub mirror); its digest is what the registry serves.
    const busybox = await skopeoRaw(testEnv().busybox);
    expect(def.resolvedDependencies).toContainEqual({
      uri: 'pkg:docker/busybox@latest?platform=linux%2Famd64',
      digest: { sha256: sha256(Buffer.from(busybox.raw)).slice(7) },
    });
    expect(def.resolvedDependencies).toContainEqual({ uri: `http://fetcher:xxxxx@127.0.0.1:${port}/file.txt` });
    expect(def.internalParameters.builderPlatform).toBe('linux/amd64');
    expect(def.internalParameters.buildConfig.llbDefinition.length).toBeGreaterThan(0);
    const meta = st.predicate.runDetails.metadata;
    expect(Date.parse(meta.finishedOn)).toBeGreaterThanOrEqual(Date.parse(meta.startedOn));
    expect(meta.buildkit_completeness).toEqual({ request: true, resolvedDependencies: false });
    const source = Buffer.from(meta.buildkit_metadata.source.infos[0].data, 'base64').toString('utf8');
    expect(source).toContain('RUN --mount=type=secret,id=tok');
    expect(source).toContain('http://fetcher:xxxxx@127.0.0.1');

    expect(statementBytes.includes(ARG_PASSWORD)).toBe(false);
    // Nothing pushed (statement, manifests, config, layers) holds the secret or the ADD URL's password.
    const everything = [statementBytes, Buffer.from(index.raw), Buffer.from(attManifest.raw)];
    const imageManifest = await skopeoRaw(`${testEnv().registry}/${repo}@${image!.digest}`);
    everything.push(Buffer.from(imageManifest.raw), await registryBlob(repo, imageManifest.config!.digest));
    for (const l of imageManifest.layers!) everything.push(decompress(await registryBlob(repo, l.digest), l.digest));
    for (const [i, b] of everything.entries()) {
      expect(b.includes(SECRET), `pushed document ${i}`).toBe(false);
      expect(b.includes(PASSWORD), `pushed document ${i}: ${b.toString('utf8').slice(0, 2000)}`).toBe(false);
    }

    // Docker 20.10 pulls the index (it picks linux/amd64, never unknown/unknown) and runs it.
    const pulled = await docker(['pull', ref]);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect((await docker(['run', '--rm', ref])).stdout).toBe('built\n');
    await docker(['rmi', ref]);
  });

  it('mode=min leaves out build args and secrets; version=v0.2 gives the SLSA v0.2 shape; oci-artifact=false the older manifest; without --provenance there is no index', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: dockerfile() }));
    const min = tmpFile('min.tar');
    const legacy = tmpFile('legacy.tar');
    const v02 = tmpFile('v02.tar');
    const none = tmpFile('none.tar');
    const srv = server(root);
    try {
      await build(srv, ctx, {
        ...request([{ type: 'oci', names: ['app:min'], dest: min }], { mode: 'min' }),
        dockerfile: { name: 'Dockerfile', text: dockerfile() },
      });
      await build(srv, ctx, {
        ...request([{ type: 'oci', names: ['app:v02'], dest: v02 }], { mode: 'max', version: 'v0.2' }),
        dockerfile: { name: 'Dockerfile', text: dockerfile() },
      });
      await build(srv, ctx, { ...request([{ type: 'oci', names: ['app:none'], dest: none }]), dockerfile: { name: 'Dockerfile', text: dockerfile() } });
      await build(srv, ctx, {
        ...request([{ type: 'oci', names: ['app:legacy'], dest: legacy, ociArtifact: false }], { mode: 'min' }),
        dockerfile: { name: 'Dockerfile', text: dockerfile() },
      });
    } finally {
      await srv.close();
    }
    const statement = async (file: string) => {
      const l = await layout(file);
      const idx = l.json(l.index.manifests![0]!.digest);
      const att = l.json(idx.manifests![1]!.digest);
      return JSON.parse(l.blob(att.layers![0]!.digest).toString('utf8'));
    };
    const m = await statement(min);
    expect(m.predicate.buildDefinition.externalParameters.request.args).toEqual({});
    expect(m.predicate.buildDefinition.externalParameters.request.secrets).toBeUndefined();
    expect(m.predicate.buildDefinition.internalParameters.buildConfig).toBeUndefined();
    expect(m.predicate.runDetails.metadata.buildkit_completeness.request).toBe(false);
    expect(m.predicate.runDetails.metadata.buildkit_metadata).toEqual({});

    const v = await statement(v02);
    expect(v.predicateType).toBe('https://slsa.dev/provenance/v0.2');
    expect(v.predicate.buildType).toBe('https://mobyproject.org/buildkit@v1');
    expect(v.predicate.invocation.configSource).toEqual({ entryPoint: 'Dockerfile' });
    expect(v.predicate.invocation.parameters.secrets).toEqual([{ id: 'tok' }]);
    expect(v.predicate.materials.map((x: { uri: string }) => x.uri)).toContain('pkg:docker/busybox@latest?platform=linux%2Famd64');
    expect(typeof v.predicate.metadata.buildStartedOn).toBe('string');

    // oci-artifact=false: BuildKit's older attestation manifest, an image config for unknown/unknown.
    const l = await layout(legacy);
    const lidx = l.json(l.index.manifests![0]!.digest);
    const latt = l.json(lidx.manifests![1]!.digest);
    expect(latt.artifactType).toBeUndefined();
    expect(latt.subject).toBeUndefined();
    expect(latt.config!.mediaType).toBe('application/vnd.oci.image.config.v1+json');
    expect(JSON.parse(l.blob(latt.config!.digest).toString('utf8'))).toEqual({
      architecture: 'unknown',
      os: 'unknown',
      config: {},
      rootfs: { type: 'layers', diff_ids: [latt.layers![0]!.digest] },
    });
    expect(lidx.manifests![1]!.annotations!['vnd.docker.reference.type']).toBe('attestation-manifest');

    const n = await layout(none);
    expect(n.index.manifests![0]!.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect([...n.blobs.values()].some((b) => b.includes('in-toto'))).toBe(false);
    // The attested archive still reads as the same image.
    expect((await readOciArchive(min)).config.rootfs).toEqual((await readOciArchive(none)).config.rootfs);
  });

  it('annotations land at each level: manifest, its descriptor, the index and the descriptor pointing at it', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo hi > /hi\n' }));
    const plain = tmpFile('plain.tar');
    const attested = tmpFile('attested.tar');
    const ref = `${testEnv().registry}/kiln-test/annotated-${unique}:1`;
    const annotations = [
      { type: 'manifest' as const, key: 'org.opencontainers.image.title', value: 'kiln' },
      { type: 'manifest' as const, platform: 'linux/amd64', key: 'org.opencontainers.image.title', value: 'kiln-amd64' },
      { type: 'manifest' as const, key: 'general', value: 'g' },
      { type: 'manifest-descriptor' as const, key: 'md', value: 'on the descriptor' },
      { type: 'index' as const, key: 'idx', value: 'on the index' },
      { type: 'index-descriptor' as const, key: 'idd', value: 'on index.json' },
    ];
    const manifestOnly = annotations.filter((a) => a.type === 'manifest' || a.type === 'manifest-descriptor');
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs: [{ type: 'oci', names: ['app:1'], dest: plain, annotations: manifestOnly }] });
      await build(srv, ctx, {
        outputs: [
          { type: 'oci', names: ['app:1'], dest: attested, annotations },
          { type: 'image', names: [ref], push: true, annotations },
        ],
        attest: { provenance: { mode: 'min', version: 'v1' } },
      });
    } finally {
      await srv.close();
    }
    // A manifest alone: its annotations in the document, the descriptor ones in index.json.
    const p = await layout(plain);
    expect(p.index.manifests![0]!.annotations).toMatchObject({ md: 'on the descriptor', 'io.containerd.image.name': 'docker.io/library/app:1' });
    expect(p.json(p.index.manifests![0]!.digest).annotations).toEqual({ general: 'g', 'org.opencontainers.image.title': 'kiln-amd64' });

    const a = await layout(attested);
    const top = a.index.manifests![0]!;
    expect(top.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(top.annotations).toMatchObject({ idd: 'on index.json', 'io.containerd.image.name': 'docker.io/library/app:1' });
    const idx = a.json(top.digest);
    expect(idx.annotations).toEqual({ idx: 'on the index' });
    expect(idx.manifests![0]!.annotations).toEqual({ md: 'on the descriptor' });
    expect(a.json(idx.manifests![0]!.digest).annotations).toEqual({ general: 'g', 'org.opencontainers.image.title': 'kiln-amd64' });

    const pushed = await skopeoRaw(ref);
    expect(pushed.annotations).toEqual({ idx: 'on the index' });
    expect(pushed.manifests![0]!.annotations).toEqual({ md: 'on the descriptor' });
    const img = await skopeoRaw(`${ref.slice(0, ref.lastIndexOf(':'))}@${pushed.manifests![0]!.digest}`);
    expect(img.annotations).toEqual({ general: 'g', 'org.opencontainers.image.title': 'kiln-amd64' });
  });

  it("kiln's own store keeps the image manifest of an attested build, and reports it", async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo stored > /msg\n' }));
    const srv = server(root);
    try {
      const { result } = await build(srv, ctx, {
        outputs: [{ type: 'image', names: ['stored:1'], push: false }],
        attest: { provenance: { mode: 'max', version: 'v1' } },
      });
      const [rec] = await srv.listImages();
      expect(rec!.manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
      expect(result.image!.manifestDigest).toBe(rec!.manifest.digest);
    } finally {
      await srv.close();
    }
  });

  it('docker output with provenance: the archive holds the attestation and docker load still takes it', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo loaded > /msg\nCMD ["cat", "/msg"]\n' }));
    const file = tmpFile('docker.tar');
    const name = `kiln-outputs-attested:${unique}`;
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs: [{ type: 'docker', names: [name], dest: file, load: false }], attest: { provenance: { mode: 'max', version: 'v1' } } });
    } finally {
      await srv.close();
    }
    const l = await layout(file);
    const idx = l.json(l.index.manifests![0]!.digest);
    expect(idx.manifests!.map((m) => m.platform)).toEqual([
      { os: 'linux', architecture: 'amd64' },
      { architecture: 'unknown', os: 'unknown' },
    ]);
    const loaded = await docker(['load', '-i', file]);
    expect(loaded.code, loaded.stderr).toBe(0);
    expect((await docker(['run', '--rm', name])).stdout).toBe('loaded\n');
    await docker(['rmi', name]);
  });

  it('refuses what BuildKit refuses, writing nothing: index annotations without an index, a platform not built, Docker types with annotations or attestations', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo hi\n' }));
    const srv = server(root);
    const dest = tmpFile('x.tar');
    try {
      const fails = async (outputs: OutputSpec[], attest: boolean, message: string) => {
        const r = build(srv, ctx, { outputs, ...(attest ? { attest: { provenance: { mode: 'min', version: 'v1' } } } : {}) });
        await expect(r).rejects.toThrow(message);
      };
      await fails(
        [{ type: 'oci', names: [], dest, annotations: [{ type: 'index', key: 'k', value: 'v' }] }],
        false,
        'oci output: index annotations not supported for single platform export',
      );
      await fails(
        [{ type: 'oci', names: [], dest, annotations: [{ type: 'manifest', platform: 'linux/arm64', key: 'k', value: 'v' }] }],
        false,
        'invalid annotation: no platform linux/arm64 found in source',
      );
      await fails(
        [{ type: 'image', names: [], push: false, ociMediaTypes: false, annotations: [{ type: 'manifest-descriptor', key: 'k', value: 'v' }] }],
        false,
        'cannot export annotations with "oci-mediatypes=false"',
      );
      await fails(
        [{ type: 'docker', names: [], dest, load: false, ociMediaTypes: false }],
        true,
        'docker output: cannot export attestations with "oci-mediatypes=false"',
      );
      // The multi-platform exporter takes compression only: the rest is refused by name, before building.
      const multi = build(srv, ctx, {
        platforms: [
          { os: 'linux', architecture: 'amd64' },
          { os: 'linux', architecture: 'arm64' },
        ],
        outputs: [{ type: 'oci', names: [], dest, compressionLevel: 9, annotations: [{ type: 'manifest', key: 'k', value: 'v' }] }],
        attest: { provenance: { mode: 'min', version: 'v1' } },
      });
      await expect(multi).rejects.toThrow('--provenance/--attest, compression-level, annotations: not supported yet for multi-platform builds');
    } finally {
      await srv.close();
    }
    expect(fs.existsSync(dest)).toBe(false);
  });
});

describe('provenance on filesystem outputs', () => {
  it('type=local and type=tar get provenance.json naming every regular file; an image symlink of that name is replaced, not followed', async () => {
    const root = tracked(kilnRoot());
    const hostFile = tmpFile('host-file.txt');
    fs.writeFileSync(hostFile, 'host content\n');
    const ctx = tracked(
      makeContext({
        Dockerfile: `FROM busybox\nRUN mkdir -p /data && echo one > /data/a && echo two > /data/b && ln -s ${hostFile} /provenance.json && ln -s /data/a /link\n`,
      }),
    );
    const dir = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-local-')));
    const tarFile = tmpFile('fs.tar');
    const srv = server(root);
    try {
      await build(srv, ctx, {
        outputs: [
          { type: 'local', dest: dir },
          { type: 'tar', dest: tarFile },
        ],
        attest: { provenance: { mode: 'min', version: 'v1' } },
      });
    } finally {
      await srv.close();
    }
    expect(fs.readFileSync(hostFile, 'utf8')).toBe('host content\n');
    const file = path.join(dir, 'provenance.json');
    expect(fs.lstatSync(file).isFile()).toBe(true);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const st = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(st.predicateType).toBe('https://slsa.dev/provenance/v1');
    const names = st.subject.map((s: { name: string }) => s.name);
    expect(names).toEqual([...names].sort());
    expect(st.subject).toContainEqual({ name: 'data/a', digest: { sha256: sha256(Buffer.from('one\n')).slice(7) } });
    expect(st.subject).toContainEqual({ name: 'data/b', digest: { sha256: sha256(Buffer.from('two\n')).slice(7) } });
    expect(names).not.toContain('link');
    expect(names).not.toContain('provenance.json');
    expect(names).toContain('bin/busybox');

    const entries = await readTar(tarFile, tarFile);
    const prov = entries.filter((e) => e.header.name.replace(/^\.\//, '') === 'provenance.json');
    expect(prov).toHaveLength(1);
    expect(prov[0]!.header.type).toBe('file');
    expect(JSON.parse(prov[0]!.body.toString('utf8')).subject).toEqual(st.subject);
  });
});

describe('provenance of an ADD from git', () => {
  it('names the repository and ref with the commit it resolved to, as BuildKit', async () => {
    const base = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-prov-git-')));
    const work = path.join(base, 'work');
    const repos = path.join(base, 'repos');
    fs.mkdirSync(repos);
    const commit = initRepo(work, { 'v.txt': 'one\n' });
    publish(work, repos, 'app.git');
    const git = await startGitDaemon(repos);
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: `FROM busybox\nADD ${git.url}/app.git#main:. /src\n` }));
    const out = tmpFile('git.tar');
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs: [{ type: 'oci', names: ['git:1'], dest: out }], attest: { provenance: { mode: 'min', version: 'v1' } } });
    } finally {
      await srv.close();
      await git.stop();
    }
    const l = await layout(out);
    const idx = l.json(l.index.manifests![0]!.digest);
    const att = l.json(idx.manifests![1]!.digest);
    const st = JSON.parse(l.blob(att.layers![0]!.digest).toString('utf8'));
    expect(st.predicate.buildDefinition.resolvedDependencies).toContainEqual({ uri: `${git.url}/app.git#main`, digest: { sha1: commit } });
  });
});
