// What the daemon remembers of builds (GET /v1/builds): steps, cache hits, outcome, a bounded list.
import { describe, expect, it } from 'vitest';
import { BuildHistory } from '../../src/server/history.js';

describe('BuildHistory', () => {
  it('folds progress into steps and counts cached steps of the Dockerfile only', () => {
    const h = new BuildHistory();
    const r = h.add({ id: 'b1', client: 'ci-1', dockerfile: 'Dockerfile', names: ['app:1'] });
    expect(r.state).toBe('queued');
    h.started(r);
    h.event(r, { type: 'vertex', id: 1, name: '[internal] load build definition from Dockerfile', status: 'started' });
    h.event(r, { type: 'vertex', id: 1, name: '[internal] load build definition from Dockerfile', status: 'done', durationMs: 3 });
    h.event(r, { type: 'vertex', id: 2, name: '[1/3] FROM docker.io/library/busybox:latest', status: 'done', durationMs: 1 });
    h.event(r, { type: 'vertex', id: 3, name: '[2/3] COPY a .', status: 'cached', durationMs: 0 });
    h.event(r, { type: 'vertex', id: 4, name: '[build 3/3] RUN make', status: 'done', durationMs: 900, reason: 'COPY: a changed' });
    h.event(r, { type: 'log', id: 4, stream: 'stdout', atMs: 5, data: 'ignored\n' });
    h.finished(r, { imageId: 'sha256:abc' });
    expect(r).toMatchObject({ state: 'completed', imageId: 'sha256:abc', totalSteps: 3, cachedSteps: 1 });
    expect(r.steps.find((s) => s.id === 4)).toEqual({ id: 4, name: '[build 3/3] RUN make', status: 'done', durationMs: 900, reason: 'COPY: a changed' });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('records failures and cancellations with their error, and keeps only the newest finished builds', () => {
    const h = new BuildHistory(3);
    const failed = h.add({ id: 'f', client: 'c', dockerfile: 'Dockerfile', names: [] });
    h.finished(failed, { error: { message: 'Dockerfile:2: RUN false: exit code: 1', exitCode: 1 } });
    const cancelled = h.add({ id: 'x', client: 'c', dockerfile: 'Dockerfile', names: [] });
    h.finished(cancelled, { error: { message: 'build cancelled: the client disconnected', cancelled: true } });
    expect([failed.state, cancelled.state]).toEqual(['failed', 'cancelled']);
    const running = h.add({ id: 'r', client: 'c', dockerfile: 'Dockerfile', names: [] });
    h.started(running);
    for (const id of ['n1', 'n2']) h.finished(h.add({ id, client: 'c', dockerfile: 'Dockerfile', names: [] }), {});
    // Five records, room for three: the two oldest finished ones go; the running one stays.
    expect(h.list().map((b) => b.id)).toEqual(['n2', 'n1', 'r']);
    expect(h.get('f')).toBeUndefined();
  });
});
