// Multi-platform builds through the compiled binary: a cross-compiling Dockerfile (the build stage on
// the build machine's busybox, writing $TARGETARCH) for linux/amd64 and linux/arm64, exported as an
// OCI layout, pushed to the test registry (then pulled and run by the test dockerd), and as
// directories. The arm64 base is an index this file pushes itself: busybox's layers under an arm64
// config, next to the real amd64 image (nothing of the arm64 image is executed in a cross build).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { emulatorRegistered } from '../../src/solver/platforms.js';
import { mountsUnder, processesMentioning } from '../helpers/daemon.js';
import { docker, testEnv, tmpDir } from '../helpers/env.js';
import { kiln } from './helpers.js';

let dir: string;
let root: string;
let env: NodeJS.ProcessEnv;
/** The multi-arch base: registry/kiln-platform-base:multi (amd64 = busybox, arm64 = its layers, arm64 config). */
let multiBase: string;

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

function sha256(b: Buffer | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

/** Uploads a blob to the test registry in one request. */
async function putBlob(registry: string, repo: string, body: Buffer): Promise<string> {
  const digest = sha256(body);
  const start = await fetch(`http://${registry}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  expect(start.status).toBe(202);
  const loc = new URL(start.headers.get('location')!, `http://${registry}`);
  loc.searchParams.set('digest', digest);
  const put = await fetch(loc, { method: 'PUT', body: new Uint8Array(body), headers: { 'content-type': 'application/octet-stream' } });
  expect(put.status).toBe(201);
  return digest;
}

async function putManifest(registry: string, repo: string, ref: string, mediaType: string, body: string): Promise<string> {
  const res = await fetch(`http://${registry}/v2/${repo}/manifests/${ref}`, { method: 'PUT', body, headers: { 'content-type': mediaType } });
  expect(res.status, await res.text()).toBe(201);
  return sha256(body);
}

/** busybox's amd64 manifest plus an arm64 manifest of the same layers, under one index. */
async function pushMultiArchBusybox(): Promise<string> {
  const { registry, busybox } = testEnv();
  const repo = busybox.slice(registry.length + 1).split(':')[0]!;
  const get = (what: string, accept?: string) => fetch(`http://${registry}/v2/${repo}/${what}`, accept ? { headers: { accept } } : {});
  const manifestRes = await get('manifests/latest', OCI_MANIFEST);
  expect(manifestRes.headers.get('content-type')).toBe(OCI_MANIFEST);
  const amd64Text = await manifestRes.text();
  const amd64 = JSON.parse(amd64Text) as { config: { digest: string; size: number; mediaType: string }; layers: { digest: string }[] };
  const config = JSON.parse(await (await get(`blobs/${amd64.config.digest}`)).text()) as Record<string, unknown>;
  expect(config.architecture).toBe('amd64');
  const target = 'kiln-platform-base';
  // The layers are mounted across, the configs and manifests written anew.
  for (const l of [amd64.config, ...amd64.layers]) {
    const res = await fetch(`http://${registry}/v2/${target}/blobs/uploads/?mount=${l.digest}&from=${repo}`, { method: 'POST' });
    expect(res.status).toBe(201);
  }
  const armConfig = Buffer.from(JSON.stringify({ ...config, architecture: 'arm64', variant: 'v8' }));
  const armConfigDigest = await putBlob(registry, target, armConfig);
  const armText = JSON.stringify({ ...amd64, config: { ...amd64.config, digest: armConfigDigest, size: armConfig.length } });
  const amd64Digest = await putManifest(registry, target, sha256(amd64Text), OCI_MANIFEST, amd64Text);
  const armDigest = await putManifest(registry, target, sha256(armText), OCI_MANIFEST, armText);
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: OCI_MANIFEST, digest: amd64Digest, size: Buffer.byteLength(amd64Text), platform: { architecture: 'amd64', os: 'linux' } },
      { mediaType: OCI_MANIFEST, digest: armDigest, size: Buffer.byteLength(armText), platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
    ],
  });
  await putManifest(registry, target, 'multi', OCI_INDEX, index);
  return `${registry}/${target}:multi`;
}

function context(name: string, dockerfile: string): string {
  const ctx = path.join(dir, name);
  mkdirSync(ctx, { recursive: true });
  writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile);
  return ctx;
}

