// The solver's platform rules, as tables: which platform a stage builds for, BuildKit's progress
// names in a multi-platform build, and whether a host executes a platform (a binfmt_misc directory
// made here stands in for /proc/sys/fs/binfmt_misc). The real builds are in test/cli/multi-platform.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildGraph } from '../../src/frontend/index.js';
import type { Platform, RunStep } from '../../src/frontend/types.js';
import { canExecute, checkRunnable, emulatorRegistered, progressPlatform, stagePlatform } from '../../src/solver/platforms.js';

const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const arm64: Platform = { os: 'linux', architecture: 'arm64' };

describe('stagePlatform', () => {
  const text = [
    'FROM --platform=$BUILDPLATFORM busybox AS build',
    'FROM build AS more',
    'FROM --platform=linux/arm/v7 busybox AS arm',
    'FROM busybox AS target',
    'FROM --platform=$BUILDPLATFORM scratch AS empty',
    'FROM target',
    'COPY --from=more / /',
    'COPY --from=arm / /',
    'COPY --from=empty / /',
    '',
  ].join('\n');
  const graph = buildGraph(text, { filename: 'Dockerfile', buildPlatform: amd64, targetPlatform: arm64 });
  const byName = (n: string) => graph.stages.find((s) => s.name === n)!;

  it.each([
    ['build', amd64, 'FROM --platform=$BUILDPLATFORM: the build machine'],
    ['more', amd64, "FROM a stage: that stage's platform"],
    ['arm', { os: 'linux', architecture: 'arm', variant: 'v7' }, 'a constant --platform'],
    ['target', arm64, 'no --platform: the target'],
    ['empty', arm64, "scratch is always the target's (BuildKit ignores --platform there)"],
  ])('%s -> %j (%s)', (name, want) => {
    expect(stagePlatform(graph, byName(name), arm64)).toEqual(want);
  });
});

describe('progressPlatform', () => {
  it.each([
    ['same platform', amd64, amd64, [['TARGETARCH', 'amd64']], 'linux/amd64'],
    ['no TARGET* argument in scope: no arrow', amd64, arm64, [['FOO', '1']], 'linux/amd64'],
    ['a build-platform step that sees the target', amd64, arm64, [['TARGETARCH', 'arm64']], 'linux/amd64->arm64'],
    ['with a variant', amd64, { os: 'linux', architecture: 'arm', variant: 'v7' }, [['TARGETPLATFORM', 'linux/arm/v7']], 'linux/amd64->arm/v7'],
    ['another OS', amd64, { os: 'windows', architecture: 'amd64' }, [['TARGETOS', 'windows']], 'linux/amd64->windows/amd64'],
  ] as [string, Platform, Platform, [string, string][], string][])('%s', (_name, platform, target, args, want) => {
    expect(progressPlatform(platform, target, args)).toBe(want);
  });
});

describe('canExecute and the binfmt_misc check', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-binfmt-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const withHandlers = path.join(dir, 'with');
  mkdirSync(withHandlers);
  writeFileSync(path.join(withHandlers, 'register'), '');
  writeFileSync(path.join(withHandlers, 'status'), 'enabled\n');
  writeFileSync(path.join(withHandlers, 'qemu-aarch64'), 'enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: F\n');
  writeFileSync(path.join(withHandlers, 'qemu-riscv64'), 'disabled\ninterpreter /usr/bin/qemu-riscv64-static\n');
  writeFileSync(path.join(withHandlers, 'qemu-s390x'), 'enabled\ninterpreter /usr/bin/qemu-s390x\nflags: OC\noffset 0\n');

  it.each([
    ['the host platform', amd64, amd64, withHandlers, true],
    ['386 on amd64, natively', amd64, { os: 'linux', architecture: '386' }, path.join(dir, 'missing'), true],
    ['arm64 with a qemu-aarch64 handler enabled', amd64, arm64, withHandlers, true],
    ['arm64 with binfmt_misc not mounted', amd64, arm64, path.join(dir, 'missing'), false],
    ['riscv64 whose handler is disabled', amd64, { os: 'linux', architecture: 'riscv64' }, withHandlers, false],
    ['another OS', amd64, { os: 'windows', architecture: 'amd64' }, withHandlers, false],
    ['s390x whose handler lacks the F flag (its interpreter is not in the container)', amd64, { os: 'linux', architecture: 's390x' }, withHandlers, false],
  ] as [string, Platform, Platform, string, boolean][])('%s', (_name, host, platform, binfmt, want) => {
    expect(canExecute(host, platform, binfmt)).toBe(want);
  });

  it('emulatorRegistered reads the handler entry', () => {
    expect(emulatorRegistered('arm64', withHandlers)).toBe(true);
    expect(emulatorRegistered('riscv64', withHandlers)).toBe(false);
    expect(emulatorRegistered('s390x', withHandlers)).toBe(false);
    expect(emulatorRegistered('ppc64le', withHandlers)).toBe(false);
  });

  it('checkRunnable names the Dockerfile line, the platforms and the ways out', () => {
    const step = { kind: 'run', original: 'RUN make', location: { file: 'Dockerfile', line: 7, endLine: 7 } } as RunStep;
    expect(() => checkRunnable(step, arm64, amd64, path.join(dir, 'missing'))).toThrow(
      /^Dockerfile:7: RUN make: cannot run linux\/arm64 binaries on linux\/amd64 \(no emulator registered\): register a binfmt_misc handler for arm64 .*FROM --platform=\$BUILDPLATFORM/,
    );
    expect(() => checkRunnable(step, arm64, amd64, withHandlers)).not.toThrow();
    expect(() => checkRunnable(step, { os: 'linux', architecture: 's390x' }, amd64, withHandlers)).toThrow(
      /cannot run linux\/s390x binaries on linux\/amd64 \(emulator qemu-s390x is registered without the F \(fix binary\) flag/,
    );
    expect(() => checkRunnable(step, { os: 'linux', architecture: 'riscv64' }, amd64, withHandlers)).toThrow(
      /\(emulator qemu-riscv64 is registered but disabled\)/,
    );
  });
});
