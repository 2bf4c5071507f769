// Attacks from public builder and runtime CVEs, each tried through a real build: the step must stay
// inside its sandbox, and the host (files, cgroups, runc) must be as it was.
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BuildFailure } from '../../src/server/api.js';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

async function builds(dockerfile: string, files: Record<string, string> = {}, extra: (ctx: string) => void = () => undefined) {
  const ctx = tracked(makeContext({ Dockerfile: dockerfile, ...files }));
  extra(ctx);
  const srv = server(tracked(kilnRoot()));
  try {
    return await build(srv, ctx);
  } finally {
    await srv.close();
  }
}

describe('public CVEs, tried through a build', () => {
  it('runc CVE-2023-25809: RUN cannot write the cgroup file system (no cgroup appears on the host)', async () => {
    const name = `kiln-cve-${randomBytes(4).toString('hex')}`;
    // Every cgroup hierarchy mounted in the step (v1: one per controller; v2: one): try to make a
    // cgroup and to move a process. (The tmpfs holding v1's hierarchies is the step's own.)
    const b = await builds(
      `FROM busybox\nRUN for d in $(awk '$3=="cgroup"||$3=="cgroup2"{print $2}' /proc/mounts); do echo "hierarchy $d"; mkdir "$d/${name}" 2>/dev/null && echo "WROTE $d"; (echo 1 > "$d/cgroup.procs") 2>/dev/null && echo "MOVED $d"; done; echo tried\n`,
    );
    expect(b.logs).toContain('hierarchy /sys/fs/cgroup');
    expect(b.logs).toContain('tried');
    expect(b.logs).not.toMatch(/WROTE|MOVED/);
    const hostCgroups = execFileSync('find', ['/sys/fs/cgroup', '-maxdepth', '3', '-name', name], { encoding: 'utf8' });
    expect(hostCgroups.trim()).toBe('');
  });

  it('runc CVE-2019-5736 (the runc binary through /proc/*/exe): the host runc is unchanged', async () => {
    const runc = execFileSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).trim();
    const before = createHash('sha256').update(fs.readFileSync(runc)).digest('hex');
    // Every process the step can see, every exe link it can reach: try to write through them.
    const b = await builds(
      'FROM busybox\nRUN for e in /proc/[0-9]*/exe /proc/self/exe; do (echo overwritten > "$e") 2>/dev/null && echo "WROTE $e"; done; echo tried\n',
    );
    expect(b.logs).toContain('tried');
    expect(b.logs).not.toContain('WROTE');
    expect(createHash('sha256').update(fs.readFileSync(runc)).digest('hex')).toBe(before);
  });

  it('BuildKit CVE-2024-23651 and buildah CVE-2024-1753: cache and bind mount sources that are links to / stay in their source', async () => {
    const b = await builds(
      [
        'FROM busybox AS src',
        'RUN ln -s / /evil && ln -s ../../../../.. /up && echo in-the-stage > /marker',
        'FROM busybox',
        'RUN --mount=type=bind,from=src,source=/evil,target=/m ls /m > /tmp/bind.txt; cat /m/marker',
        'RUN --mount=type=cache,from=src,source=/up,target=/c ls /c; cat /c/marker 2>/dev/null || echo cache-not-seeded-from-a-link',
        'RUN --mount=type=bind,source=ctxlink,target=/x ls /x',
        '',
      ].join('\n'),
      { 'inside.txt': 'from-the-context\n' },
      (ctx) => fs.symlinkSync('/', path.join(ctx, 'ctxlink')),
    );
    // Each mount showed the stage's (or the context's) own root, never the host's.
    expect(b.logs).toContain('in-the-stage');
    expect(b.logs).toContain('inside.txt');
    expect(b.logs).not.toMatch(/\bwork\b/); // the host's /work (this repository's parent)
  });

  it('buildah CVE-2024-9407: mount options are validated, not passed through', async () => {
    for (const opt of ['type=bind,target=/m,bind-propagation=rshared,foo=bar', 'type=bind,target=/m,source=.,z', 'type=tmpfs,target=/m,options=exec']) {
      const err = await builds(`FROM busybox\nRUN --mount=${opt} true\n`).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, opt).toBeInstanceOf(Error);
      expect((err as Error).message, opt).toMatch(/^Dockerfile:2: /);
    }
  });

  it('GHSA-4c29-8rgm-jvjj: an ADD URL whose name is a path climbing out stays in the destination', async () => {
    const srv = http.createServer((_req, res) => res.writeHead(200).end('payload\n'));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    const tag = randomBytes(4).toString('hex');
    const outside = tracked(path.join(os.tmpdir(), `kiln-ghsa-${tag}`));
    try {
      const b = await builds(
        `FROM busybox\nRUN mkdir -p /dl\nADD http://127.0.0.1:${port}/..%2F..%2F..%2Ftmp%2Fkiln-ghsa-${tag} /dl/\nRUN find /dl -type f; ls /tmp\n`,
      );
      expect(b.logs).toContain(`/dl/kiln-ghsa-${tag}`);
      expect(fs.existsSync(outside)).toBe(false);
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('a build failure is reported as data, not as a crash (BuildKit CVE-2024-23650-like malformed input)', async () => {
    const err = await builds('FROM busybox\nRUN --mount=type=secret,id=\u0000 true\n').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err === undefined || err instanceof BuildFailure).toBe(true);
  });
});

describe('moby CVE-2024-24557: every field of an instruction is in its cache key', () => {
  // Each pair differs in one field only; the second build of the pair, on the same root, must run
  // the step again instead of taking the first one's result from the cache.
  const pairs: [string, string, string][] = [
    ['RUN --network', 'RUN echo net', 'RUN --network=none echo net'],
    ['RUN --mount tmpfs', 'RUN echo mnt', 'RUN --mount=type=tmpfs,target=/t echo mnt'],
    ['RUN --mount cache id', 'RUN --mount=type=cache,target=/c,id=a echo c', 'RUN --mount=type=cache,target=/c,id=b echo c'],
    ['COPY --chmod', 'COPY f /f', 'COPY --chmod=600 f /f'],
    ['COPY --chown', 'COPY f /f', 'COPY --chown=1:1 f /f'],
    ['COPY --exclude', 'COPY . /d', 'COPY --exclude=f . /d'],
    ['COPY --parents', 'COPY sub/g /d/', 'COPY --parents sub/g /d/'],
    ['COPY --link', 'COPY f /f', 'COPY --link f /f'],
    ['USER before RUN', 'RUN id -u', 'USER 1\nRUN id -u'],
    ['SHELL before RUN', 'RUN echo sh', 'SHELL ["/bin/sh", "-ec"]\nRUN echo sh'],
    ['WORKDIR before COPY', 'COPY f f', 'WORKDIR /w\nCOPY f f'],
  ];
  it.each(pairs)('%s', async (_what, a, b) => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\n', f: 'file\n', 'sub/g': 'g\n' }));
    const srv = server(root);
    try {
      fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM busybox\n${a}\n`);
      await build(srv, ctx);
      fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM busybox\n${b}\n`);
      const second = await build(srv, ctx);
      const last = [...second.statuses.entries()].filter(([name]) => /^\[\d+\/\d+\] /.test(name)).at(-1)!;
      expect(last[1], `${last[0]} came from the cache`).toBe('done');
    } finally {
      await srv.close();
    }
  });
});
