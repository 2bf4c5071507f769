// SOURCE_DATE_EPOCH and the build cache: inline cache rides in an image whose layers are clamped to
// the epoch, so its records must name those very layers, or a fresh root importing from the pushed
// image finds blobs the registry never got and runs every step again.
import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { testEnv } from '../helpers/env.js';
import { build, cachedSteps, kilnRoot, makeContext, ranSteps, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

describe('SOURCE_DATE_EPOCH with the build cache', () => {
  it('type=inline: the records name the clamped layers the pushed image holds; a fresh root imports them', async () => {
    const ctx = tracked(
      makeContext({ Dockerfile: 'FROM busybox\nRUN head -c 16 /dev/urandom | od -An -tx1 > /random\nCOPY app.txt /app.txt\n', 'app.txt': 'app\n' }),
    );
    const ref = `${testEnv().registry}/kiln-test/sde-inline:${randomBytes(4).toString('hex')}`;
    const buildArgs = { SOURCE_DATE_EPOCH: '1500000000' };
    const a = server(tracked(kilnRoot()));
    let first: Awaited<ReturnType<typeof build>>;
    try {
      first = await build(a, ctx, { buildArgs, cacheTo: [{ type: 'inline' }], outputs: [{ type: 'image', names: [ref], push: true }] });
    } finally {
      await a.close();
    }
    const b = server(tracked(kilnRoot()));
    try {
      const second = await build(b, ctx, { buildArgs, cacheFrom: [{ type: 'registry', ref }], cacheTo: [{ type: 'inline' }] });
      expect(second.events.filter((e) => e.type === 'message' && e.level === 'warning')).toEqual([]);
      expect(ranSteps(second).filter((n) => n.includes('RUN'))).toEqual([]);
      expect(cachedSteps(second).some((n) => n.includes('RUN head'))).toBe(true);
      // Same steps, same epoch: the same image (inline records and all), though the second root
      // never ran the RUN: the imported layers diff back to the same clamped blobs.
      expect(second.result.image!.id).toBe(first.result.image!.id);
    } finally {
      await b.close();
    }
  });

  it('type=inline: two fresh roots, seconds apart, make the same image (the records are dated the epoch too)', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo same > /same\n' }));
    const buildArgs = { SOURCE_DATE_EPOCH: '1500000000' };
    const ids: string[] = [];
    for (const pause of [0, 1500]) {
      await new Promise((r) => setTimeout(r, pause));
      const srv = server(tracked(kilnRoot()));
      try {
        const b = await build(srv, ctx, { buildArgs, cacheTo: [{ type: 'inline' }] });
        expect(ranSteps(b).filter((n) => n.includes('RUN'))).toHaveLength(1);
        ids.push(b.result.image!.id);
      } finally {
        await srv.close();
      }
    }
    expect(ids[1]).toBe(ids[0]);
  });

  it('GC knows the per-epoch layer records: du counts them with their step, prune removes them with it', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN head -c 300000 /dev/urandom > /junk\n' }));
    const srv = server(root);
    try {
      await build(srv, ctx, { buildArgs: { SOURCE_DATE_EPOCH: '1500000000' } });
      await build(srv, ctx, {});
      const layers = path.join(root, 'records', 'layers');
      const records = fs
        .readdirSync(layers)
        .filter((f) => f.endsWith('.json'))
        .sort();
      expect(records).toHaveLength(2);
      // No output asked for: the image is only named by its ID, so its layers are kept uncompressed.
      expect(records.filter((f) => f.endsWith('.none.sde1500000000.json'))).toHaveLength(1);
      // One step, two blobs of it (clamped and not), both deferred (an image kept in the store: its
      // uncompressed layers are made when read), so the step counts its snapshot only.
      const digests = records.map((f) => (JSON.parse(fs.readFileSync(path.join(layers, f), 'utf8')) as { descriptor: { digest: string } }).descriptor.digest);
      expect(new Set(digests).size).toBe(2);
      for (const d of digests) {
        expect(fs.existsSync(path.join(root, 'content', 'blobs', 'sha256', d.slice(7)))).toBe(false);
        expect(fs.existsSync(path.join(root, 'content', 'deferred', 'sha256', d.slice(7)))).toBe(true);
      }
      const du = await srv.diskUsage();
      const step = du.records.filter((r) => r.id.startsWith('step-'));
      expect(step).toHaveLength(1);
      expect(step[0]!.size).toBeGreaterThanOrEqual(300_000);
      expect(step[0]!.size).toBeLessThan(2 * 300_000);
      await srv.prune({ all: true });
      expect(fs.readdirSync(layers).filter((f) => f.endsWith('.json'))).toEqual([]);
      // Nothing named them: their notes went with the step, nothing was made.
      expect(fs.readdirSync(path.join(root, 'content', 'deferred', 'sha256'))).toEqual([]);
      for (const d of digests) expect(fs.existsSync(path.join(root, 'content', 'blobs', 'sha256', d.slice(7)))).toBe(false);
    } finally {
      await srv.close();
    }
  });
});