/** The cross-compile case: the build stage runs on the build machine and writes the target arch. */
function crossDockerfile(final: string): string {
  return [
    'FROM --platform=$BUILDPLATFORM busybox AS build',
    // Random bytes: identical in both images only if this step ran once for both platforms.
    'RUN head -c 16 /dev/urandom | od -An -tx1 > /shared',
    'ARG TARGETARCH',
    'RUN echo "$TARGETARCH" > /arch && uname -m > /built-on',
    `FROM ${final}`,
    'COPY --from=build /arch /built-on /shared /',
    '',
  ].join('\n');
}

function build(args: string[]) {
  return kiln(['build', '--root', root, ...args], { env });
}

/** Reads a file out of an OCI layout directory's image: the last layer that has it wins. */
function fileInLayers(layout: string, manifest: { layers: { digest: string }[] }, file: string): string | undefined {
  let found: string | undefined;
  for (const l of manifest.layers) {
    const blob = path.join(layout, 'blobs', 'sha256', l.digest.slice(7));
    const r = spawnSync('tar', ['-xzOf', blob, file], { encoding: 'utf8' });
    if (r.status === 0) found = r.stdout;
  }
  return found;
}

beforeAll(async () => {
  dir = await tmpDir('kiln-multi-platform-');
  root = path.join(dir, 'root');
  const config = path.join(dir, 'kiln-config.json');
  writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
  env = { KILN_CONFIG: config };
  multiBase = await pushMultiArchBusybox();
});

