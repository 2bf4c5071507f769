// Escape attempts through the whole pipeline: hostile paths in a Dockerfile, a context and an image
// must stay inside the build, and RUN must not see or change the host.

import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);
const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: Error) => e,
  );

describe('isolation through the pipeline', () => {
  it('WORKDIR, COPY and ADD through symlinks in the image land in the rootfs, never on the host', async () => {
    const tag = randomBytes(6).toString('hex');
    const hostPaths = ['wd', 'cp', 'add'].map((k) => path.join(os.tmpdir(), `kiln-escape-${k}-${tag}`));
    for (const p of hostPaths) tracked(p);
    const ctx = tracked(
      makeContext({
        Dockerfile: [
          'FROM busybox',
          'RUN ln -s / /escape && ln -s ../../.. /up && mkdir -p /tmp',
          `WORKDIR /escape${os.tmpdir()}/kiln-escape-wd-${tag}`,
          `COPY marker /up${os.tmpdir()}/kiln-escape-cp-${tag}/`,
          `ADD marker /escape/../..${os.tmpdir()}/kiln-escape-add-${tag}/`,
          '',
        ].join('\n'),
        marker: 'marker\n',
      }),
    );
    const out = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-escape-out-')));
    const srv = server(tracked(kilnRoot()));
    try {
      await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
    } finally {
      await srv.close();
    }
    for (const p of hostPaths) expect(fs.existsSync(p), `${p} must not exist on the host`).toBe(false);
    expect(fs.statSync(path.join(out, os.tmpdir(), `kiln-escape-wd-${tag}`)).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(out, os.tmpdir(), `kiln-escape-cp-${tag}`, 'marker'), 'utf8')).toBe('marker\n');
    expect(fs.readFileSync(path.join(out, os.tmpdir(), `kiln-escape-add-${tag}`, 'marker'), 'utf8')).toBe('marker\n');
  });

  it('mount stubs are cleaned up only inside the rootfs: a parent swapped for a link to the host is left alone (CVE-2024-23652)', async () => {
    const tag = randomBytes(6).toString('hex');
    // On the host: the empty directories a naive cleanup would remove through the planted links.
    const abs = tracked(path.join(os.tmpdir(), `kiln-stub-abs-${tag}`));
    const rel = tracked(path.join(os.tmpdir(), `kiln-stub-rel-${tag}`));
    for (const d of [abs, rel]) fs.mkdirSync(path.join(d, 'y', 'stub'), { recursive: true });
    const ctx = tracked(
      makeContext({
        Dockerfile: [
          'FROM busybox',
          // The mount targets' parents do not exist in the image: kiln notes the stubs runc makes.
          // The step then moves the parents away and plants links to the host's directories.
          `RUN --mount=type=tmpfs,target=/a/y/stub --mount=type=tmpfs,target=/r/y/stub mv /a /a.old && mv /r /r.old && ln -s ${abs} /a && ln -s ../../../../../../..${rel} /r`,
          '',
        ].join('\n'),
      }),
    );
    const srv = server(tracked(kilnRoot()));
    try {
      await build(srv, ctx);
    } finally {
      await srv.close();
    }
    for (const d of [abs, rel]) expect(fs.statSync(path.join(d, 'y', 'stub')).isDirectory(), `${d}/y/stub must survive`).toBe(true);
  });

  it('WORKDIR /proc/self/fd/N cannot hand RUN a host directory (CVE-2024-21626)', async () => {
    const ctx = tracked(
      makeContext({ Dockerfile: 'FROM busybox\nWORKDIR /proc/self/fd/7\nRUN cat ../../../../../../etc/hostname; ls /work > /seen || true\n' }),
    );
    const srv = server(tracked(kilnRoot()));
    try {
      const err = await failure(build(srv, ctx));
      expect(err?.message).toMatch(/^Dockerfile:3: .*\/proc/);
    } finally {
      await srv.close();
    }
  });

  it('COPY cannot leave the context through .. or a symlink to /etc', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nCOPY ../../../../etc/passwd /from-dotdot\n' }));
    fs.symlinkSync('/etc', path.join(ctx, 'etc-link'));
    const srv = server(tracked(kilnRoot()));
    try {
      const err = await failure(build(srv, ctx));
      expect(err?.message).toMatch(/^Dockerfile:2: .*not found/);

      // Through the symlink: the link resolves inside the context, where there is no etc/passwd.
      fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY etc-link/passwd /from-link\n');
      const err2 = await failure(build(srv, ctx));
      expect(err2?.message).toMatch(/^Dockerfile:2: .*not found/);
    } finally {
      await srv.close();
    }
  });

  it('RUN sees neither the host files, processes nor hostname, and lacks the capabilities to change it', async () => {
    const marker = tracked(path.join(os.tmpdir(), `kiln-host-marker-${randomBytes(6).toString('hex')}`));
    fs.writeFileSync(marker, 'host secret');
    const ctx = tracked(
      makeContext({
        Dockerfile: [
          'FROM busybox',
          `RUN test ! -e ${marker} && echo no-host-file`,
          'RUN n=$(ls /proc | grep -c "^[0-9]") && echo "pids=$n" && test "$n" -le 10 && echo few-processes',
          'RUN echo "hostname=$(hostname)"',
          'RUN ! ip link add kilntest0 type dummy 2>/dev/null && echo no-net-admin',
          'RUN ! mount -t tmpfs none /mnt 2>/dev/null && echo no-mount',
          '',
        ].join('\n'),
      }),
    );
    const srv = server(tracked(kilnRoot()));
    try {
      const b = await build(srv, ctx);
      expect(b.logs).toContain('no-host-file');
      expect(b.logs).toContain('few-processes');
      expect(b.logs).toContain('hostname=buildkitsandbox');
      expect(b.logs).not.toContain(`hostname=${os.hostname()}\n`);
      expect(b.logs).toContain('no-net-admin');
      expect(b.logs).toContain('no-mount');
    } finally {
      await srv.close();
    }
  });

  it('a device node made in RUN (or shipped in an image) cannot open the host disk', async () => {
    // The machine's root disk, whatever it is here; a build must not be able to read it raw.
    const rootDev = fs.statSync('/').dev;
    const major = Math.floor(rootDev / 256) & 0xfff;
    const minor = (rootDev & 0xff) | ((rootDev >> 12) & 0xfff00);
    const ctx = tracked(
      makeContext({
        Dockerfile: `FROM busybox\nRUN mknod /disk b ${major} ${minor} && echo made-node && ! head -c 512 /disk > /dev/null 2>&1 && echo denied-by-cgroup\n`,
      }),
    );
    const srv = server(tracked(kilnRoot()));
    try {
      const b = await build(srv, ctx);
      expect(b.logs).toContain('made-node'); // CAP_MKNOD is in Docker's set...
      expect(b.logs).toContain('denied-by-cgroup'); // ...but the device cgroup allows no such device
    } finally {
      await srv.close();
    }
  });

  it('/etc/hosts, /etc/resolv.conf and /etc/hostname made for RUN never reach the image', async () => {
    const out = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-etc-out-')));
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN cat /etc/hosts >/dev/null && touch /made-by-run\n' }));
    const srv = server(tracked(kilnRoot()));
    try {
      await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
    } finally {
      await srv.close();
    }
    expect(fs.existsSync(path.join(out, 'made-by-run'))).toBe(true);
    for (const f of ['etc/hosts', 'etc/resolv.conf', 'etc/hostname']) expect(fs.existsSync(path.join(out, f)), f).toBe(false);
  });
});
