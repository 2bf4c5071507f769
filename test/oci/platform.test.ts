import { describe, expect, it } from 'vitest';
import { formatPlatform, normalizePlatform, parsePlatform, platformMatches, selectPlatform } from '../../src/oci/index.js';

describe('platforms', () => {
  it.each([
    ['linux/amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/x86-64', 'linux/amd64'],
    ['Linux/AMD64', 'linux/amd64'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/armhf', 'linux/arm/v7'],
    ['linux/armel', 'linux/arm/v6'],
    ['linux/i386', 'linux/386'],
    ['linux/riscv64', 'linux/riscv64'],
    ['arm64', 'linux/arm64'],
  ])('%s normalises to %s', (input, want) => {
    expect(formatPlatform(parsePlatform(input))).toBe(want);
  });

  it('rejects malformed specs', () => {
    expect(() => parsePlatform('linux//amd64')).toThrow(/invalid platform "linux\/\/amd64"/);
    expect(() => parsePlatform('a/b/c/d')).toThrow(/invalid platform/);
  });

  it('matches compatible variants and refuses others', () => {
    expect(platformMatches(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v6' })).toBe(true);
    expect(platformMatches(parsePlatform('linux/arm/v6'), { os: 'linux', architecture: 'arm', variant: 'v7' })).toBe(false);
    expect(platformMatches(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' })).toBe(true);
    expect(platformMatches(parsePlatform('linux/amd64'), { os: 'windows', architecture: 'amd64' })).toBe(false);
    expect(normalizePlatform({ os: 'linux', architecture: 'amd64', variant: 'v1' })).toEqual({ os: 'linux', architecture: 'amd64' });
  });

  it('selects the best entry of an index', () => {
    const entries = [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm', variant: 'v6' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
      undefined,
    ];
    expect(selectPlatform(parsePlatform('linux/arm/v7'), entries)).toBe(2);
    expect(selectPlatform(parsePlatform('linux/arm/v6'), entries)).toBe(1);
    expect(selectPlatform(parsePlatform('linux/aarch64'), entries)).toBe(3);
    expect(selectPlatform(parsePlatform('linux/x86_64'), entries)).toBe(0);
    expect(selectPlatform(parsePlatform('linux/s390x'), entries)).toBe(-1);
    // An amd64 v3 machine takes a plain amd64 image when there is nothing better.
    expect(selectPlatform({ os: 'linux', architecture: 'amd64', variant: 'v3' }, entries)).toBe(0);
  });
});
