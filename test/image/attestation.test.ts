import { describe, expect, it } from 'vitest';
import { imagePurl } from '../../src/image/exporter/attestation.js';

describe('image package URLs (BuildKit purl.RefToPURL)', () => {
  const amd64 = { os: 'linux', architecture: 'amd64' };
  it.each([
    ['busybox', undefined, 'pkg:docker/busybox@latest'],
    ['docker.io/library/alpine:3.19', amd64, 'pkg:docker/alpine@3.19?platform=linux%2Famd64'],
    ['user/app:1', amd64, 'pkg:docker/user/app@1?platform=linux%2Famd64'],
    ['127.0.0.1:5055/team/app:v2', amd64, 'pkg:docker/127.0.0.1:5055/team/app@v2?platform=linux%2Famd64'],
    [
      'ghcr.io/o/r@sha256:' + 'a'.repeat(64),
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
      `pkg:docker/ghcr.io/o/r?digest=sha256%3A${'a'.repeat(64)}&platform=linux%2Farm64`,
    ],
    ['app:1@sha256:' + 'b'.repeat(64), undefined, `pkg:docker/app@1?digest=sha256%3A${'b'.repeat(64)}`],
  ])('%s', (ref, platform, want) => {
    expect(imagePurl(ref, platform)).toBe(want);
  });
});
