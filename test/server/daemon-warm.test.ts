// The warm path through a daemon, in this process so its counters can be read: a build of a context
// whose kept copy has not changed sends its list's digest only (no list, no tar) and keys its COPY
// without computing a key from the files (so without stat'ing one of them), while a changed file,
// even one of the same size with its mtime put back, is still sent and still misses the cache.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remoteClient } from '../../src/client/remote.js';
import { endpoint } from '../../src/client/transport.js';
import type { BuildRequest, ProgressEvent } from '../../src/server/api.js';
import { serve, type RunningDaemon } from '../../src/server/serve.js';
import { contextKeyCounters, resetContextKeyCounters } from '../../src/solver/context-keys.js';
import { closePool } from '../../src/workers/pool.js';
import { makeContext, minimalBuildRequest, tempDir } from '../helpers/daemon.js';
import { testEnv } from '../helpers/env.js';

const cleanup: string[] = [];
let running: RunningDaemon;
let socket: string;
let log = '';

beforeAll(async () => {
  const dir = tempDir('kiln-daemon-warm-');
  cleanup.push(dir);
  socket = path.join(dir, 'kiln.sock');
  const config = path.join(dir, 'daemon.json');
  fs.writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
  const out = new PassThrough();
  out.on('data', (b: Buffer) => (log += b.toString()));
  running = await serve({
    root: path.join(dir, 'root'),
    addresses: [`unix://${socket}`],
    configFile: config,
    tls: {},
    insecureTcp: false,
    logFormat: 'text',
    version: 'test',
    out,
  });
});

afterAll(async () => {
  await running?.stop();
  await closePool();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

/** One build through the daemon as `kiln build` sends it; the steps' names that were cached, and the requests it made. */
async function build(ctx: string): Promise<{ cached: string[]; logs: string; requests: string[] }> {
  const text = fs.readFileSync(path.join(ctx, 'Dockerfile'), 'utf8');
  const req = minimalBuildRequest({
    context: { type: 'dir', path: ctx },
    dockerfile: { name: 'Dockerfile', text, path: path.join(ctx, 'Dockerfile') },
  }) as unknown as BuildRequest;
  const events: ProgressEvent[] = [];
  const before = log.length;
  await remoteClient(endpoint(`unix://${socket}`)).build(req, (e) => events.push(e));
  const names = new Map<number, string>();
  for (const e of events) if (e.type === 'vertex') names.set(e.id, e.name);
  return {
    cached: events.flatMap((e) => (e.type === 'vertex' && e.status === 'cached' ? [e.name] : [])),
    logs: events.flatMap((e) => (e.type === 'log' ? [e.data] : [])).join(''),
    requests: [...log.slice(before).matchAll(/request method=(\w+) path=(\S+)/g)].map((m) => `${m[1]} ${m[2]!.replace(/\/[0-9a-f]{20,}/g, '/ID')}`),
  };
}

describe('kiln daemon: warm builds of an unchanged kept context', () => {
  it('send only the list digest and key COPY without computing from the files; a same-size edit is still caught', async () => {
    const files: Record<string, string> = { Dockerfile: 'FROM busybox\nCOPY . /app\nRUN cat /app/a.txt\n', 'a.txt': 'aaaa' };
    for (let i = 0; i < 50; i++) files[`src/f${i}.txt`] = `file ${i}\n`;
    const ctx = makeContext(files);
    cleanup.push(ctx);
    const a = path.join(ctx, 'a.txt');
    fs.utimesSync(a, 1_700_000_000, 1_700_000_000);

    const cold = await build(ctx);
    expect(cold.requests).toContain('PUT /v1/contexts/ID/sessions/ID');

    resetContextKeyCounters();
    const warm = await build(ctx);
    expect(warm.cached.some((n) => n.includes('COPY . /app'))).toBe(true);
    expect(warm.cached.some((n) => n.includes('RUN cat /app/a.txt'))).toBe(true);
    // No key was computed from the files: none of them was stat'ed or read.
    expect(contextKeyCounters()).toEqual({ computed: 0, reused: 1 });
    // One small request for the context (its digest), then the build: no list, no tar.
    expect(warm.requests).toEqual(['POST /v1/contexts/ID/sessions', 'POST /v1/builds']);
    expect(warm.logs).toContain('transferring context: 0 files, 0B');

    // Same size, mtime put back: the client's stamp (ctime) still differs, so the file travels,
    // the tree gets a new token, and the COPY's key is computed afresh and misses.
    await new Promise((r) => setTimeout(r, 20));
    fs.writeFileSync(a, 'bbbb');
    fs.utimesSync(a, 1_700_000_000, 1_700_000_000);
    resetContextKeyCounters();
    const edited = await build(ctx);
    expect(edited.logs).toContain('transferring context: 1 files, 4B');
    expect(edited.cached.some((n) => n.includes('COPY . /app'))).toBe(false);
    expect(edited.logs).toContain('bbbb');
    expect(contextKeyCounters().computed).toBe(1);
  });
});
