import { describe, expect, it } from 'vitest';
import { buildahRegistriesConf, imageName } from '../../bench/builders.js';
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
    expect(conf).toMatch(/\[\[registry\]\]\nprefix = "docker.io"\nlocation = "docker.io"\n\n\[\[registry.mirror\]\]\nlocation = "127.0.0.1:5055"\ninsecure = true/);
  });

  it('one image name per workload, the same in every builder', () => {
    expect(imageName(WORKLOADS.bigctx)).toBe('kiln-bench/bigctx:latest');
  });
});
