// Image output options and provenance through a kiln daemon: the options travel in the request, the
// archive comes back to the client, and secrets stay out of the attestation as in embedded mode.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killStarted, kilnClient, makeContext, startDaemon, tempDir, type DaemonProc } from '../helpers/daemon.js';
import { readOciArchive } from '../e2e/harness/image-archive.js';
import { readTar } from '../e2e/harness/tar.js';

const cleanup: string[] = [];
afterAll(async () => {
  await killStarted();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

describe('kiln daemon: image output options and provenance', () => {
  let d: DaemonProc;
  beforeAll(async () => {
    d = await startDaemon();
    cleanup.push(path.dirname(d.socket));
  });
  afterAll(async () => {
    expect(await d.stop()).toBe(0);
  });

  it("zstd at a level, annotations and a max provenance come back in the client's archive, without the secret", async () => {
    const c = makeContext({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=s cat /run/secrets/s | wc -c > /len\n' });
    const out = tempDir('kiln-out-');
    cleanup.push(c, out);
    const secret = path.join(out, 'secret.txt');
    fs.writeFileSync(secret, 'daemon-secret-5e2b\n');
    const archive = path.join(out, 'img.tar');
    const r = await kilnClient([
      'build',
      '--addr',
      d.addr,
      '--progress',
      'plain',
      '--secret',
      `id=s,src=${secret}`,
      '--provenance',
      'mode=max',
      '--annotation',
      'index:org.opencontainers.image.vendor=kiln',
      '-o',
      `type=oci,dest=${archive},name=daemon-outputs:1,compression=zstd,compression-level=9`,
      c,
    ]);
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    const img = await readOciArchive(archive);
    expect(img.layers.length).toBe(2);
    const blobs = new Map<string, Buffer>();
    let indexJson: { manifests: { digest: string }[] } | undefined;
    for (const { header, body } of await readTar(archive, archive)) {
      if (header.name === 'index.json') indexJson = JSON.parse(body.toString('utf8'));
      const m = /^blobs\/sha256\/(\w{64})$/.exec(header.name);
      if (m) blobs.set(`sha256:${m[1]}`, body);
    }
    const index = JSON.parse(blobs.get(indexJson!.manifests[0]!.digest)!.toString('utf8'));
    expect(index.annotations).toEqual({ 'org.opencontainers.image.vendor': 'kiln' });
    const manifest = JSON.parse(blobs.get(index.manifests[0].digest)!.toString('utf8'));
    expect(manifest.layers[1].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+zstd');
    const att = JSON.parse(blobs.get(index.manifests[1].digest)!.toString('utf8'));
    const statement = JSON.parse(blobs.get(att.layers[0].digest)!.toString('utf8'));
    expect(statement.predicate.buildDefinition.externalParameters.request.secrets).toEqual([{ id: 's', optional: true }]);
    for (const b of blobs.values()) expect(b.includes('daemon-secret-5e2b')).toBe(false);
  });
});
