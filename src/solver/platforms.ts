// Platforms as the solver sees them: which platform each stage builds for (FROM --platform, inherited
// from a base stage, else the target's), how BuildKit names a step of a multi-platform build in
// progress, and whether this host can execute a RUN for a platform (natively or through a binfmt_misc
// emulator such as qemu-user).

import { readdirSync, readFileSync } from 'node:fs';
import { parsePlatform } from '../frontend/platform.js';
import type { BuildGraph, Platform, RunStep, Stage } from '../frontend/types.js';
import { formatPlatform, normalizePlatform } from '../oci/index.js';
import { StepError } from './ops/types.js';

/**
 * The platform a stage's RUN steps execute for and its base image is pulled for, as BuildKit's
 * Dockerfile frontend decides it: FROM --platform (not on scratch, which is always the target's),
 * else the platform of the stage it builds on, else the target platform.
 */
export function stagePlatform(graph: BuildGraph, stage: Stage, target: Platform): Platform {
  if (stage.base.kind === 'scratch') return target;
  if (stage.platform !== undefined) {
    try {
      return normalizePlatform(parsePlatform(stage.platform, target));
    } catch {
      return target; // the frontend already refused an unparsable --platform; never reached
    }
  }
  if (stage.base.kind === 'stage') {
    const index = stage.base.index;
    const base = graph.stages.find((s) => s.index === index);
    if (base) return stagePlatform(graph, base, target);
  }
  return target;
}

/**
 * The platform part of a step's progress name in a multi-platform build, as BuildKit writes it:
 * "linux/amd64", and for a step of a build-platform stage that sees the target through its
 * TARGET* arguments, "linux/amd64->arm64" (or "->os/arch" when the OS differs too).
 */
export function progressPlatform(platform: Platform, target: Platform, args: readonly [string, string][] | undefined): string {
  const base = formatPlatform(platform);
  if (!args?.some(([k]) => TARGET_ARGS.includes(k))) return base;
  const p = normalizePlatform(target);
  const b = normalizePlatform(platform);
  if (p.os === b.os && p.architecture !== b.architecture) return `${base}->${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
  if (p.os !== b.os) return `${base}->${formatPlatform(p)}`;
  return base;
}

const TARGET_ARGS = ['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'];

/** Architectures a CPU of the key architecture runs without an emulator. */
const NATIVE: Record<string, string[]> = {
  amd64: ['amd64', '386'],
  arm64: ['arm64', 'arm'],
  arm: ['arm'],
};

/** The binfmt_misc handler names qemu-user (and tonistiigi/binfmt) register, per architecture. */
const QEMU_NAMES: Record<string, string[]> = {
  amd64: ['qemu-x86_64'],
  '386': ['qemu-i386'],
  arm64: ['qemu-aarch64'],
  arm: ['qemu-arm'],
  riscv64: ['qemu-riscv64'],
  ppc64le: ['qemu-ppc64le'],
  s390x: ['qemu-s390x'],
  mips64le: ['qemu-mips64el'],
  mips64: ['qemu-mips64'],
  loong64: ['qemu-loongarch64'],
};

const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';

/** A binfmt_misc handler for an architecture, as /proc/sys/fs/binfmt_misc/<name> describes it. */
export interface BinfmtHandler {
  name: string;
  enabled: boolean;
  /**
   * The F (fix binary) flag: the kernel opened the interpreter when it was registered, so it runs
   * inside a container's root too. Without it the interpreter path is looked up in the container,
   * where it is not.
   */
  fixBinary: boolean;
}

/** The registered handler for `architecture`, if any (the enabled one first). */
export function binfmtHandler(architecture: string, dir = BINFMT_DIR): BinfmtHandler | undefined {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return undefined; // binfmt_misc not mounted: nothing can be emulated
  }
  let found: BinfmtHandler | undefined;
  for (const name of QEMU_NAMES[architecture] ?? [`qemu-${architecture}`]) {
    if (!entries.includes(name)) continue;
    let text: string;
    try {
      text = readFileSync(`${dir}/${name}`, 'utf8');
    } catch {
      continue; // unreadable: treat as absent
    }
    const lines = text.split('\n').map((l) => l.trim());
    const flags =
      lines
        .find((l) => l.startsWith('flags:'))
        ?.slice('flags:'.length)
        .trim() ?? '';
    const h = { name, enabled: lines[0] === 'enabled', fixBinary: flags.includes('F') };
    if (h.enabled && h.fixBinary) return h;
    found ??= h;
  }
  return found;
}

/** Whether an emulator for `architecture` is registered, enabled and usable inside a container. */
export function emulatorRegistered(architecture: string, dir = BINFMT_DIR): boolean {
  const h = binfmtHandler(architecture, dir);
  return h?.enabled === true && h.fixBinary;
}

/** Whether this host can execute binaries of `platform` (natively or emulated). */
export function canExecute(host: Platform, platform: Platform, dir = BINFMT_DIR): boolean {
  const h = normalizePlatform(host);
  const p = normalizePlatform(platform);
  if (p.os !== h.os) return false;
  if ((NATIVE[h.architecture] ?? [h.architecture]).includes(p.architecture)) return true;
  return emulatorRegistered(p.architecture, dir);
}

/**
 * Refuses a RUN the host cannot execute, before a container is started for it: runc would only
 * fail with "exec format error", which names neither the platform nor a way out.
 */
export function checkRunnable(step: RunStep, platform: Platform, host: Platform, dir = BINFMT_DIR): void {
  if (canExecute(host, platform, dir)) return;
  const arch = normalizePlatform(platform).architecture;
  const h = binfmtHandler(arch, dir);
  const why = !h
    ? 'no emulator registered'
    : !h.enabled
      ? `emulator ${h.name} is registered but disabled`
      : `emulator ${h.name} is registered without the F (fix binary) flag, so a container cannot reach it`;
  throw new StepError(
    step.location,
    `${step.original}: cannot run ${formatPlatform(platform)} binaries on ${formatPlatform(host)} (${why}): ` +
      `register a binfmt_misc handler for ${arch} with the F flag (e.g. qemu-user-static, or tonistiigi/binfmt), ` +
      'or build this stage FROM --platform=$BUILDPLATFORM and cross-compile for $TARGETARCH',
  );
}