describe('kiln build --platform linux/amd64,linux/arm64', () => {
  it('type=oci: an index of two manifests with their platforms, each image with its own files', () => {
    const ctx = context('oci', crossDockerfile('scratch'));
    const out = path.join(dir, 'cross.tar');
    const meta = path.join(dir, 'meta.json');
    const r = build(['--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-o', `type=oci,dest=${out}`, '--metadata-file', meta, ctx]);
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    // BuildKit's names: the platform first, and "->arm64" on a build-platform step that sees the target.
    expect(r.stderr).toContain('[linux/amd64->arm64 build 3/3] RUN echo "$TARGETARCH"');
    expect(r.stderr).toContain('[linux/amd64 build 3/3] RUN echo "$TARGETARCH"');
    expect(r.stderr).toContain('[linux/arm64 stage-1 2/2] COPY --from=build');
    // What the platforms share is shown once: loading the Dockerfile is one vertex, not one per platform.
    const loads = new Set([...r.stderr.matchAll(/^#(\d+) \[internal\] load build definition from Dockerfile$/gm)].map((m) => m[1]));
    expect(loads.size).toBe(1);
    // A base's metadata is loaded per platform, named as buildx shows it.
    expect(r.stderr).toContain('[linux/amd64 internal] load metadata for docker.io/library/busybox:latest');

    const layout = path.join(dir, 'cross-layout');
    mkdirSync(layout);
    expect(spawnSync('tar', ['-xf', out, '-C', layout]).status).toBe(0);
    const top = JSON.parse(readFileSync(path.join(layout, 'index.json'), 'utf8')) as { manifests: { mediaType: string; digest: string }[] };
    // As BuildKit's oci exporter: index.json holds the image index, which lists the platforms.
    expect(top.manifests).toHaveLength(1);
    expect(top.manifests[0]!.mediaType).toBe(OCI_INDEX);
    const blob = (d: string) => readFileSync(path.join(layout, 'blobs', 'sha256', d.slice(7)), 'utf8');
    const index = JSON.parse(blob(top.manifests[0]!.digest)) as { mediaType: string; manifests: { mediaType: string; digest: string; platform: unknown }[] };
    expect(index.mediaType).toBe(OCI_INDEX);
    expect(index.manifests.map((m) => m.platform)).toEqual([
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm64', os: 'linux' },
    ]);
    expect(JSON.parse(readFileSync(meta, 'utf8'))).toEqual({ 'containerimage.digest': top.manifests[0]!.digest });

    const shared: string[] = [];
    for (const [i, arch] of ['amd64', 'arm64'].entries()) {
      const m = JSON.parse(blob(index.manifests[i]!.digest)) as { config: { digest: string }; layers: { digest: string }[] };
      const config = JSON.parse(blob(m.config.digest)) as { architecture: string; os: string };
      expect(config).toMatchObject({ architecture: arch, os: 'linux' });
      expect(fileInLayers(layout, m, 'arch')).toBe(`${arch}\n`);
      // Both were built on this machine: no emulation.
      expect(fileInLayers(layout, m, 'built-on')).toBe('x86_64\n');
      shared.push(fileInLayers(layout, m, 'shared')!);
    }
    expect(shared[0]).toMatch(/[0-9a-f]{2}/);
    expect(shared[1]).toBe(shared[0]);

    // skopeo reads it as any OCI tool does, per platform.
    for (const arch of ['amd64', 'arm64']) {
      const s = spawnSync('skopeo', ['inspect', '--override-arch', arch, `oci-archive:${out}`], { encoding: 'utf8' });
      expect(s.status, s.stderr).toBe(0);
      expect(JSON.parse(s.stdout)).toMatchObject({ Architecture: arch, Os: 'linux' });
    }
  });

  it('--push: an index in the registry; each platform on its own base; docker pulls and runs the amd64 one', async () => {
    const { registry } = testEnv();
    const ctx = context('push', crossDockerfile(multiBase));
    const ref = `${registry}/kiln-platform-cross:1`;
    const r = build(['--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-t', ref, '--push', ctx]);
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    const raw = spawnSync('skopeo', ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`], { encoding: 'utf8' });
    expect(raw.status, raw.stderr).toBe(0);
    const index = JSON.parse(raw.stdout) as { mediaType: string; manifests: { platform: { architecture: string } }[] };
    expect(index.mediaType).toBe(OCI_INDEX);
    expect(index.manifests.map((m) => m.platform.architecture)).toEqual(['amd64', 'arm64']);
    for (const arch of ['amd64', 'arm64']) {
      const s = spawnSync('skopeo', ['inspect', '--tls-verify=false', '--override-arch', arch, `docker://${ref}`], { encoding: 'utf8' });
      expect(s.status, s.stderr).toBe(0);
      // The arm64 image is built on the arm64 manifest of the base's index (its config says so).
      expect(JSON.parse(s.stdout)).toMatchObject({ Architecture: arch });
    }

    const pull = await docker(['pull', ref]);
    expect(pull.code, pull.stderr).toBe(0);
    const run = await docker(['run', '--rm', ref, 'cat', '/arch', '/built-on']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('amd64\nx86_64\n');
    await docker(['rmi', ref]);
  });

  it('type=local and type=tar: one directory per platform, named as BuildKit names them', () => {
    const ctx = context('local', crossDockerfile('scratch'));
    const dest = path.join(dir, 'local-out');
    const tar = path.join(dir, 'fs.tar');
    const r = build(['--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-o', `type=local,dest=${dest}`, '-o', `type=tar,dest=${tar}`, ctx]);
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    expect(readdirSync(dest).sort()).toEqual(['linux_amd64', 'linux_arm64']);
    expect(readFileSync(path.join(dest, 'linux_amd64', 'arch'), 'utf8')).toBe('amd64\n');
    expect(readFileSync(path.join(dest, 'linux_arm64', 'arch'), 'utf8')).toBe('arm64\n');
    const list = spawnSync('tar', ['-tf', tar], { encoding: 'utf8' });
    expect(list.status).toBe(0);
    expect(
      list.stdout
        .split('\n')
        .filter((l) => l.endsWith('arch'))
        .sort(),
    ).toEqual(['./linux_amd64/arch', './linux_arm64/arch']);
    expect(spawnSync('tar', ['-xOf', tar, './linux_arm64/arch'], { encoding: 'utf8' }).stdout).toBe('arm64\n');
  });

  it('with SOURCE_DATE_EPOCH two --no-cache builds give the same index, dated the epoch', () => {
    const ctx = context(
      'epoch',
      [
        'FROM --platform=$BUILDPLATFORM busybox AS build',
        'ARG TARGETARCH',
        'RUN echo "$TARGETARCH" > /arch',
        'FROM scratch',
        'COPY --from=build /arch /',
        '',
      ].join('\n'),
    );
    const digests: string[] = [];
    for (const n of [1, 2]) {
      const out = path.join(dir, `epoch${n}.tar`);
      const r = kiln(
        ['build', '--root', root, '--progress', 'quiet', '--no-cache', '--platform', 'linux/amd64,linux/arm64', '-o', `type=oci,dest=${out}`, ctx],
        {
          env: { ...env, SOURCE_DATE_EPOCH: '1700000000' },
        },
      );
      expect(r.code, r.stderr).toBe(0);
      digests.push(r.stdout.trim());
      const top = JSON.parse(spawnSync('tar', ['-xOf', out, 'index.json'], { encoding: 'utf8' }).stdout) as {
        manifests: { digest: string; annotations?: Record<string, string> }[];
      };
      expect(top.manifests[0]!.digest).toBe(digests[n - 1]);
      expect(top.manifests[0]!.annotations).toEqual({ 'org.opencontainers.image.created': '2023-11-14T22:13:20Z' });
    }
    expect(digests[0]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(digests[1]).toBe(digests[0]);
  });

  it("type=docker and --load are refused before anything is built, with BuildKit's message", () => {
    const ctx = context('docker', crossDockerfile('scratch'));
    for (const flags of [['--load'], ['-o', `type=docker,dest=${path.join(dir, 'd.tar')}`]]) {
      const r = build(['--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', ...flags, ctx]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('ERROR: docker exporter does not currently support exporting manifest lists (--platform linux/amd64,linux/arm64)');
      expect(r.stderr).not.toContain('RUN');
    }
  });
});

describe('a RUN for a platform this host cannot execute', () => {
  it.skipIf(emulatorRegistered('arm64'))('one platform failing stops the others at once, leaving no mount or container behind', () => {
    const ctx = context('fail-fast', `FROM ${multiBase}\nRUN sleep 40; echo slept\n`);
    const started = Date.now();
    const r = build(['--progress', 'plain', '--platform', 'linux/amd64,linux/arm64', '-o', `type=local,dest=${path.join(dir, 'fail-fast-out')}`, ctx]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERROR: Dockerfile:2: RUN sleep 40; echo slept: cannot run linux/arm64 binaries on linux/amd64');
    // The amd64 RUN was cancelled, not waited for.
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(r.stderr).not.toMatch(/^#\d+ [\d.]+ slept$/m);
    expect(mountsUnder(root)).toEqual([]);
    expect(processesMentioning(root)).toEqual([]);
    // The root is usable: the amd64 platform alone builds.
    const ok = build([
      '--progress',
      'plain',
      '--platform',
      'linux/amd64',
      '-o',
      `type=local,dest=${path.join(dir, 'fail-fast-ok')}`,
      context('fail-fast-ok', `FROM ${multiBase}\nRUN echo ok > /ok\n`),
    ]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it("a single-platform base of this machine's platform: BuildKit's InvalidBaseImagePlatform warning, and the RUN runs", () => {
    // The test registry's busybox is amd64 only: asked for arm64, the registry has nothing else.
    const ctx = context('single-base', 'FROM busybox\nRUN uname -m > /m\n');
    const r = build(['--progress', 'plain', '--platform', 'linux/arm64', '-o', `type=local,dest=${path.join(dir, 'single-base-out')}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      'WARN: InvalidBaseImagePlatform: Base image busybox was pulled with platform "linux/amd64", expected "linux/arm64" for current build (Dockerfile line 1)',
    );
    expect(readFileSync(path.join(dir, 'single-base-out', 'm'), 'utf8')).toBe('x86_64\n');
  });

  it('fails naming the platform and the Dockerfile line, unless an emulator is registered', () => {
    const ctx = context('foreign', `FROM ${multiBase}\nRUN echo hello > /greeting\n`);
    const r = build(['--progress', 'plain', '--platform', 'linux/arm64', '-o', `type=local,dest=${path.join(dir, 'foreign-out')}`, ctx]);
    if (emulatorRegistered('arm64')) {
      // qemu-user registered on this host: the step runs through it.
      expect(r.code, r.stderr).toBe(0);
      return;
    }
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERROR: Dockerfile:2: RUN echo hello > /greeting: cannot run linux/arm64 binaries on linux/amd64 (no emulator registered)');
    // The same Dockerfile for this machine's platform builds.
    const ok = build(['--progress', 'plain', '--platform', 'linux/amd64', '-o', `type=local,dest=${path.join(dir, 'native-out')}`, ctx]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(readFileSync(path.join(dir, 'native-out', 'greeting'), 'utf8')).toBe('hello\n');
  });
});
