// Reproducible images with SOURCE_DATE_EPOCH: two `--no-cache` builds of the same inputs on two fresh
// roots, seconds apart, give the same image (manifest, config and layer digests) through every output
// that carries one (OCI and docker archives, a registry push), and the daemon gives the same image as
// embedded mode. Without the epoch the same pair of builds differs (so the test proves the clock is in
// play), and another epoch gives another image even from a warm cache (the layer records are kept per
// epoch).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killStarted, kilnClient, request, startDaemon } from '../helpers/daemon.js';
import { testEnv, tmpDir } from '../helpers/env.js';
import { readDockerArchive, readOciArchive } from './harness/image-archive.js';
import { kilnBuild, writeKilnConfig } from './harness/kiln.js';
import { readTar } from './harness/tar.js';

const EPOCH = 1500000000; // 2017-07-14T02:40:00Z
const EPOCH_DATE = '2017-07-14T02:40:00Z';
const OLD = 1000000000; // a context file older than the epoch keeps its time

// Two stages, a RUN that writes files, COPY from the context and COPY --from; RUN sees the epoch
// only after an ARG names it, as in BuildKit.
const DOCKERFILE = `FROM busybox AS build
RUN mkdir -p /out/dir && echo built > /out/b.txt && touch /out/dir/f
FROM busybox
RUN echo "[$SOURCE_DATE_EPOCH]" > /before-arg
ARG SOURCE_DATE_EPOCH
COPY old.txt new.txt /app/
COPY --from=build /out/ /app/out/
RUN echo "[$SOURCE_DATE_EPOCH]" > /app/epoch && touch /app/newfile
WORKDIR /app/work
ENV X=1
`;

let work: string;
let context: string;
let config: string;
const repo = `kiln-sde-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  work = await tmpDir('kiln-sde-');
  context = join(work, 'ctx');
  config = await writeKilnConfig(work);
  mkdirSync(context);
  writeFileSync(join(context, 'Dockerfile'), DOCKERFILE);
  writeFileSync(join(context, 'old.txt'), 'old\n');
  writeFileSync(join(context, 'new.txt'), 'new\n');
  utimesSync(join(context, 'old.txt'), OLD, OLD);
});
afterAll(killStarted);

interface Digests {
  manifest: string;
  config: string;
  layers: string[];
}

/** The digests an OCI archive's index.json leads to, and the index's annotations. */
async function ociDigests(file: string): Promise<Digests & { annotations?: Record<string, string> }> {
  const files = new Map((await readTar(file, file)).map((e) => [e.header.name, e.body]));
  const index = JSON.parse(files.get('index.json')!.toString()) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
  const desc = index.manifests[0]!;
  const manifest = JSON.parse(files.get(`blobs/sha256/${desc.digest.slice(7)}`)!.toString()) as { config: { digest: string }; layers: { digest: string }[] };
  return { manifest: desc.digest, config: manifest.config.digest, layers: manifest.layers.map((l) => l.digest), annotations: desc.annotations };
}

/** manifest.json's config and layer paths of a docker archive. */
async function dockerBlobs(file: string): Promise<{ Config: string; Layers: string[] }> {
  const entry = (await readTar(file, file)).find((e) => e.header.name === 'manifest.json')!;
  const [m] = JSON.parse(entry.body.toString()) as { Config: string; Layers: string[] }[];
  return { Config: m!.Config, Layers: m!.Layers };
}

/** How many of an image's layers its base brought (the history entries kiln's frontend did not write). */
async function baseLayerCount(file: string): Promise<number> {
  const img = await readOciArchive(file);
  return (img.config.history ?? []).filter((h) => h.comment !== 'buildkit.dockerfile.v0' && !h.empty_layer).length;
}

const sha256 = (file: string) => 'sha256:' + createHash('sha256').update(readFileSync(file)).digest('hex');

/** One embedded build on `root` (fresh unless reused), every output that carries the image. */
async function build(name: string, root: string, env: Record<string, string>, extra: string[] = []) {
  const out = join(work, name);
  mkdirSync(out);
  const r = await kilnBuild({
    root,
    config,
    dockerfile: join(context, 'Dockerfile'),
    context,
    env,
    extra: [
      '--progress',
      'plain',
      '-o',
      `type=oci,dest=${out}/oci.tar`,
      '-o',
      `type=docker,dest=${out}/docker.tar,name=${repo}:${name}`,
      '-o',
      `type=image,name=${testEnv().registry}/${repo}:${name},push=true`,
      '-o',
      `type=tar,dest=${out}/fs.tar`,
      ...extra,
    ],
  });
  expect(r.stderr, r.stderr).not.toContain('ERROR');
  expect(r.code).toBe(0);
  return { out, oci: await ociDigests(join(out, 'oci.tar')), pushed: await pushedDigest(name) };
}

async function pushedDigest(tag: string): Promise<string> {
  const res = await fetch(`http://${testEnv().registry}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
  });
  expect(res.status).toBe(200);
  return res.headers.get('docker-content-digest')!;
}

