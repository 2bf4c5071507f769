// Garbage collection on real roots: images built with the real server from the test registry, then
// du and prune, and checks that what stays still works (named images run, rebuilds hit the cache).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildServer } from '../../src/server/server.js';
import { diskUsage, maybeCollect, prune, type DiskUsage } from '../../src/solver/gc.js';
import { openRoot, type RootServices } from '../../src/solver/root.js';
import type { Digest, Index, Manifest } from '../../src/oci/index.js';
import { testEnv } from '../helpers/env.js';
import { build, cachedSteps, kilnRoot, makeContext, ranSteps, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

const HOUR = 3_600_000;

async function withServices<T>(root: string, fn: (s: RootServices) => Promise<T>): Promise<T> {
  const s = await openRoot(root, { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 2 });
  try {
    return await fn(s);
  } finally {
    await s.release();
  }
}

/** `du -sx` of the root in bytes allocated: what the records must add up to. */
function duBytes(root: string): number {
  return Number(execFileSync('du', ['-sxB1', root], { encoding: 'utf8' }).split('\t')[0]);
}

const ids = (du: DiskUsage, pred: (r: DiskUsage['records'][number]) => boolean = () => true) =>
  du.records
    .filter(pred)
    .map((r) => r.id)
    .sort();
const steps = (du: DiskUsage) => ids(du, (r) => r.id.startsWith('step-'));

function blobsOf(root: string): Set<string> {
  return new Set(fs.readdirSync(path.join(root, 'content', 'blobs', 'sha256')));
}

/** The store stays usable: layer records point at blobs that exist, parents exist, named images are whole. */
async function checkConsistent(root: string): Promise<void> {
  await withServices(root, async (s) => {
    const layers = path.join(root, 'records', 'layers');
    for (const f of fs.existsSync(layers) ? fs.readdirSync(layers) : []) {
      if (!f.endsWith('.json')) continue;
      const rec = JSON.parse(fs.readFileSync(path.join(layers, f), 'utf8'));
      if (!rec.empty) expect(await s.store.has(rec.descriptor.digest), `${f} -> ${rec.descriptor.digest}`).toBe(true);
    }
    const snaps = await s.snapshotter.list();
    const names = new Set(snaps.map((i) => i.key));
    for (const i of snaps) if (i.parent) expect(names.has(i.parent), `${i.key}'s parent ${i.parent}`).toBe(true);
    for (const img of await s.images.list()) {
      const walk = async (d: Digest): Promise<void> => {
        expect(await s.store.has(d), `${img.name}: ${d}`).toBe(true);
        const doc = await s.store.readJSON<Partial<Index & Manifest>>(d);
        if (doc.manifests) for (const m of doc.manifests) if (await s.store.has(m.digest)) await walk(m.digest);
        if (doc.config) for (const l of [doc.config, ...(doc.layers ?? [])]) expect(await s.store.has(l.digest), `${img.name}: ${l.digest}`).toBe(true);
      };
      await walk(img.manifest.digest);
    }
  });
}

async function runCapture(srv: BuildServer, name: string) {
  let out = '';
  const code = await srv.runImage(name, { args: [], network: 'none', onStdout: (b) => (out += b.toString()), onStderr: (b) => (out += b.toString()) });
  return { code, out };
}

const NAMED =
  'FROM busybox\nRUN echo named > /msg\nRUN --mount=type=cache,target=/cache head -c 200000 /dev/urandom > /cache/junk && echo used > /used\nCMD ["cat", "/msg"]\n';
const unnamed = (tag: string, bytes = 300_000) => `FROM busybox\nRUN head -c ${bytes} /dev/urandom > /${tag}\n`;

describe('kiln du on a real root', () => {
  it('counts every byte once: the records add up to what the root takes on disk', async () => {
    const root = tracked(kilnRoot());
    const srv = server(root);
    try {
      await build(srv, tracked(makeContext({ Dockerfile: NAMED })), { outputs: [{ type: 'image', names: ['gc/named:1'], push: false }] });
      await build(srv, tracked(makeContext({ Dockerfile: unnamed('b') })));
      const du = await srv.diskUsage();
      const measured = duBytes(root);
      // Only the root lock and directory sizes may move between the two measurements.
      expect(Math.abs(du.totals.total - measured)).toBeLessThanOrEqual(16 * 1024);
      expect(du.totals.total).toBe(du.totals.shared + du.totals.private);

      const types = new Set(du.records.map((r) => r.type));
      for (const t of ['regular', 'internal', 'exec.cachemount', 'image', 'metadata']) expect(types, t).toContain(t);
      const image = du.records.find((r) => r.type === 'image')!;
      expect(image.reclaimable).toBe(false);
      expect(image.description).toContain('docker.io/gc/named:1');
      const mount = du.records.find((r) => r.type === 'exec.cachemount')!;
      expect(mount.size).toBeGreaterThanOrEqual(200_000);
      // The named image's steps share their layers with it; the unnamed build's step does not.
      const stepRecs = du.records.filter((r) => r.id.startsWith('step-'));
      expect(stepRecs.filter((r) => r.shared)).toHaveLength(2);
      expect(stepRecs.filter((r) => !r.shared)).toHaveLength(1);
      expect(stepRecs.find((r) => !r.shared)!.size).toBeGreaterThanOrEqual(300_000);
      expect(du.records.find((r) => r.id.startsWith('layer-'))!.type).toBe('internal');
      expect(du.totals.reclaimable).toBeGreaterThan(0);
      expect(du.totals.reclaimable).toBeLessThan(du.totals.total);
    } finally {
      await srv.close();
    }
  });
});

describe('kiln prune on a real root', () => {
  it('by default removes dangling cache only: the named image runs and rebuilds from the cache', async () => {
    const root = tracked(kilnRoot());
    const named = tracked(makeContext({ Dockerfile: NAMED }));
    const other = tracked(makeContext({ Dockerfile: unnamed('other') }));
    const srv = server(root);
    try {
      await build(srv, named, { outputs: [{ type: 'image', names: ['gc/named:1'], push: false }] });
      await build(srv, other);
      const before = await srv.diskUsage();
      const dangling = ids(before, (r) => r.id.startsWith('step-') && !r.shared);
      const sharedSteps = ids(before, (r) => r.id.startsWith('step-') && r.shared);
      expect(dangling).toHaveLength(1);

      const report = await srv.prune({});
      const gone = report.deleted.map((r) => r.id);
      expect(gone).toContain(dangling[0]);
      expect(gone.some((id) => id.startsWith('cachemount-'))).toBe(true);
      for (const id of [...sharedSteps, ...ids(before, (r) => r.id.startsWith('layer-'))]) expect(gone).not.toContain(id);
      expect(report.reclaimed).toBeGreaterThanOrEqual(300_000 + 200_000);

      const after = await srv.diskUsage();
      expect(steps(after)).toEqual(sharedSteps);
      expect(after.totals.total).toBeLessThanOrEqual(before.totals.total - report.reclaimed + 16 * 1024);
      expect(fs.existsSync(path.join(root, 'cache-mounts')) ? fs.readdirSync(path.join(root, 'cache-mounts')) : []).toEqual([]);
      // A second prune finds nothing left to take.
      expect((await srv.prune({})).deleted).toEqual([]);
    } finally {
      await srv.close();
    }
    await checkConsistent(root);

    const again = server(root);
    try {
      expect(await runCapture(again, 'gc/named:1')).toEqual({ code: 0, out: 'named\n' });
      const re = await build(again, named, { outputs: [{ type: 'image', names: ['gc/named:1'], push: false }] });
      expect(ranSteps(re)).toEqual([]);
      expect(cachedSteps(re)).toHaveLength(2);
      const reOther = await build(again, other);
      expect(ranSteps(reOther)).toHaveLength(1);
    } finally {
      await again.close();
    }
  });

  it('--all removes everything unused, yet the named image still runs from its blobs', async () => {
    const root = tracked(kilnRoot());
    const named = tracked(makeContext({ Dockerfile: NAMED }));
    const srv = server(root);
    try {
      await build(srv, named, { outputs: [{ type: 'image', names: ['gc/named:1'], push: false }] });
      await build(srv, tracked(makeContext({ Dockerfile: unnamed('other') })));
      const before = await srv.diskUsage();
      const image = before.records.find((r) => r.type === 'image')!;
      const report = await srv.prune({ all: true });
      expect(report.deleted.map((r) => r.id).sort()).toEqual(ids(before, (r) => r.reclaimable && !r.inUse));
      const after = await srv.diskUsage();
      expect(after.records.filter((r) => r.type !== 'metadata' && r.type !== 'tmp' && r.type !== 'image')).toEqual([]);
      // The image's layers were deferred (made from their steps when read): the prune made them
      // before removing the steps, so the image now holds their bytes itself.
      expect(after.records.find((r) => r.type === 'image')!.size).toBeGreaterThan(image.size);
      expect(fs.readdirSync(path.join(root, 'content', 'deferred', 'sha256'))).toEqual([]);
      expect(fs.readdirSync(path.join(root, 'records', 'layers'))).toEqual([]);
      expect(Math.abs(after.totals.total - duBytes(root))).toBeLessThanOrEqual(16 * 1024);
    } finally {
      await srv.close();
    }
    await checkConsistent(root);
    const again = server(root);
    try {
      expect(await runCapture(again, 'gc/named:1')).toEqual({ code: 0, out: 'named\n' });
      const re = await build(again, named, { outputs: [{ type: 'image', names: ['gc/named:1'], push: false }] });
      expect(ranSteps(re)).toHaveLength(2); // the cache went with --all
    } finally {
      await again.close();
    }
  });

  it('until= and --keep-storage go by last use: least recently used first, recent ones kept', async () => {
    const root = tracked(kilnRoot());
    const srv = server(root);
    const stepOf: Record<string, string> = {};
    const blobsOfBuild: Record<string, string[]> = {};
    const ctxs: Record<string, string> = {};
    try {
      for (const tag of ['x', 'y', 'z']) {
        const had = new Set(steps(await srv.diskUsage()));
        const hadBlobs = blobsOf(root);
        ctxs[tag] = tracked(makeContext({ Dockerfile: unnamed(tag) }));
        await build(srv, ctxs[tag]!);
        const now = steps(await srv.diskUsage()).filter((id) => !had.has(id));
        expect(now).toHaveLength(1);
        stepOf[tag] = now[0]!;
        blobsOfBuild[tag] = [...blobsOf(root)].filter((b) => !hadBlobs.has(b));
      }
    } finally {
      await srv.close();
    }
    // Last used 3, 2 and 1 hours ago: the steps (touch) and what their builds wrote (blob times).
    const ages: Record<string, number> = { x: 3, y: 2, z: 1 };
    await withServices(root, async (s) => {
      for (const tag of ['x', 'y', 'z']) {
        const at = new Date(Date.now() - ages[tag]! * HOUR);
        await s.snapshotter.touch(stepOf[tag]!, at);
        for (const b of blobsOfBuild[tag]!) fs.utimesSync(path.join(root, 'content', 'blobs', 'sha256', b), at, at);
      }
      expect((await s.snapshotter.stat(stepOf.x!)).usageCount).toBe(1);

      // until=150m: only x (3h) qualifies.
      const r1 = await prune(s, { unusedForMs: 150 * 60_000 }, new Set());
      expect(r1.deleted.map((r) => r.id)).toContain(stepOf.x);
      const left1 = steps(await diskUsage(s, new Set()));
      expect(left1).toEqual([stepOf.y, stepOf.z].sort());

      // Keep all but y's records: y (least recently used now) goes, z stays.
      const du = await diskUsage(s, new Set());
      const yRecs = du.records.filter((r) => r.id === stepOf.y || r.parents.includes(stepOf.y!));
      expect(yRecs.length).toBe(2); // the step and the unnamed image exported from it
      const keep = du.cacheSize - yRecs.reduce((n, r) => n + r.size, 0);
      const r2 = await prune(s, { keepStorage: keep }, new Set());
      expect(r2.deleted.map((r) => r.id).sort()).toEqual(yRecs.map((r) => r.id).sort());
      const after = await diskUsage(s, new Set());
      expect(steps(after)).toEqual([stepOf.z]);
      expect(after.cacheSize).toBeLessThanOrEqual(keep);
      // A limit above what is there removes nothing.
      expect((await prune(s, { keepStorage: after.cacheSize + 1 }, new Set())).deleted).toEqual([]);
    });
    await checkConsistent(root);
    const again = server(root);
    try {
      expect(ranSteps(await build(again, ctxs.z!))).toEqual([]);
      expect(ranSteps(await build(again, ctxs.x!))).toHaveLength(1);
    } finally {
      await again.close();
    }
  });

  it('never removes what a running build holds, nor what it stands on', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo one > /1\nRUN echo two > /2\n' }));
    const srv = server(root);
    const chain: string[] = [];
    try {
      await build(srv, ctx);
      await build(srv, tracked(makeContext({ Dockerfile: unnamed('other') })));
    } finally {
      await srv.close();
    }
    await withServices(root, async (s) => {
      const snaps = await s.snapshotter.list();
      // The top of the two-step chain: a step whose parent is a step.
      const top = snaps.find((i) => i.key.startsWith('step-') && i.parent?.startsWith('step-'))!;
      for (let k: string | undefined = top.key; k; k = snaps.find((i) => i.key === k)?.parent) chain.push(k);
      expect(chain.length).toBeGreaterThanOrEqual(3); // two steps and the base layer(s)
      const held = new Set([top.key]);
      const du = await diskUsage(s, held);
      for (const k of chain) expect(du.records.find((r) => r.id === k)!.inUse, k).toBe(true);

      const report = await prune(s, { all: true }, held);
      const gone = report.deleted.map((r) => r.id);
      for (const k of chain) expect(gone).not.toContain(k);
      expect(gone.some((id) => id.startsWith('step-'))).toBe(true); // the other build's step went
      const left = (await s.snapshotter.list()).map((i) => i.key).sort();
      expect(left).toEqual([...chain].sort());
      // Its layer record and blob stay with it.
      const rec = JSON.parse(fs.readFileSync(path.join(root, 'records', 'layers', `${top.key}.none.json`), 'utf8'));
      expect(await s.store.has(rec.descriptor.digest)).toBe(true);

      // The automatic policy respects holds too, even with a limit of one byte.
      const auto = await maybeCollect(s, held, { enabled: true, keepStorage: 1 });
      for (const k of chain) expect(auto?.deleted.map((r) => r.id) ?? []).not.toContain(k);
      expect(await maybeCollect(s, held, { enabled: false, keepStorage: 1 })).toBeUndefined();
    });
    await checkConsistent(root);
    const again = server(root);
    try {
      expect(ranSteps(await build(again, ctx))).toEqual([]);
    } finally {
      await again.close();
    }
  });

  it('the daemon policy (gc-keep-storage) collects after builds, least recently used first', async () => {
    const root = tracked(kilnRoot());
    // First learn the sizes with collection off, then set a limit that fits the base and one build.
    const probe = server(root);
    let limit = 0;
    try {
      await build(probe, tracked(makeContext({ Dockerfile: unnamed('p', 400_000) })));
      const du = await probe.diskUsage();
      limit = du.cacheSize + 200_000; // room for the base and one build, not two
      await probe.prune({});
    } finally {
      await probe.close();
    }
    const srv = new BuildServer({
      root,
      config: { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 2, runLimits: {}, gc: { enabled: true, keepStorage: limit } },
    });
    try {
      const stepOf: string[] = [];
      for (const tag of ['a', 'b', 'c']) {
        const had = new Set(steps(await srv.diskUsage()));
        await build(srv, tracked(makeContext({ Dockerfile: unnamed(tag, 400_000) })));
        stepOf.push(...steps(await srv.diskUsage()).filter((id) => !had.has(id)));
        expect((await srv.diskUsage()).cacheSize).toBeLessThanOrEqual(limit);
      }
      // c was built last (its step is always there, just made); a and b, older, were collected.
      const left = steps(await srv.diskUsage());
      expect(left).toHaveLength(1);
      expect(stepOf.slice(-1)).toEqual(left);
    } finally {
      await srv.close();
    }
    await checkConsistent(root);
  });
});

