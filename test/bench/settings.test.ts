import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BuildahBuilder, buildahRegistriesConf, DockerBuilder, imageName, KilnBuilder } from '../../bench/builders.js';
import { parseStatus } from '../../bench/testenv.js';
import { WORKLOADS } from '../../bench/workloads.js';

describe('parseStatus', () => {
  it('reads scripts/testenv.sh status', () => {
    const up = [
      'images:   /var/cache/kiln-testdata/e0782d6aa6c0e650',
      '  busybox: sha256:a7',
      'registry: up on 127.0.0.1:5055 (ours, pid 24598)',
      'dockerd:  up on unix:///run/kiln-test/docker.sock (pid 28073)',
      'holders:  none',
    ].join('\n');
    expect(parseStatus(up)).toEqual({ registry: true, dockerd: true });
    expect(parseStatus('registry: down\ndockerd:  up on unix:///x\n')).toEqual({ registry: false, dockerd: true });
    expect(parseStatus('registry: up on 127.0.0.1:5055\ndockerd:  down\n')).toEqual({ registry: true, dockerd: false });
  });
});

describe('builder settings', () => {
  it('buildah mirrors docker.io to the local registry over plain HTTP, short names searched there', () => {
    const conf = buildahRegistriesConf('127.0.0.1:5055');
    expect(conf).toContain('unqualified-search-registries = ["docker.io"]');
    expect(conf).toMatch(
      /\[\[registry\]\]\nprefix = "docker.io"\nlocation = "docker.io"\n\n\[\[registry.mirror\]\]\nlocation = "127.0.0.1:5055"\ninsecure = true/,
    );
  });

  it('one image name per workload, the same in every builder', () => {
    expect(imageName(WORKLOADS.bigctx)).toBe('kiln-bench/bigctx:latest');
  });
});

describe('a builder that is not there is reported missing, with the reason', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('kiln without its compiled CLI', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-probe-'));
    const p = await new KilnBuilder({ cli: join(dir, 'nope', 'main.js'), work: join(dir, 'kiln'), registry: '127.0.0.1:1' }).probe();
    expect(p).toEqual({ ok: false, reason: expect.stringMatching(/nope\/main\.js is missing/) });
  });

  it('docker without a daemon on its socket, or without a client', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-probe-'));
    if (existsSync('/usr/bin/docker')) {
      const p = await new DockerBuilder({ docker: '/usr/bin/docker', host: `unix://${join(dir, 'none.sock')}` }).probe();
      expect(p).toEqual({ ok: false, reason: expect.stringMatching(/^no daemon on unix:\/\//) });
    }
    const q = await new DockerBuilder({ docker: join(dir, 'docker'), host: 'unix:///x' }).probe();
    expect(q).toEqual({ ok: false, reason: expect.stringMatching(/is not installed/) });
  });

  it('buildah that does not run', async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-probe-'));
    const p = await new BuildahBuilder({ buildah: join(dir, 'buildah'), runc: '/usr/sbin/runc', work: join(dir, 'b'), registry: '127.0.0.1:1' }).probe();
    expect(p).toEqual({ ok: false, reason: expect.stringMatching(/--version failed/) });
  });
});
