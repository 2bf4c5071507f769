// Uncompressed layers of an image kept in kiln's store are deferred: hashed at build time, their
// tars made from the step snapshots only when something reads them (a save, a push, a prune that
// removes the snapshot). These tests build real images and read them back.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import type { Digest } from '../../src/oci/index.js';
import { openRoot } from '../../src/solver/root.js';
import { testEnv } from '../helpers/env.js';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

/** The non-empty layer records of a root: snapshot and blob digest. */
function layerRecords(root: string): Array<{ snapshot: string; digest: Digest }> {
  const dir = path.join(root, 'records', 'layers');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.none.json'))
    .map((f) => ({ snapshot: f.slice(0, -'.none.json'.length), rec: JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) }))
    .filter((r) => !r.rec.empty)
    .map((r) => ({ snapshot: r.snapshot, digest: r.rec.descriptor.digest as Digest }));
}

const blobFile = (root: string, d: Digest) => path.join(root, 'content', 'blobs', 'sha256', d.slice(7));
const noteFile = (root: string, d: Digest) => path.join(root, 'content', 'deferred', 'sha256', d.slice(7));

/** Every file of a tar stream by name, with the sha256 of its bytes. */
async function tarDigests(stream: Readable): Promise<Map<string, { digest: string; text?: string }>> {
  const out = new Map<string, { digest: string; text?: string }>();
  const ex = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, body, next) => {
      const h = createHash('sha256');
      const chunks: Buffer[] = [];
      body.on('data', (data: unknown) => {
        const c = data as Buffer;
        h.update(c);
        if ((header.size ?? 0) < 65536) chunks.push(c);
      });
      body.on('end', () => {
        out.set(header.name, { digest: `sha256:${h.digest('hex')}`, ...(chunks.length ? { text: Buffer.concat(chunks).toString() } : {}) });
        next();
      });
      body.on('error', reject);
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  stream.on('error', (err) => ex.destroy(err));
  stream.pipe(ex);
  await done;
  return out;
}

const DOCKERFILE = [
  'FROM busybox',
  'RUN mkdir -p /app/sub && echo one > /app/one && ln -s one /app/link && ln /app/one /app/hard && head -c 100000 /dev/urandom > /app/sub/rand',
  'COPY greeting.txt /app/greeting.txt',
  'CMD ["cat", "/app/one"]',
  '',
].join('\n');

describe('deferred layers of an image kept in the store', () => {
  it('are only hashed at build time, and a save makes them: the bytes its diff IDs name', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: DOCKERFILE, 'greeting.txt': 'hello\n' }));
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs: [{ type: 'image', names: ['defer/one:1'], push: false }] });
      const recs = layerRecords(root);
      expect(recs).toHaveLength(2); // the RUN and the COPY
      for (const r of recs) {
        expect(fs.existsSync(blobFile(root, r.digest)), r.digest).toBe(false);
        expect(fs.existsSync(noteFile(root, r.digest)), r.digest).toBe(true);
      }

      const files = await tarDigests(await srv.saveImages(['defer/one:1']));
      const manifest = JSON.parse(files.get('manifest.json')!.text!) as Array<{ Config: string; Layers: string[] }>;
      const config = JSON.parse(files.get(manifest[0]!.Config)!.text!) as { rootfs: { diff_ids: string[] } };
      const layerDigests = manifest[0]!.Layers.map((l) => files.get(l)!.digest);
      // The build's layers (the base's comes compressed, as pulled) are in the archive uncompressed,
      // hashing to their diff IDs.
      expect(layerDigests.slice(1)).toEqual(config.rootfs.diff_ids.slice(1));
      expect(config.rootfs.diff_ids.slice(1).sort()).toEqual(recs.map((r) => r.digest).sort());
      for (const r of recs) {
        expect(config.rootfs.diff_ids).toContain(r.digest);
        expect(fs.existsSync(blobFile(root, r.digest)), r.digest).toBe(true);
        expect(fs.existsSync(noteFile(root, r.digest)), r.digest).toBe(false);
      }
      // A rebuild from the cache gives the same image.
      const again = await build(srv, ctx, { outputs: [{ type: 'image', names: ['defer/one:1'], push: false }] });
      expect(again.result.image?.id).toBe(`sha256:${createHash('sha256').update(files.get(manifest[0]!.Config)!.text!).digest('hex')}`);
    } finally {
      await srv.close();
    }
  });

  it('a layer whose snapshot is gone cannot be made, and says which', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo gone > /gone\n' }));
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs: [{ type: 'image', names: ['defer/gone:1'], push: false }] });
    } finally {
      await srv.close();
    }
    const [rec] = layerRecords(root);
    expect(rec).toBeDefined();
    const s = await openRoot(root, { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 1 });
    try {
      await s.snapshotter.remove(rec!.snapshot);
      await expect(s.store.readBuffer(rec!.digest)).rejects.toThrow(
        new RegExp(`making deferred content ${rec!.digest}.*snapshot ${rec!.snapshot} it was made from is gone`),
      );
      expect(fs.existsSync(noteFile(root, rec!.digest))).toBe(true);
    } finally {
      await s.release();
    }
  });
});