describe('gc and a build in progress', () => {
  // A stage that finished early and is read later (COPY --from after a long RUN) is in no mount while
  // the RUN goes on: only the solver's held set keeps a prune from taking it.
  it('prune --all while a build runs leaves what the build will still read, and the build succeeds', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(
      makeContext({
        Dockerfile: 'FROM busybox AS dep\nRUN echo from-dep > /dep\nFROM busybox\nRUN echo started-sleep && sleep 2\nCOPY --from=dep /dep /dep\nRUN cat /dep\n',
      }),
    );
    const srv = server(root);
    try {
      // Something prunable besides the running build: an older, finished one.
      await build(srv, tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo old > /old\n' })));
      const running = build(srv, ctx);
      // Prune while the long RUN runs (the dep stage has finished by then).
      const bundles = path.join(root, 'executor', 'bundles');
      await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
          if (fs.existsSync(bundles) && fs.readdirSync(bundles).length > 0) {
            clearInterval(tick);
            setTimeout(resolve, 300);
          }
        }, 20);
      });
      const pruned = await srv.prune({ all: true });
      const b = await running;
      expect(b.logs).toContain('from-dep');
      // The finished build's step was prunable and went.
      expect(pruned.deleted.some((r) => r.id.startsWith('step-'))).toBe(true);
    } finally {
      await srv.close();
    }
  });
});
