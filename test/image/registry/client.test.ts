import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ContentStore } from '../../../src/cache/content-store.js';
import { RegistryClient, RegistryError, type TransferEvent } from '../../../src/image/registry/index.js';
import { MediaType, parsePlatform, type Descriptor } from '../../../src/oci/index.js';
import { freePort, makeImage, makeIndex, startRegistry, tempDir, type RunningRegistry } from './helpers.js';

let reg: RunningRegistry;
let work: string;
let src: ContentStore; // where test images are built

beforeAll(async () => {
  reg = await startRegistry();
  work = await tempDir('kiln-regclient-');
  src = new ContentStore(path.join(work, 'src'));
});
afterAll(async () => {
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

function collect(): { events: TransferEvent[]; onEvent: (e: TransferEvent) => void; kinds: () => string[] } {
  const events: TransferEvent[] = [];
  return { events, onEvent: (e) => events.push(e), kinds: () => events.map((e) => e.kind) };
}

const amd64 = parsePlatform('linux/amd64');

describe('registry client against docker-registry', () => {
  it('pushes an image, then pulls it into an empty store verified', async () => {
    const img = await makeImage(src, amd64, { 'hello.txt': 'hello from kiln\n' });
    const client = new RegistryClient();
    const ev = collect();
    const pushed = await client.push(`${reg.host}/test/hello:v1`, img, src, { onEvent: ev.onEvent });
    expect(pushed.digest).toBe(img.digest);
    expect(ev.kinds().sort()).toEqual(['manifest', 'uploaded', 'uploaded']);

    const dst = new ContentStore(path.join(work, 'pull1'));
    const pullEv = collect();
    const image = await new RegistryClient().pull(`${reg.host}/test/hello:v1`, dst, { onEvent: pullEv.onEvent, platform: amd64 });
    expect(image.digest).toBe(img.digest);
    expect(image.manifestDigest).toBe(img.digest);
    expect(image.index).toBeUndefined();
    expect(image.config.rootfs.diff_ids).toHaveLength(1);
    expect(image.platform).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(image.source).toBe(`http://${reg.host}`);
    expect(pullEv.kinds()).toEqual(['downloaded']);
    for (const d of [img.digest, image.manifest.config.digest, image.manifest.layers[0]!.digest]) {
      expect(await dst.has(d)).toBe(true);
      expect((await dst.readBuffer(d)).equals(await src.readBuffer(d))).toBe(true);
    }
    // Pulling again downloads nothing.
    const again = collect();
    await new RegistryClient().pull(`${reg.host}/test/hello:v1`, dst, { onEvent: again.onEvent, platform: amd64 });
    expect(again.kinds()).toEqual(['cached']);
    // Resolving by digest gives the same answer.
    const byDigest = await client.resolve(`${reg.host}/test/hello@${img.digest}`, { platform: amd64 });
    expect(byDigest.manifestDigest).toBe(img.digest);
  });

  it('skips blobs the registry already has on a second push', async () => {
    const img = await makeImage(src, amd64, { 'twice.txt': 'pushed twice' });
    const first = collect();
    await new RegistryClient().push(`${reg.host}/test/twice:1`, img, src, { onEvent: first.onEvent });
    expect(first.kinds().filter((k) => k === 'uploaded')).toHaveLength(2);
    const second = collect();
    await new RegistryClient().push(`${reg.host}/test/twice:2`, img, src, { onEvent: second.onEvent });
    expect(second.kinds().sort()).toEqual(['exists', 'exists', 'manifest']);
  });

  it('mounts blobs across repositories of one registry', async () => {
    const img = await makeImage(src, amd64, { 'shared.txt': 'mount me' });
    const client = new RegistryClient();
    await client.push(`${reg.host}/team/base:1`, img, src);
    // The same client remembers where it pushed the blobs.
    const ev = collect();
    await client.push(`${reg.host}/team/app:1`, img, src, { onEvent: ev.onEvent });
    const mounted = ev.events.filter((e) => e.kind === 'mounted');
    expect(mounted).toHaveLength(2);
    expect(mounted.every((e) => e.kind === 'mounted' && e.from === 'team/base')).toBe(true);
    // A fresh client learns it from a hint.
    const hinted = collect();
    const manifest = JSON.parse((await src.readBuffer(img.digest)).toString());
    const mountFrom: Record<string, string[]> = {};
    for (const b of [manifest.config, ...manifest.layers] as Descriptor[]) mountFrom[b.digest] = ['no/such-repo', 'team/base'];
    await new RegistryClient().push(`${reg.host}/team/other:1`, img, src, { onEvent: hinted.onEvent, mountFrom });
    expect(hinted.kinds().sort()).toEqual(['manifest', 'mounted', 'mounted']);
    // The mounted image pulls.
    const dst = new ContentStore(path.join(work, 'pull-mounted'));
    const image = await new RegistryClient().pull(`${reg.host}/team/other:1`, dst, { platform: amd64 });
    expect(image.digest).toBe(img.digest);
  });

  it('pushes an index of several platforms and pulls the right one for each', async () => {
    const plats = ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/arm/v6'].map(parsePlatform);
    const manifests: Descriptor[] = [];
    for (const p of plats) manifests.push(await makeImage(src, p, { 'arch.txt': `${p.architecture}${p.variant ?? ''}` }));
    const index = await makeIndex(src, manifests);
    const client = new RegistryClient();
    const pushed = await client.push(`${reg.host}/multi/app:v1`, index, src);
    expect(pushed.digest).toBe(index.digest);

    const cases: [string, number][] = [
      ['linux/amd64', 0],
      ['linux/x86_64', 0],
      ['linux/aarch64', 1],
      ['linux/arm64/v8', 1],
      ['linux/arm', 2],
      ['linux/arm/v6', 3],
    ];
    for (const [spec, i] of cases) {
      const dst = new ContentStore(path.join(work, `multi-${spec.replaceAll('/', '-')}`));
      const image = await new RegistryClient().pull(`${reg.host}/multi/app:v1`, dst, { platform: parsePlatform(spec) });
      expect(image.digest, spec).toBe(index.digest);
      expect(image.manifestDigest, spec).toBe(manifests[i]!.digest);
      expect(image.index?.manifests).toHaveLength(4);
      expect(image.platform, spec).toEqual(plats[i]);
      expect(await dst.has(index.digest)).toBe(true);
      const layer = await dst.readBuffer(image.manifest.layers[0]!.digest);
      expect(layer.equals(await src.readBuffer(image.manifest.layers[0]!.digest))).toBe(true);
    }
    await expect(client.resolve(`${reg.host}/multi/app:v1`, { platform: parsePlatform('linux/s390x') })).rejects.toThrow(
      /no manifest for platform linux\/s390x .*it has: linux\/amd64, linux\/arm64, linux\/arm\/v7, linux\/arm\/v6/,
    );
  });

  it('resolves a tag again with one request when the store holds what it names by digest', async () => {
    const plats = ['linux/amd64', 'linux/arm64'].map(parsePlatform);
    const manifests: Descriptor[] = [];
    for (const p of plats) manifests.push(await makeImage(src, p, { 'x.txt': `again ${p.architecture}` }));
    const index = await makeIndex(src, manifests);
    await new RegistryClient().push(`${reg.host}/again/app:v1`, index, src);
    // A proxy in front of the registry counts what the client asks.
    const asked: string[] = [];
    const proxy = http.createServer((req, res) => {
      asked.push(`${req.method} ${req.url}`);
      const [host, port] = reg.host.split(':');
      const up = http.request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const at = `127.0.0.1:${(proxy.address() as { port: number }).port}/again/app:v1`;
    try {
      const store = new ContentStore(path.join(work, 'again'));
      const first = await new RegistryClient().resolve(at, { platform: amd64, store });
      const fetched = asked.filter((a) => !a.endsWith('/v2/'));
      expect(fetched).toHaveLength(3); // the index by tag, the manifest and the config by digest
      asked.length = 0;
      const second = await new RegistryClient().resolve(at, { platform: amd64, store });
      expect(asked.filter((a) => !a.endsWith('/v2/'))).toEqual(['GET /v2/again/app/manifests/v1']);
      expect(second).toEqual(first);
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });

  it('handles Docker schema 2 manifests and manifest lists', async () => {
    const a = await makeImage(src, amd64, { 'd.txt': 'docker amd64' }, { docker: true });
    const b = await makeImage(src, parsePlatform('linux/arm64'), { 'd.txt': 'docker arm64' }, { docker: true });
    const list = await makeIndex(src, [a, b], { docker: true });
    await new RegistryClient().push(`${reg.host}/docker/list:1`, list, src);
    const dst = new ContentStore(path.join(work, 'docker-list'));
    const image = await new RegistryClient().pull(`${reg.host}/docker/list:1`, dst, { platform: parsePlatform('linux/arm64') });
    expect(image.mediaType).toBe(MediaType.dockerManifestList);
    expect(image.manifestDigest).toBe(b.digest);
    expect(image.manifestDescriptor.mediaType).toBe(MediaType.dockerManifest);
    expect(image.manifest.layers[0]!.mediaType).toBe(MediaType.dockerLayerGzip);
    const single = await new RegistryClient().resolve(`${reg.host}/docker/list@${a.digest}`);
    expect(single.mediaType).toBe(MediaType.dockerManifest);
    expect(single.platform).toEqual(amd64);
  });

  it('uploads large blobs in chunks', async () => {
    const big = randomBytes(300 * 1024); // incompressible: the gzip layer stays > 4 chunks
    const img = await makeImage(src, amd64, { 'big.bin': big });
    const ev = collect();
    await new RegistryClient({ chunkSize: 64 * 1024 }).push(`${reg.host}/test/chunked:1`, img, src, { onEvent: ev.onEvent });
    const uploads = ev.events.filter((e) => e.kind === 'uploaded');
    expect(uploads.some((e) => e.kind === 'uploaded' && e.chunks === 5)).toBe(true); // 300 KiB + tar/gzip overhead in 64 KiB chunks
    const dst = new ContentStore(path.join(work, 'chunked'));
    const image = await new RegistryClient().pull(`${reg.host}/test/chunked:1`, dst, { platform: amd64 });
    expect((await dst.readBuffer(image.manifest.layers[0]!.digest)).equals(await src.readBuffer(image.manifest.layers[0]!.digest))).toBe(true);
  });

  it('rejects a blob whose content does not match its digest, naming registry, repository and digest', async () => {
    const img = await makeImage(src, amd64, { 'victim.txt': 'the registry will serve corrupted bytes' });
    await new RegistryClient().push(`${reg.host}/test/corrupt:1`, img, src);
    const manifest = JSON.parse((await src.readBuffer(img.digest)).toString());
    const layer = manifest.layers[0] as Descriptor;
    // Corrupt the stored blob in place, same length, behind the registry's back.
    const data = reg.blobDataPath(layer.digest);
    const bytes = await fs.readFile(data);
    bytes[bytes.length - 5] ^= 0xff;
    await fs.writeFile(data, bytes);

    const dst = new ContentStore(path.join(work, 'corrupt'));
    const client = new RegistryClient();
    const err = await client.pull(`${reg.host}/test/corrupt:1`, dst, { platform: amd64 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as Error).message).toContain(`registry ${reg.host} repository test/corrupt: blob ${layer.digest}`);
    expect((err as Error).message).toMatch(/digest mismatch/);
    expect(await dst.has(layer.digest)).toBe(false);
    expect(await fs.readdir(path.join(dst.root, 'ingest'))).toEqual([]);
  });

  it('says which registry and repository a missing manifest was looked for in', async () => {
    await expect(new RegistryClient().resolve(`${reg.host}/test/nothing:here`)).rejects.toThrow(
      new RegExp(`registry ${reg.host} repository test/nothing: manifest here: HTTP 404.*MANIFEST_UNKNOWN`),
    );
    const dead = await freePort();
    await expect(new RegistryClient().resolve(`127.0.0.1:${dead}/x/y:z`)).rejects.toThrow(
      `registry 127.0.0.1:${dead} repository x/y: GET http://127.0.0.1:${dead}/v2/x/y/manifests/z: ECONNREFUSED`,
    );
  });

  it('stops when the caller aborts', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(new RegistryClient().resolve(`${reg.host}/test/hello:v1`, { signal: ac.signal })).rejects.toThrow(/abort/i);
  });

  it('pulls Docker Hub names through a mirror and falls back to the upstream', async () => {
    const img = await makeImage(src, amd64, { 'hub.txt': 'from the mirror' });
    // The test registry plays both the mirror and "Docker Hub"; nothing leaves the machine.
    await new RegistryClient({ dockerHubEndpoint: `http://${reg.host}` }).push('mirrored/app:1', img, src);
    await new RegistryClient({ dockerHubEndpoint: `http://${reg.host}` }).push('alpine-like:1', img, src);
    const deadMirror = `http://127.0.0.1:${await freePort()}`;
    const deadHub = `http://127.0.0.1:${await freePort()}`;

    const viaMirror = await new RegistryClient({ mirrors: [deadMirror, `http://${reg.host}`], dockerHubEndpoint: deadHub }).resolve('mirrored/app:1', {
      platform: amd64,
    });
    expect(viaMirror.source).toBe(`http://${reg.host}`);
    expect(viaMirror.digest).toBe(img.digest);
    const official = await new RegistryClient({ mirrors: [`http://${reg.host}`], dockerHubEndpoint: deadHub }).resolve('alpine-like:1', { platform: amd64 });
    expect(official.reference).toMatchObject({ domain: 'docker.io', path: 'library/alpine-like' });

    const dst = new ContentStore(path.join(work, 'upstream'));
    const viaUpstream = await new RegistryClient({ mirrors: [deadMirror], dockerHubEndpoint: `http://${reg.host}` }).pull('mirrored/app:1', dst, {
      platform: amd64,
    });
    expect(viaUpstream.source).toBe(`http://${reg.host}`);
    expect(await dst.has(viaUpstream.manifest.layers[0]!.digest)).toBe(true);

    await expect(new RegistryClient({ mirrors: [deadMirror], dockerHubEndpoint: deadHub }).resolve('mirrored/app:1')).rejects.toThrow(
      /registry docker\.io repository mirrored\/app: .*ECONNREFUSED.*after mirror failures/,
    );
  });
});
