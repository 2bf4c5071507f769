// One image of an OCI layout into the store (a named build context oci-layout://): which descriptor
// is taken, and that a layout's links cannot make kiln read files of the host.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContentStore } from '../../src/cache/content-store.js';
import { findLayoutImage, importLayoutImage, layoutBlobPaths } from '../../src/image/importer.js';

let work: string;
beforeEach(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-layout-'));
});
afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A layout with one image (config + one layer), tagged `tag`; returns its descriptors. */
function makeLayout(dir: string, tag = 'v1') {
  fs.mkdirSync(path.join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (body: string | Buffer) => {
    const d = sha(body);
    fs.writeFileSync(path.join(dir, 'blobs', 'sha256', d.slice(7)), body);
    return { digest: d, size: Buffer.byteLength(body) };
  };
  const layer = put(Buffer.from('not really a tar, never unpacked here'));
  const config = put(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [layer.digest] } }));
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  });
  const m = put(manifest);
  const desc = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': tag } };
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [desc] }));
  fs.writeFileSync(path.join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  return { manifest: m, config, layer, manifestText: manifest };
}

describe('importLayoutImage', () => {
  it('takes the image by tag, by digest, or the only one; lists its blobs', async () => {
    const dir = path.join(work, 'layout');
    const l = makeLayout(dir);
    expect((await findLayoutImage(dir, { tag: 'v1' })).digest).toBe(l.manifest.digest);
    expect((await findLayoutImage(dir, { tag: 'other' })).digest).toBe(l.manifest.digest); // the only one
    expect((await findLayoutImage(dir, { tag: 'latest', digest: l.manifest.digest })).digest).toBe(l.manifest.digest);
    await expect(findLayoutImage(dir, { tag: 'v1', digest: sha('nothing') })).rejects.toThrow(/has no blob/);
    expect((await layoutBlobPaths(dir, await findLayoutImage(dir, { tag: 'v1' }))).sort()).toEqual(
      [l.manifest, l.config, l.layer].map((b) => `blobs/sha256/${b.digest.slice(7)}`).sort(),
    );
    const store = new ContentStore(path.join(work, 'store'));
    const got = await importLayoutImage(store, dir, { tag: 'v1' });
    expect(got.digest).toBe(l.manifest.digest);
    for (const b of [l.manifest, l.config, l.layer]) expect(await store.has(b.digest as never)).toBe(true);
  });

  it('never follows a blob link out of the layout', async () => {
    const dir = path.join(work, 'layout');
    const l = makeLayout(dir);
    // The layer blob becomes a link to a file of the host with the very content it must have.
    const outside = path.join(work, 'host-file');
    fs.renameSync(path.join(dir, 'blobs', 'sha256', l.layer.digest.slice(7)), outside);
    fs.symlinkSync(outside, path.join(dir, 'blobs', 'sha256', l.layer.digest.slice(7)));
    const store = new ContentStore(path.join(work, 'store'));
    await expect(importLayoutImage(store, dir, { tag: 'v1' })).rejects.toThrow(/blob sha256:/);
    expect(await store.has(l.layer.digest as never)).toBe(false);
  });
});
