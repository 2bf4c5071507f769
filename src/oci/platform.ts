// Platform names and matching, with the normalisations containerd applies (x86_64 -> amd64,
// aarch64 -> arm64 with v8 implied, bare arm -> arm/v7), so "linux/arm64/v8" and "linux/aarch64"
// pick the same manifest out of an index.

import type { Platform } from './types.js';

export class InvalidPlatformError extends Error {
  constructor(
    readonly value: string,
    reason: string,
  ) {
    super(`invalid platform ${JSON.stringify(value)}: ${reason}`);
    this.name = 'InvalidPlatformError';
  }
}

function normalizeOS(os: string): string {
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

function normalizeArch(arch: string, variant: string | undefined): { architecture: string; variant?: string } {
  const a = arch.toLowerCase();
  let v = variant?.toLowerCase() ?? '';
  let out: string;
  switch (a) {
    case 'i386':
    case 'i686':
    case '386':
      out = '386';
      v = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      out = 'amd64';
      if (v === 'v1') v = ''; // v1 is the baseline: same as no variant
      break;
    case 'aarch64':
    case 'arm64':
      out = 'arm64';
      if (v === '8' || v === 'v8' || v === 'v8.0') v = '';
      break;
    case 'armhf':
      out = 'arm';
      v = 'v7';
      break;
    case 'armel':
      out = 'arm';
      v = 'v6';
      break;
    case 'arm':
      out = 'arm';
      if (v === '' || v === '7') v = 'v7';
      else if (/^[5-8]$/.test(v)) v = `v${v}`;
      break;
    default:
      out = a;
  }
  return v ? { architecture: out, variant: v } : { architecture: out };
}

/** Canonical form of a platform; variant omitted when it is the architecture's default. */
export function normalizePlatform(p: Platform): Platform {
  const { architecture, variant } = normalizeArch(p.architecture, p.variant);
  const out: Platform = { os: normalizeOS(p.os), architecture };
  if (variant) out.variant = variant;
  return out;
}

/** Parses `os/arch[/variant]` (as in `--platform`); also accepts a bare `os` or a bare arch. */
export function parsePlatform(spec: string): Platform {
  const parts = spec.trim().split('/');
  if (parts.some((x) => x === '') || parts.length > 3) throw new InvalidPlatformError(spec, 'want os/arch[/variant]');
  if (parts.length === 1) {
    const only = parts[0]!.toLowerCase();
    // A bare word is an OS if we know it as one, else an architecture on linux.
    if (['linux', 'windows', 'darwin', 'freebsd'].includes(only)) return normalizePlatform({ os: only, architecture: hostArchitecture() });
    return normalizePlatform({ os: 'linux', architecture: only });
  }
  return normalizePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2] });
}

export function formatPlatform(p: Platform): string {
  const n = normalizePlatform(p);
  return [n.os, n.architecture, n.variant].filter(Boolean).join('/');
}

function hostArchitecture(): string {
  return normalizeArch(process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch, undefined).architecture;
}

/** The platform this process runs on (linux/<arch>). */
export function hostPlatform(): Platform {
  const arch = hostArchitecture();
  return arch === 'arm' ? { os: 'linux', architecture: 'arm', variant: 'v7' } : { os: 'linux', architecture: arch };
}

/**
 * Variants a machine of `want` also runs, best first: arm/v7 runs v6 and v5 binaries; an amd64 v3
 * machine runs v2 and v1 code. Returns the normalised variant strings ('' for the default).
 */
function compatibleVariants(want: Platform): string[] {
  const v = want.variant ?? '';
  if (want.architecture === 'arm') {
    const n = Number(v.slice(1));
    const out: string[] = [];
    for (let i = n; i >= 5; i--) out.push(`v${i}`);
    return out.length ? out : [v];
  }
  if (want.architecture === 'amd64') {
    const n = v ? Number(v.slice(1)) : 1;
    const out: string[] = [];
    for (let i = n; i >= 2; i--) out.push(`v${i}`);
    out.push('');
    return out;
  }
  return [v];
}

/**
 * Rank of `candidate` for a machine of `want`: 0 is an exact match, higher is a worse but usable
 * match, undefined means the candidate cannot run there.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(want);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  const order = compatibleVariants(w);
  const i = order.indexOf(c.variant ?? '');
  return i < 0 ? undefined : i;
}

export function platformMatches(want: Platform, candidate: Platform): boolean {
  return platformRank(want, candidate) !== undefined;
}

/** Index of the best entry for `want` among candidates, or -1; ties keep the first (index order). */
export function selectPlatform(want: Platform, candidates: (Platform | undefined)[]): number {
  let best = -1;
  let bestRank = Infinity;
  candidates.forEach((c, i) => {
    if (!c) return;
    const r = platformRank(want, c);
    if (r !== undefined && r < bestRank) {
      best = i;
      bestRank = r;
    }
  });
  return best;
}
