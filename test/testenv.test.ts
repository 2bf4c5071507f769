// Checks that the environment scripts/testenv.sh builds is what the other tests rely on: the OCI
// layouts are valid and self-consistent, the registry serves the same bytes (also under library/
// for the mirror), the images run in the test dockerd, and BuildKit resolves `FROM busybox` to our
// image through the mirror.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { docker, testEnv, tmpDir } from './helpers/env.js';

const env = testEnv();
const run = promisify(execFile);

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}
interface ImageConfig {
  architecture: string;
  os: string;
  config: { Env?: string[]; Cmd?: string[] };
  rootfs: { type: string; diff_ids: string[] };
  history?: { created_by?: string }[];
}

const DEBIAN_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'armhf', ia32: 'i386' };
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const sha256 = (b: Buffer) => 'sha256:' + createHash('sha256').update(b).digest('hex');

async function blob(layout: string, d: { digest: string; size?: number }): Promise<Buffer> {
  const data = await readFile(join(layout, 'blobs', ...d.digest.split(':')));
  expect(sha256(data), `blob ${d.digest} in ${layout}`).toBe(d.digest);
  if (d.size !== undefined) expect(data.length).toBe(d.size);
  return data;
}

/** Reads a one-image layout and verifies every digest, size and diff_id on the way. */
async function readLayout(layout: string, tag: string) {
  const oci = JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8'));
  expect(oci.imageLayoutVersion).toBe('1.0.0');
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
  const entry: Descriptor = index.manifests.find((m: Descriptor) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  expect(entry, `tag ${tag} in ${layout}/index.json`).toBeDefined();
  const manifestBytes = await blob(layout, entry);
  const manifest = JSON.parse(manifestBytes.toString('utf8'));
  expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
  const config: ImageConfig = JSON.parse((await blob(layout, manifest.config)).toString('utf8'));
  expect(manifest.layers).toHaveLength(config.rootfs.diff_ids.length);
  const layers: Buffer[] = [];
  for (const [i, l] of (manifest.layers as Descriptor[]).entries()) {
    expect(l.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    const tar = gunzipSync(await blob(layout, l));
    expect(sha256(tar), `diff_id of layer ${i}`).toBe(config.rootfs.diff_ids[i]);
    layers.push(tar);
  }
  return { digest: entry.digest, manifestBytes, config, layers };
}

/** Names in a tar archive (ustar/GNU headers; enough for our own layers' short names). */
async function tarNames(tar: Buffer, dir: string): Promise<string[]> {
  const file = join(dir, 'layer.tar');
  await writeFile(file, tar);
  const { stdout } = await run('tar', ['-tf', file], { maxBuffer: 64 << 20 });
  return stdout.split('\n').filter(Boolean);
}

async function registryManifest(repo: string, ref: string) {
  const res = await fetch(`http://${env.registry}/v2/${repo}/manifests/${ref}`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  expect(res.status, `GET ${env.registry}/v2/${repo}/manifests/${ref}`).toBe(200);
  const body = Buffer.from(await res.arrayBuffer());
  return { digest: res.headers.get('docker-content-digest'), body };
}

async function registryBlob(repo: string, digest: string): Promise<Buffer> {
  const res = await fetch(`http://${env.registry}/v2/${repo}/blobs/${digest}`);
  expect(res.status, `GET blob ${digest} from ${repo}`).toBe(200);
  const body = Buffer.from(await res.arrayBuffer());
  expect(sha256(body)).toBe(digest);
  return body;
}

const arch = DEBIAN_ARCH[process.arch] ?? process.arch;
const images = [
  { name: 'busybox', ref: env.busybox, layout: env.busyboxOci, tag: 'latest', cmd: ['sh'] },
  { name: 'debian', ref: env.debian, layout: env.debianOci, tag: 'bookworm', cmd: ['bash'] },
];

describe('test environment', () => {
  it('exports the documented contract', () => {
    expect(env.registry).toBe('127.0.0.1:5055');
    expect(env.busybox).toBe('127.0.0.1:5055/busybox:latest');
    expect(env.debian).toBe('127.0.0.1:5055/debian:bookworm');
    expect(env.dockerHost).toBe('unix:///run/kiln-test/docker.sock');
    expect(env.docker).toBe('/usr/bin/docker');
    for (const dir of [env.busyboxOci, env.debianOci]) expect(statSync(dir).isDirectory()).toBe(true);
  });

  describe.each(images)('$name image', ({ name, ref, layout, tag, cmd }) => {
    it('is a valid OCI layout with the expected config', async () => {
      const { config, layers } = await readLayout(layout, tag);
      expect(config.os).toBe('linux');
      expect(config.architecture).toBe(arch);
      expect(config.config.Env).toEqual([PATH_ENV]);
      expect(config.config.Cmd).toEqual(cmd);
      expect(layers).toHaveLength(1);
      expect(config.history).toHaveLength(1);
      const names = await tarNames(layers[0]!, await tmpDir());
      // Docker-style member names: no "./" prefix, no absolute paths.
      expect(names.every((n) => !n.startsWith('/') && !n.startsWith('./'))).toBe(true);
      if (name === 'busybox') {
        expect(names).toEqual(expect.arrayContaining(['bin/busybox', 'bin/sh', 'etc/passwd', 'etc/group', 'tmp/']));
      } else {
        expect(names).toContain('usr/bin/apt-get');
      }
      // Left for the runtime to provide, as in Docker's images.
      expect(names).not.toContain('etc/hosts');
      expect(names).not.toContain('etc/hostname');
    });

    it('is served by the registry byte for byte, also as library/ for the mirror', async () => {
      const local = await readLayout(layout, tag);
      const [repo, reference] = ref.slice(env.registry.length + 1).split(':') as [string, string];
      for (const r of [repo, `library/${repo}`]) {
        const remote = await registryManifest(r, reference);
        expect(remote.digest).toBe(local.digest);
        expect(remote.body.equals(local.manifestBytes)).toBe(true);
        const manifest = JSON.parse(remote.body.toString('utf8'));
        const config = JSON.parse((await registryBlob(r, manifest.config.digest)).toString('utf8'));
        expect(config.config.Cmd).toEqual(cmd);
        expect(config.rootfs.diff_ids).toEqual(local.config.rootfs.diff_ids);
      }
    });
  });

  it('makes the busybox layout reproducibly (same digest when built again)', async () => {
    const out = await tmpDir();
    const script = resolve(import.meta.dirname, '..', 'testdata', 'make-base-images.sh');
    const { stdout } = await run('bash', [script, '--busybox-only', '--out', out]);
    expect(stdout.trim().split('\n').at(-1)).toBe(out);
    expect(existsSync(join(out, 'debian'))).toBe(false);
    const again = await readLayout(join(out, 'busybox'), 'latest');
    const cached = await readLayout(env.busyboxOci, 'latest');
    expect(again.digest).toBe(cached.digest);
  });

  it('runs the busybox image in the test dockerd, with the kiln user', async () => {
    const pull = await docker(['pull', env.busybox]);
    expect(pull.code, pull.stderr).toBe(0);
    const r = await docker([
      'run',
      '--rm',
      '--network',
      'none',
      env.busybox,
      'sh',
      '-c',
      'grep "^kiln:" /etc/passwd; id kiln; stat -c "%a %u" /tmp /home/kiln',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      'kiln:x:1000:1000:kiln test user:/home/kiln:/bin/sh\n' + 'uid=1000(kiln) gid=1000(kiln) groups=1000(kiln),50(staff)\n' + '1777 0\n755 1000\n',
    );
  });

  it('runs the Debian image, which has apt-get', async () => {
    const pull = await docker(['pull', env.debian]);
    expect(pull.code, pull.stderr).toBe(0);
    const r = await docker([
      'run',
      '--rm',
      '--network',
      'none',
      env.debian,
      'bash',
      '-c',
      'test -x /usr/bin/apt-get && apt-get --version | head -n 1 && . /etc/os-release && echo "$VERSION_CODENAME"',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^apt \d+\.\d+.*\nbookworm\n$/);
  });

  it('builds `FROM busybox` with BuildKit through the registry mirror, and runs the result', async () => {
    const dir = await tmpDir();
    await writeFile(join(dir, 'Dockerfile'), 'FROM busybox\nRUN echo hi > /x\n');
    const tag = `kiln-testenv-check:${process.pid}`;
    try {
      const b = await docker(['build', '--network', 'host', '--progress', 'plain', '-t', tag, dir]);
      expect(b.code, b.stderr).toBe(0);
      // BuildKit's log: proves the builder was BuildKit, not the classic one.
      expect(b.stderr).toMatch(/#\d+ \[1\/2\] FROM docker\.io\/library\/busybox/);
      const inspect = await docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', tag]);
      expect(inspect.code, inspect.stderr).toBe(0);
      const base = await readLayout(env.busyboxOci, 'latest');
      // The base layer is ours, so the mirror (not some other source) served `busybox`.
      expect(JSON.parse(inspect.stdout)[0]).toBe(base.config.rootfs.diff_ids[0]);
      const r = await docker(['run', '--rm', '--network', 'none', tag, 'cat', '/x']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe('hi\n');
    } finally {
      await docker(['image', 'rm', '-f', tag]);
    }
  });

  it('docker() reports failures instead of throwing', async () => {
    const r = await docker(['run', '--rm', '--network', 'none', env.busybox, 'sh', '-c', 'echo oops >&2; exit 3']);
    expect(r.code).toBe(3);
    expect(r.stderr).toBe('oops\n');
  });
});

describe('tmpDir', () => {
  let made = '';
  it('makes an empty directory', async () => {
    made = await tmpDir();
    expect(await readdir(made)).toEqual([]);
    await writeFile(join(made, 'f'), 'x');
  });
  it('removed it after the test that made it', () => {
    expect(made).not.toBe('');
    expect(existsSync(made)).toBe(false);
  });
});
