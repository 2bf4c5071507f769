// Platform strings ("linux/arm64/v8") as containerd's platforms.Parse / Format understand them,
// reduced to what a Dockerfile needs: FROM --platform and the BUILD*/TARGET* arguments.

import { fail } from './errors.js';
import type { Platform } from './types.js';

const knownOS = new Set([
  'aix',
  'android',
  'darwin',
  'dragonfly',
  'freebsd',
  'illumos',
  'ios',
  'js',
  'linux',
  'netbsd',
  'openbsd',
  'plan9',
  'solaris',
  'wasip1',
  'windows',
]);
const knownArch = new Set(['386', 'amd64', 'arm', 'arm64', 'loong64', 'mips', 'mips64', 'mips64le', 'mipsle', 'ppc64', 'ppc64le', 'riscv64', 's390x', 'wasm']);

function normalizeArch(arch: string, variant: string): [string, string] {
  arch = arch.toLowerCase();
  variant = variant.toLowerCase();
  switch (arch) {
    case 'i386':
    case 'i486':
    case 'i586':
    case 'i686':
      return ['386', ''];
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return ['amd64', variant === 'v1' ? '' : variant];
    case 'aarch64':
    case 'arm64':
      return ['arm64', variant === '8' || variant === 'v8' ? '' : variant];
    case 'armhf':
      return ['arm', 'v7'];
    case 'armel':
      return ['arm', 'v6'];
    case 'arm':
      if (variant === '' || variant === '7') return ['arm', 'v7'];
      if (variant === '5' || variant === '6' || variant === '8') return ['arm', 'v' + variant];
      return ['arm', variant];
  }
  return [arch, variant];
}

/** Parses "os/arch[/variant]", "os" or "arch" (the other part defaulting to `dflt`). */
export function parsePlatform(spec: string, dflt: Platform): Platform {
  const parts = spec.split('/');
  const bad = () => fail(`${JSON.stringify(spec)}: unknown operating system or architecture: invalid argument`);
  if (parts.some((p) => p === '' || !/^[A-Za-z0-9_.-]+$/.test(p)) || parts.length > 3) bad();
  let os: string;
  let arch: string;
  let variant = '';
  if (parts.length === 1) {
    const p = parts[0].toLowerCase();
    if (knownOS.has(p)) {
      os = p;
      arch = dflt.architecture;
      variant = dflt.variant ?? '';
    } else {
      [arch, variant] = normalizeArch(p, '');
      if (!knownArch.has(arch)) bad();
      os = dflt.os;
      return withVariant({ os, architecture: arch }, variant);
    }
  } else {
    os = parts[0].toLowerCase();
    if (!knownOS.has(os)) bad();
    arch = parts[1];
    variant = parts[2] ?? '';
  }
  [arch, variant] = normalizeArch(arch, variant);
  return withVariant({ os, architecture: arch }, variant);
}

function withVariant(p: Platform, variant: string): Platform {
  return variant ? { ...p, variant } : p;
}

export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}
