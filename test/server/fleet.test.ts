// A fleet of daemons: two `kiln daemon` processes on two roots sharing their build cache through the
// test registry (daemon.json `cache-from`/`cache-to`). Run with `npm test -- test/server/fleet.test.ts`.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { killStarted, kilnClient, makeContext, startDaemon, tempDir, type DaemonProc } from '../helpers/daemon.js';

const cleanup: string[] = [];
afterAll(async () => {
  await killStarted();
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
function ctx(files: Record<string, string>): string {
  const d = makeContext(files);
  cleanup.push(d);
  return d;
}

describe('a fleet sharing its cache through a registry', () => {
  const cacheRef = () => `${testEnv().registry}/kiln-cache/fleet-${randomBytes(4).toString('hex')}`;
  let a: DaemonProc;
  let b: DaemonProc;
  let ref: string;
  beforeAll(async () => {
    ref = cacheRef();
    const config = { 'cache-from': [`type=registry,ref=${ref}`], 'cache-to': [`type=registry,ref=${ref},mode=max`] };
    [a, b] = await Promise.all([startDaemon({ config }), startDaemon({ config })]);
    cleanup.push(path.dirname(a.socket), path.dirname(b.socket));
  });
  afterAll(async () => {
    expect(await Promise.all([a.stop(), b.stop()])).toEqual([0, 0]);
  });

  it('a build on one daemon is cached on the other: the RUN does not run again', async () => {
    const token = randomBytes(4).toString('hex');
    // The output differs from the command text, so the progress shows whether the RUN ran.
    const c = ctx({ Dockerfile: `FROM busybox\nCOPY a.txt /a.txt\nRUN echo "ran-$((6*7))-${token}" && cat /a.txt > /b.txt\n`, 'a.txt': `${token}\n` });
    const marker = `ran-42-${token}`;
    const first = await kilnClient(['build', '--addr', a.addr, '--progress', 'plain', c]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain(marker);
    expect(first.stderr).toMatch(/exporting cache|cache to/i);

    const second = await kilnClient(['build', '--addr', b.addr, '--progress', 'plain', c]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/importing cache manifest from/);
    expect(second.stderr).toMatch(/#\d+ \[3\/3\] RUN echo "ran-.*\n#\d+ CACHED/);
    expect(second.stderr).not.toContain(marker);
  });

  it('a request that names its own cache import keeps it', async () => {
    const own = cacheRef();
    const c = ctx({ Dockerfile: `FROM busybox\nRUN echo own-${randomBytes(4).toString('hex')}\n` });
    const r = await kilnClient(['build', '--addr', b.addr, '--progress', 'plain', '--cache-from', `type=registry,ref=${own}`, c]);
    expect(r.code, r.stderr).toBe(0);
    const line = r.stderr.split('\n').find((l) => l.includes('importing cache manifest from'));
    expect(line).toContain(own);
    expect(line).not.toContain(ref);
  });
});

describe('daemon.json cache keys', () => {
  it('type=local and malformed entries are refused at start, naming the key', async () => {
    const dir = tempDir('kiln-fleet-');
    cleanup.push(dir);
    await expect(startDaemon({ root: path.join(dir, 'r1'), config: { 'cache-to': [`type=local,dest=${dir}/cache`] } })).rejects.toThrow(
      /"cache-to": type=local is not available in the daemon's configuration/,
    );
    await expect(startDaemon({ root: path.join(dir, 'r2'), config: { 'cache-from': ['type=registry'] } })).rejects.toThrow(
      /"cache-from": invalid entry "type=registry": want type=local,src=DIR or type=registry,ref=REF/,
    );
  });
});
