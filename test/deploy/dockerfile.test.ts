// kiln's own Dockerfile (repository root), built by kiln and run in the test Docker daemon as a
// daemon that builds through its published socket.
//
// Offline, node:20-bookworm-slim and apt's runc are out of reach, so BASE is an image made here:
// the test Debian image plus this machine's node, npm and runc (and the shared libraries ldd lists
// for them, at their real paths), built by kiln into the same root first.
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { docker, testEnv, tmpDir } from '../helpers/env.js';
import { killStarted, kilnClient, REPO } from '../helpers/daemon.js';

afterAll(killStarted);

/** A context whose rootfs/ holds node, npm and runc with their libraries, and a Dockerfile adding it to `from`. */
function baseContext(dir: string, from: string): void {
  const rootfs = path.join(dir, 'rootfs');
  const put = (src: string, dest: string) => {
    fs.mkdirSync(path.join(rootfs, path.dirname(dest)), { recursive: true });
    fs.copyFileSync(src, path.join(rootfs, dest)); // follows links: a regular file at the name
  };
  const bins = ['/usr/bin/node', '/usr/sbin/runc'];
  for (const bin of bins) put(bin, bin);
  const libs = new Set<string>();
  for (const bin of bins) {
    for (const m of execFileSync('ldd', [bin], { encoding: 'utf8' }).matchAll(/(\/\S+\.so[^\s]*)/g)) libs.add(m[1]!);
  }
  // Under the real directory (Debian's /lib and /lib64 are links into /usr): a COPY must not
  // replace the image's link with a directory.
  for (const lib of libs) put(lib, path.join(fs.realpathSync(path.dirname(lib)), path.basename(lib)));
  const npm = fs.realpathSync('/usr/bin/npm'); // .../node_modules/npm/bin/npm-cli.js
  const npmDir = path.dirname(path.dirname(npm));
  fs.cpSync(npmDir, path.join(rootfs, 'usr/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  fs.symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(rootfs, 'usr/bin/npm'));
  fs.writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${from}\nCOPY rootfs/ /\nRUN node --version && runc --version && npm --version\n`);
}

/**
 * `docker run` flags that give the daemon what it needs. --privileged first; where the machine's
 * capability bounding set lacks a capability (CAP_SYS_RESOURCE here), Docker cannot grant "all"
 * and fails with "unable to apply caps": then the same as privileged, less the missing capability.
 * Under cgroup v1, a container that is not privileged sees /sys/fs/cgroup read-only, and runc
 * (inside) must make cgroups: the host's is mounted read-write.
 */
const PRIVILEGED = [
  ['--privileged'],
  [
    '--cap-add',
    'ALL',
    '--cap-drop',
    'SYS_RESOURCE',
    '--security-opt',
    'seccomp=unconfined',
    '--security-opt',
    'apparmor=unconfined',
    '--security-opt',
    'systempaths=unconfined',
    '--device-cgroup-rule',
    'a *:* rwm',
    '-v',
    '/sys/fs/cgroup:/sys/fs/cgroup',
  ],
];

describe('the kiln image (Dockerfile at the repository root)', () => {
  it('builds with kiln from a BASE argument, loads into Docker, and serves builds from a container', { timeout: 240_000 }, async () => {
    const env = testEnv();
    const tag = randomBytes(4).toString('hex');
    const work = await tmpDir('kiln-self-');
    const root = path.join(work, 'root');
    const config = path.join(work, 'daemon.json');
    fs.writeFileSync(config, '{}');
    const kilnEnv = { KILN_CONFIG: config };

    const base = path.join(work, 'base');
    fs.mkdirSync(base);
    baseContext(base, env.debian);
    const b = await kilnClient(['build', '--root', root, '--progress', 'plain', '-t', `kiln-self-base:${tag}`, base], { env: kilnEnv });
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/#\d+ \d+\.\d+ v20\./);

    const image = `kiln-self:${tag}`;
    const tar = path.join(work, 'kiln-self.tar');
    const s = await kilnClient(
      [
        'build',
        '--root',
        root,
        '--progress',
        'plain',
        '--build-arg',
        `BASE=kiln-self-base:${tag}`,
        '-o',
        `type=docker,name=${image},dest=${tar},compression=uncompressed`,
        REPO,
      ],
      { env: kilnEnv },
    );
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toMatch(/npm prune --omit=dev/);
    expect(s.stderr).toMatch(/removed \d+ packages/);

    const loaded = await docker(['load', '-i', tar]);
    expect(loaded.code, loaded.stderr).toBe(0);
    let container: string | undefined;
    let volume: string | undefined;
    try {
      const inspect = await docker(['image', 'inspect', '-f', '{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{json .Config.Volumes}}', image]);
      expect(inspect.stdout.trim()).toBe('["node","/opt/kiln/dist/bin/kiln.js"] ["daemon"] {"/var/lib/kiln":{}}');
      // Production dependencies only: vitest is a dev dependency, fastify is not.
      const ls = await docker(['run', '--rm', '--entrypoint', 'ls', image, '/opt/kiln/node_modules']);
      expect(ls.code, ls.stderr).toBe(0);
      expect(ls.stdout.split('\n')).toContain('fastify');
      expect(ls.stdout.split('\n')).not.toContain('vitest');

      // The daemon in a container: its root on a Docker volume (a directory of the daemon's disk:
      // overlayfs needs a real file system under its snapshots), its socket published through a
      // directory. Host network: the test registry listens on this machine's loopback.
      const varLib = `kiln-self-root-${tag}`;
      expect((await docker(['volume', 'create', varLib])).code).toBe(0);
      volume = varLib;
      const run = path.join(work, 'run');
      fs.mkdirSync(run);
      const errors: string[] = [];
      for (const [i, flags] of PRIVILEGED.entries()) {
        const name = `kiln-self-${tag}-${i}`;
        const r = await docker([
          'run',
          '-d',
          '--name',
          name,
          '--network',
          'host',
          ...flags,
          '-v',
          `${varLib}:/var/lib/kiln`,
          '-v',
          `${run}:/run/kiln`,
          image,
          'daemon',
          '--addr',
          'unix:///run/kiln/kiln.sock',
        ]);
        if (r.code === 0) {
          container = name;
          break;
        }
        errors.push(`${flags.join(' ')}: ${r.stderr.trim()}`);
        // A container that was created but could not start is still there.
        await docker(['rm', '-f', name]);
        if (!/unable to apply caps/.test(r.stderr)) break;
      }
      expect(container, errors.join('\n')).toBeDefined();
      const socket = path.join(run, 'kiln.sock');
      const deadline = Date.now() + 20_000;
      while (!fs.existsSync(socket) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));

      const ctx = path.join(work, 'ctx');
      fs.mkdirSync(ctx);
      fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busybox}\nRUN echo "in-the-container-$((6*7))"\n`);
      const r = await kilnClient(['build', '--addr', `unix://${socket}`, '--progress', 'plain', ctx]);
      const logs = await docker(['logs', container!]);
      expect(r.code, `${r.stderr}\n--- daemon log:\n${logs.stdout}${logs.stderr}`).toBe(0);
      expect(r.stderr).toContain('in-the-container-42');

      // SIGTERM to the daemon (pid 1): it drains and exits 0.
      const stop = await docker(['stop', '-t', '30', container!]);
      expect(stop.code, stop.stderr).toBe(0);
      expect((await docker(['inspect', '-f', '{{.State.ExitCode}}', container!])).stdout.trim()).toBe('0');
    } finally {
      if (container) await docker(['rm', '-f', container]);
      if (volume) await docker(['volume', 'rm', '-f', volume]);
      await docker(['rmi', '-f', image]);
    }
  });
});