/** The context directory as a tar (Docker's API takes the context so). */
function tarOf(dir: string): Buffer {
  const r = spawnSync('tar', ['-c', '-C', dir, '.'], { maxBuffer: 1 << 26 });
  expect(r.status).toBe(0);
  return r.stdout;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('SOURCE_DATE_EPOCH', () => {
  let a: Awaited<ReturnType<typeof build>>;
  let rootA: string;

  it('two --no-cache builds on two fresh roots, seconds apart, give the same image through every output', async () => {
    rootA = join(work, 'root-a');
    a = await build('a', rootA, { SOURCE_DATE_EPOCH: String(EPOCH) }, ['--no-cache']);
    // Context files newer than the epoch, and every file the builds write, would carry this time.
    utimesSync(join(context, 'new.txt'), new Date(), new Date());
    await sleep(2500);
    const b = await build('b', join(work, 'root-b'), { SOURCE_DATE_EPOCH: String(EPOCH) }, ['--no-cache']);

    expect(b.oci).toEqual(a.oci);
    expect(readFileSync(join(b.out, 'oci.tar'))).toEqual(readFileSync(join(a.out, 'oci.tar')));
    expect(a.oci.annotations).toEqual({ 'org.opencontainers.image.created': EPOCH_DATE });
    // gzip headers carry no time (nor anything else that varies): MTIME zero, OS Unix.
    const blobs = new Map((await readTar(join(a.out, 'oci.tar'), 'oci.tar')).map((e) => [e.header.name, e.body]));
    for (const l of a.oci.layers.slice(await baseLayerCount(join(a.out, 'oci.tar')))) {
      const head = blobs.get(`blobs/sha256/${l.slice(7)}`)!.subarray(0, 10);
      expect([...head]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, head[8], 3]);
    }
    // The registry holds one manifest under both tags: the OCI archive's.
    expect(a.pushed).toBe(a.oci.manifest);
    expect(b.pushed).toBe(a.pushed);
    // The docker archive (Docker media types, its own manifest; names differ): the same config and
    // layer blobs, and a valid archive.
    expect(await dockerBlobs(join(b.out, 'docker.tar'))).toEqual(await dockerBlobs(join(a.out, 'docker.tar')));
    expect((await dockerBlobs(join(a.out, 'docker.tar'))).Config).toBe(`blobs/sha256/${a.oci.config.slice(7)}`);
    await readDockerArchive(join(a.out, 'docker.tar'));
    // The filesystem tarball: every file dated the epoch (BuildKit's tar exporter), byte for byte.
    expect(sha256(join(b.out, 'fs.tar'))).toBe(sha256(join(a.out, 'fs.tar')));
    const fsEntries = await readTar(join(a.out, 'fs.tar'), 'fs.tar');
    expect(fsEntries.length).toBeGreaterThan(100);
    expect(fsEntries.filter((e) => e.header.mtime!.getTime() !== EPOCH * 1000).map((e) => e.header.name)).toEqual([]);
  });

  it('dates the config and the history the build adds at the epoch; clamps layer times; RUN sees it only with ARG', async () => {
    const img = await readOciArchive(join(a.out, 'oci.tar'));
    const cfg = img.config as typeof img.config & { created?: string };
    expect(cfg.created).toBe(EPOCH_DATE);
    const history = cfg.history!;
    const base = history.filter((h) => h.comment !== 'buildkit.dockerfile.v0');
    const own = history.filter((h) => h.comment === 'buildkit.dockerfile.v0');
    expect(base.length).toBeGreaterThan(0);
    expect(own.map((h) => h.created_by)).toEqual([
      'RUN /bin/sh -c echo "[$SOURCE_DATE_EPOCH]" > /before-arg # buildkit',
      `ARG SOURCE_DATE_EPOCH=${EPOCH}`,
      'COPY old.txt new.txt /app/ # buildkit',
      'COPY /out/ /app/out/ # buildkit',
      `RUN |1 SOURCE_DATE_EPOCH=${EPOCH} /bin/sh -c echo "[$SOURCE_DATE_EPOCH]" > /app/epoch && touch /app/newfile # buildkit`,
      'WORKDIR /app/work',
      'ENV X=1',
    ]);
    expect(own.every((h) => h.created === EPOCH_DATE)).toBe(true);

    // The build's layers (the base's come as pulled): no time after the epoch; older ones kept.
    const baseLayers = base.filter((h) => !h.empty_layer).length;
    const files = new Map<string, { mtime: number; body: Buffer }>();
    for (const layer of img.layers.slice(baseLayers)) {
      for (const e of await readTar(layer, 'layer')) {
        expect(e.header.mtime!.getTime() / 1000, e.header.name).toBeLessThanOrEqual(EPOCH);
        files.set(e.header.name.replace(/\/$/, ''), { mtime: e.header.mtime!.getTime() / 1000, body: e.body });
      }
    }
    expect(files.get('app/old.txt')?.mtime).toBe(OLD);
    expect(files.get('app/new.txt')?.mtime).toBe(EPOCH);
    expect(files.get('app/out/b.txt')?.mtime).toBe(EPOCH);
    expect(files.get('app/newfile')?.mtime).toBe(EPOCH);
    expect(files.get('app/work')?.mtime).toBe(EPOCH);
    expect(files.get('before-arg')?.body.toString()).toBe('[]\n');
    expect(files.get('app/epoch')?.body.toString()).toBe(`[${EPOCH}]\n`);
  });

  it('without the epoch the same two builds differ (the clock is in play); another epoch gives another image, even from the cache', async () => {
    const c = await build('c', join(work, 'root-c'), {}, ['--no-cache']);
    await sleep(1500);
    const d = await build('d', join(work, 'root-d'), {}, ['--no-cache']);
    expect(d.oci.config).not.toBe(c.oci.config);
    expect(d.oci.layers.slice(-3)).not.toEqual(c.oci.layers.slice(-3));
    expect(c.oci.annotations).toBeUndefined();

    // On A's root, cached: the steps are the same snapshots, their layers are not the same blobs.
    const other = await build('e', rootA, { SOURCE_DATE_EPOCH: String(EPOCH + 1) });
    expect(other.oci.config).not.toBe(a.oci.config);
    const baseLayers = await baseLayerCount(join(a.out, 'oci.tar'));
    expect(a.oci.layers.length - baseLayers).toBe(5);
    for (let i = baseLayers; i < a.oci.layers.length; i++) expect(other.oci.layers[i]).not.toBe(a.oci.layers[i]);
    const none = await build('f', rootA, {});
    for (let i = baseLayers; i < a.oci.layers.length; i++) expect([a.oci.layers[i], other.oci.layers[i]]).not.toContain(none.oci.layers[i]);
    // And the epoch's own record is still there: the first epoch again gives the first image.
    const again = await build('g', rootA, { SOURCE_DATE_EPOCH: String(EPOCH) });
    expect(again.oci).toEqual(a.oci);
  });

  it('through a daemon, the client environment dates the image as embedded mode does; a bad value is refused naming it', async () => {
    const dockerSock = join(work, 'docker.sock');
    const d = await startDaemon({ args: ['--docker-api', `unix://${dockerSock}`] });
    try {
      const out = join(work, 'daemon');
      const r = await kilnClient(
        ['build', '--addr', d.addr, '--no-cache', '--progress', 'plain', '-o', `type=oci,dest=${out}-oci.tar`, '-o', `type=local,dest=${out}-fs`, context],
        {
          env: { SOURCE_DATE_EPOCH: String(EPOCH) },
        },
      );
      expect(r.stderr, r.stderr).not.toContain('ERROR');
      expect(r.code).toBe(0);
      expect(await ociDigests(`${out}-oci.tar`)).toEqual(a.oci);
      // type=local: every file written at the epoch (BuildKit's local exporter).
      for (const p of ['app/newfile', 'app/old.txt', 'app/out/b.txt', 'bin']) expect(statSync(join(`${out}-fs`, p)).mtimeMs, p).toBe(EPOCH * 1000);

      const bad = await kilnClient(['build', '--addr', d.addr, context], { env: { SOURCE_DATE_EPOCH: 'yesterday' } });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('SOURCE_DATE_EPOCH=yesterday (environment): invalid SOURCE_DATE_EPOCH "yesterday": want a whole number of seconds');
      // A client that is not kiln's CLI (Docker's API) gets the frontend's error from the daemon.
      const api = await request(
        dockerSock,
        'POST',
        `/v1.41/build?buildargs=${encodeURIComponent(JSON.stringify({ SOURCE_DATE_EPOCH: '1.5' }))}`,
        tarOf(context),
        {
          'content-type': 'application/x-tar',
        },
      );
      const last = JSON.parse(api.body.trim().split('\n').at(-1)!) as { errorDetail?: { message: string } };
      expect(last.errorDetail?.message).toContain('invalid SOURCE_DATE_EPOCH "1.5": want a whole number of seconds');
    } finally {
      expect(await d.stop()).toBe(0);
    }
  });
});
