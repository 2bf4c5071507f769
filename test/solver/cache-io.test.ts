// --cache-to / --cache-from between two kiln roots, as between two CI workers: the second, fresh
// root must rebuild without running any RUN, produce the same image, and get the cache mounts too.
import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testEnv } from '../helpers/env.js';
import { build, cachedSteps, kilnRoot, makeContext, ranSteps, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

// A build whose RUN output differs on every run (so only a real cache hit reproduces it), with a
// cache mount, a COPY and two stages.
function context(): string {
  return tracked(
    makeContext({
      Dockerfile: [
        'FROM busybox AS dep',
        'RUN head -c 16 /dev/urandom | od -An -tx1 > /dep-random',
        'FROM busybox',
        'COPY app.txt /app.txt',
        'RUN --mount=type=cache,target=/cache,id=kiln-test-cache sh -c "head -c 8 /dev/urandom | od -An -tx1 > /cache/seen; cp /cache/seen /seen-at-build"',
        'COPY --from=dep /dep-random /dep-random',
        'RUN cat /dep-random /app.txt > /combined',
        '',
      ].join('\n'),
      'app.txt': 'app\n',
    }),
  );
}

type BuildOpts = NonNullable<Parameters<typeof build>[2]>;

async function roundTrip(to: BuildOpts['cacheTo'], from: BuildOpts['cacheFrom'], outputs: BuildOpts['outputs'] = []) {
  const ctx = context();
  const outA = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cache-a-')));
  const outB = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cache-b-')));
  const a = server(tracked(kilnRoot()));
  let first;
  try {
    first = await build(a, ctx, { cacheTo: to, outputs: [...(outputs ?? []), { type: 'local', dest: outA }] });
  } finally {
    await a.close();
  }
  const b = server(tracked(kilnRoot()));
  try {
    const second = await build(b, ctx, { cacheFrom: from, outputs: [{ type: 'local', dest: outB }] });
    return { first, second, outA, outB, b, ctx };
  } finally {
    await b.close();
  }
}

describe('cache export and import', () => {
  it('type=local, mode=max: a fresh root runs no RUN, makes the same image and files', async () => {
    const dir = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cache-dir-')));
    const { first, second, outA, outB } = await roundTrip([{ type: 'local', dest: dir, mode: 'max' }], [{ type: 'local', src: dir }]);
    expect(ranSteps(first).filter((n) => n.includes('RUN'))).toHaveLength(3);
    expect(ranSteps(second).filter((n) => n.includes('RUN'))).toEqual([]);
    expect(cachedSteps(second).filter((n) => n.includes('RUN'))).toHaveLength(3);
    expect(second.result.image!.id).toBe(first.result.image!.id);
    for (const f of ['dep-random', 'combined', 'seen-at-build']) {
      expect(fs.readFileSync(path.join(outB, f), 'utf8')).toBe(fs.readFileSync(path.join(outA, f), 'utf8'));
    }
  });

  it('type=local, mode=min: only the target chain is exported; the other stage runs again', async () => {
    const dir = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cache-dir-')));
    const { second } = await roundTrip([{ type: 'local', dest: dir, mode: 'min' }], [{ type: 'local', src: dir }]);
    // The dep stage's RUN is not in the min cache, so it runs again; the target's steps are all in
    // it and come from the cache (a COPY --from is keyed by the source stage's key, as a RUN is by
    // its definition, so the imported result of the original build is used).
    const ran = ranSteps(second).filter((n) => n.includes('RUN'));
    expect(ran.some((n) => n.includes('/dep-random') && n.includes('urandom'))).toBe(true);
    expect(cachedSteps(second).some((n) => n.includes('--mount=type=cache'))).toBe(true);
  });

  it('type=registry: the cache goes through a real registry', async () => {
    const ref = `${testEnv().registry}/kiln-test/cache:${randomBytes(4).toString('hex')}`;
    const { first, second } = await roundTrip([{ type: 'registry', ref, mode: 'max' }], [{ type: 'registry', ref }]);
    expect(ranSteps(second).filter((n) => n.includes('RUN'))).toEqual([]);
    expect(second.result.image!.id).toBe(first.result.image!.id);
  });

  it('type=inline: the cache rides in a pushed image and is imported from it', async () => {
    const ref = `${testEnv().registry}/kiln-test/inline:${randomBytes(4).toString('hex')}`;
    const { second } = await roundTrip([{ type: 'inline' }], [{ type: 'registry', ref }], [{ type: 'image', names: [ref], push: true }]);
    // Inline cache is min mode: the dep stage runs, the target's first RUN comes from the image.
    expect(cachedSteps(second).some((n) => n.includes('--mount=type=cache'))).toBe(true);
  });

  it('cache mounts travel with the cache: a later RUN in the fresh root sees the exported content', async () => {
    const dir = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cache-dir-')));
    const { outA, b, ctx } = await roundTrip([{ type: 'local', dest: dir, mode: 'max' }], [{ type: 'local', src: dir }]);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN --mount=type=cache,target=/c,id=kiln-test-cache cat /c/seen\n');
    const again = await build(b, ctx, { cacheFrom: [{ type: 'local', src: dir }] });
    await b.close();
    expect(again.logs).toBe(fs.readFileSync(path.join(outA, 'seen-at-build'), 'utf8'));
  });

  it('an unreadable cache source is a warning; the build goes on', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo ok\n' }));
    const srv = server(tracked(kilnRoot()));
    try {
      const b = await build(srv, ctx, { cacheFrom: [{ type: 'local', src: '/nonexistent/kiln-cache' }] });
      expect(b.events.some((e) => e.type === 'message' && e.level === 'warning' && e.text.includes('/nonexistent/kiln-cache'))).toBe(true);
      expect(b.logs).toContain('ok');
    } finally {
      await srv.close();
    }
  });
});
