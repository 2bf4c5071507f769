// The regression check for a cached build: it may resolve the base image's tag and read the
// context's metadata, and nothing more. No worker pool starts, no file of the context is read for
// its content, no container runs, and nothing new lands in the root: no blob, no snapshot, no cache
// record. A change that makes the warm path do work again (a re-hash, an export that rewrites a
// layer, an eager pool) fails here by what it did, not by how long it took.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RACY_MS } from '../../src/cache/checksum.js';
import { BuildServer } from '../../src/server/server.js';
import { closePool, poolCounters, resetPoolCounters, workerModulePath } from '../../src/workers/pool.js';
import { testEnv } from '../helpers/env.js';
import { build, cachedSteps, kilnRoot, makeContext, ranSteps } from './helpers.js';

const cleanup: string[] = [];
afterAll(async () => {
  await closePool();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

/** Every file under `dir` (recursively), with its size and mtime: what a build wrote there. */
function listing(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        out.set(`${r}/`, '');
        walk(r);
      } else {
        const st = fs.lstatSync(path.join(dir, r));
        out.set(r, `${st.size}@${st.mtimeMs}`);
      }
    }
  };
  walk('');
  return out;
}

/** What a build leaves in a root: blobs and cache records (each file's size and mtime), the snapshots. */
function rootState(root: string): Record<string, string[]> {
  const names = (sub: string) => [...listing(path.join(root, sub))].map(([p, v]) => `${p} ${v}`).sort();
  return {
    blobs: names('content/blobs'),
    records: names('records'),
    // By name only: the snapshotter's metadata does change, as it records when each cached
    // snapshot was last used (for GC's least-recently-used order), as BuildKit does.
    snapshots: fs.readdirSync(path.join(root, 'snapshots', 'snapshots')).sort(),
  };
}

describe('a fully cached build does no work', () => {
  it('hello, built again with -t: no pool, no hashing, no container, nothing written to the store', async () => {
    const root = kilnRoot();
    const ctx = makeContext({
      Dockerfile: 'FROM busybox\nCOPY hello.txt /\nRUN cat /hello.txt && echo ran-the-run-step\nCMD ["cat", "/hello.txt"]\n',
      'hello.txt': 'hello\n',
      'unused.txt': 'not copied\n',
    });
    cleanup.push(root, ctx);
    const srv = new BuildServer({ root, config: { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 2, runLimits: {} } });
    const outputs = [{ type: 'image' as const, names: ['docker.io/library/warm-hello:latest'], push: false }];
    try {
      // A file changed within RACY_MS of being hashed is hashed again next time (its stamp could
      // hide a second write in the same tick); a checkout is older than that, so let the context age.
      await new Promise((r) => setTimeout(r, RACY_MS + 200));
      const first = await build(srv, ctx, { outputs });
      expect(first.logs).toContain('ran-the-run-step');

      // The first build may have started the pool; the second must not need one.
      await closePool();
      resetPoolCounters();
      const before = rootState(root);
      const second = await build(srv, ctx, { outputs });

      expect(ranSteps(second)).toEqual([]);
      expect(cachedSteps(second).some((n) => n.includes('RUN cat /hello.txt'))).toBe(true);
      expect(second.logs).not.toContain('ran-the-run-step');
      expect(second.result.image?.manifestDigest).toBe(first.result.image!.manifestDigest);
      expect(workerModulePath()).toBeUndefined();
      // A scan of the context's metadata is allowed (it is how an edit is noticed); reading content is not.
      expect(poolCounters()).toMatchObject({ tasks: { hashFiles: 0, compressFile: 0 }, filesHashed: 0 });
      expect(rootState(root)).toEqual(before);

      // The check can fail: an edit makes the same build hash the changed file and write a layer.
      fs.writeFileSync(path.join(ctx, 'hello.txt'), 'hello again\n');
      const edited = await build(srv, ctx, { outputs });
      expect(edited.logs).toContain('ran-the-run-step');
      expect(poolCounters().filesHashed).toBeGreaterThan(0);
      expect(rootState(root).blobs).not.toEqual(before.blobs);
    } finally {
      await srv.close();
    }
  }, 120_000);
});
