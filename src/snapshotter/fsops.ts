// Low-level file-system operations Node lacks: running helper programs (mount, mknod), xattrs (via
// @napi-rs/xattr, whose calls act on a symlink itself rather than its target), device numbers.
import { spawn } from 'node:child_process';
import type { Stats, BigIntStats } from 'node:fs';
import { xattrs } from '../util/lazy-modules.js';

export class CommandError extends Error {
  constructor(
    message: string,
    readonly code: number | null,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** Runs a program (no shell), resolving with stdout; rejects with its stderr on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new CommandError(`${cmd} ${args.join(' ')}: exit ${code}: ${err.trim()}`, code, err));
    });
  });
}

/** Creates a device node or fifo (Node has no mknod). `path` must already be resolved safely. */
export async function mknod(path: string, type: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  const args = type === 'p' ? ['-m', '0600', path, 'p'] : ['-m', '0600', path, type, String(major), String(minor)];
  await run('mknod', args);
}

export function devMajor(rdev: number | bigint): number {
  const r = BigInt(rdev);
  return Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn));
}

export function devMinor(rdev: number | bigint): number {
  const r = BigInt(rdev);
  return Number((r & 0xffn) | ((r >> 12n) & ~0xffn));
}

/** An overlayfs whiteout: a character device with device number 0/0. */
export function isWhiteout(st: Stats | BigIntStats): boolean {
  return st.isCharacterDevice() && BigInt(st.rdev) === 0n;
}

export const OVERLAY_OPAQUE = 'trusted.overlay.opaque';

/** Xattrs private to overlayfs: never copied into or out of a layer (a layer could forge redirects). */
export function isOverlayPrivate(name: string): boolean {
  return name.startsWith('trusted.overlay.');
}

export async function setXattr(path: string, name: string, value: Buffer): Promise<void> {
  await xattrs().setAttribute(path, name, value);
}

/**
 * All xattrs of `path` (not following a final symlink), sorted by name, overlay-private ones left
 * out. Synchronous: the walks that read them run a slice at a time on the calling thread.
 */
export function readXattrsSync(path: string): Array<[string, Buffer]> {
  let names: string[];
  try {
    names = xattrs().listAttributesSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTSUP') return [];
    throw err;
  }
  if (names.length === 0) return [];
  const out: Array<[string, Buffer]> = [];
  for (const name of names.filter((n) => !isOverlayPrivate(n)).sort()) {
    const value = xattrs().getAttributeSync(path, name);
    if (value) out.push([name, Buffer.from(value)]);
  }
  return out;
}

export function getXattrSync(path: string, name: string): Buffer | null {
  try {
    return xattrs().getAttributeSync(path, name);
  } catch {
    return null;
  }
}

export function setXattrSync(path: string, name: string, value: Buffer): void {
  xattrs().setAttributeSync(path, name, value);
}
