// Entitlements, as BuildKit's: a Dockerfile cannot grant itself the host's network or an insecure
// sandbox; the build asks (--allow) and kiln's configuration permits, or the step fails naming it.
import * as fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildFailure } from '../../src/server/api.js';
import { BuildServer } from '../../src/server/server.js';
import { testEnv } from '../helpers/env.js';
import { build, kilnRoot, makeContext } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

function serverWith(allowed: ('network.host' | 'security.insecure')[]): BuildServer {
  const root = kilnRoot();
  cleanup.push(root);
  return new BuildServer({
    root,
    config: { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 4, runLimits: {}, allowedEntitlements: allowed } as never,
  });
}

async function failure(p: Promise<unknown>): Promise<BuildFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BuildFailure);
  return err as BuildFailure;
}

function ctx(dockerfile: string): string {
  const c = makeContext({ Dockerfile: dockerfile });
  cleanup.push(c);
  return c;
}

describe('entitlements', () => {
  it('RUN --network=host without --allow fails naming network.host, even in a build with --network none', async () => {
    const srv = serverWith(['network.host']);
    try {
      const c = ctx('FROM busybox\nRUN --network=host cat /proc/net/dev\n');
      for (const network of ['host', 'none'] as const) {
        const err = await failure(build(srv, c, { network }));
        expect(err.info.message).toMatch(/^Dockerfile:2: RUN --network=host needs the network\.host entitlement: build with --allow network\.host/);
        expect(err.info.location).toEqual({ file: 'Dockerfile', line: 2 });
      }
    } finally {
      await srv.close();
    }
  });

  it('--allow of an entitlement the configuration does not permit fails the build at once', async () => {
    const srv = serverWith([]);
    try {
      const err = await failure(build(srv, ctx('FROM busybox\nRUN --network=host true\n'), { allow: ['network.host'] }));
      expect(err.info.message).toMatch(/^granting entitlement network\.host is not allowed by kiln's configuration/);
    } finally {
      await srv.close();
    }
  });

  it('asked and permitted: RUN --network=host shares the host network in a --network none build; a later build without --allow cannot take it from the cache', async () => {
    const srv = serverWith(['network.host']);
    try {
      const c = ctx('FROM busybox\nRUN --network=host wc -l < /proc/net/dev > /host-net && cat /host-net\nRUN wc -l < /proc/net/dev\n');
      const ok = await build(srv, c, { network: 'none', allow: ['network.host'] });
      const lines = ok.logs
        .trim()
        .split('\n')
        .map((l) => Number(l.trim()))
        .filter((n) => n > 0);
      // The host has more interfaces than the lone `lo` of a --network none step (2 header lines + lo).
      expect(lines[0]).toBeGreaterThan(3);
      expect(lines[1]).toBe(3);
      const err = await failure(build(srv, c, { network: 'none' }));
      expect(err.info.message).toContain('needs the network.host entitlement');
    } finally {
      await srv.close();
    }
  });

  it('RUN --security=insecure: refused without the entitlement; with it, no seccomp filter and more than the default capabilities', async () => {
    const c = ctx('FROM busybox\nRUN --security=insecure grep -E "^(Seccomp|CapEff):" /proc/self/status\nRUN grep -E "^(Seccomp|CapEff):" /proc/self/status\n');
    const denied = serverWith([]);
    try {
      const err = await failure(build(denied, c));
      expect(err.info.message).toMatch(/^Dockerfile:2: RUN --security=insecure needs the security\.insecure entitlement/);
    } finally {
      await denied.close();
    }
    const srv = serverWith(['security.insecure']);
    try {
      const ok = await build(srv, c, { allow: ['security.insecure'] });
      const seccomp = [...ok.logs.matchAll(/Seccomp:\s+(\d)/g)].map((m) => m[1]);
      const caps = [...ok.logs.matchAll(/CapEff:\s+([0-9a-f]+)/g)].map((m) => BigInt(`0x${m[1]}`));
      expect(seccomp).toEqual(['0', '2']); // insecure step: no filter; the normal one: filtered
      const bits = (n: bigint) => n.toString(2).replace(/0/g, '').length;
      expect(bits(caps[0]!)).toBeGreaterThan(bits(caps[1]!));
      expect(bits(caps[1]!)).toBe(14); // Docker's default set
    } finally {
      await srv.close();
    }
  });
});
