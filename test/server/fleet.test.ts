// A fleet of daemons: two `kiln daemon` processes on two roots sharing their build cache through the
// test registry (daemon.json `cache-from`/`cache-to`). Run with `npm test -- test/server/fleet.test.ts`.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { stickyAddress } from '../../src/client/sticky.js';
import { killStarted, kilnClient, makeContext, request, startDaemon, tempDir, type DaemonProc } from '../helpers/daemon.js';

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

async function buildCount(d: DaemonProc): Promise<number> {
  return (JSON.parse((await request(d.socket, 'GET', '/v1/builds')).body) as { builds: unknown[] }).builds.length;
}

describe('sticky routing over several daemons', () => {
  let a: DaemonProc;
  let b: DaemonProc;
  beforeAll(async () => {
    [a, b] = await Promise.all([startDaemon(), startDaemon()]);
    cleanup.push(path.dirname(a.socket), path.dirname(b.socket));
  });
  afterAll(async () => {
    expect(await Promise.all([a.stop(), b.stop()])).toEqual([0, 0]);
  });

  it('the same context lands on the same daemon every time, by --addr repeated or KILN_HOST=A,B', async () => {
    const c = ctx({ Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\n', 'a.txt': 'a\n' });
    const counts = async () => [await buildCount(a), await buildCount(b)];
    const chosen: string[] = [];
    for (const how of ['flags', 'env', 'flags-reversed'] as const) {
      const before = await counts();
      const r =
        how === 'env'
          ? await kilnClient(['build', '--progress', 'plain', c], { env: { KILN_HOST: `${a.addr},${b.addr}` } })
          : await kilnClient([
              'build',
              ...(how === 'flags' ? ['--addr', a.addr, '--addr', b.addr] : ['--addr', b.addr, '--addr', a.addr]),
              '--progress',
              'plain',
              c,
            ]);
      expect(r.code, r.stderr).toBe(0);
      const after = await counts();
      const on = after[0]! > before[0]! ? a.addr : b.addr;
      expect(after[0]! + after[1]!).toBe(before[0]! + before[1]! + 1);
      expect(r.stderr).toContain(`building on ${on} (chosen by the context's identity among 2 daemons)`);
      chosen.push(on);
    }
    expect(new Set(chosen).size).toBe(1);
    // The same choice as the pure function's, from the context's identity.
    const real = fs.realpathSync(c);
    const identity = createHash('sha256').update(`${os.hostname()}\0${real}`).digest('hex').slice(0, 32);
    expect(chosen[0]).toBe(stickyAddress(identity, [a.addr, b.addr]));
    // images and du with several addresses ask the first.
    const images = await kilnClient(['images', '--addr', `${b.addr}`, '--addr', a.addr]);
    expect(images.code, images.stderr).toBe(0);
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
