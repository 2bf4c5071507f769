// Mounting and unmounting by spawning util-linux mount/umount (runc wants the rootfs as a directory).
//
// The kernel takes legacy mount options in one page (4096 bytes here). An overlay over a deep chain
// with absolute lowerdir paths overflows that, so, as containerd does, the paths are rewritten relative
// to their longest common directory and `mount` runs with that directory as its cwd.
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { run } from './fsops.js';
import type { Mount } from './types.js';

export const PAGE_SIZE = 4096;
/** The overlay driver refuses more lower layers than this (OVL_MAX_STACK). */
export const OVERLAY_MAX_LOWERS = 500;

const PATH_OPTIONS = ['lowerdir', 'upperdir', 'workdir'];

function commonDir(paths: string[]): string {
  let common = path.dirname(paths[0]!);
  for (const p of paths) {
    while (common !== '/' && !(p === common || p.startsWith(`${common}/`))) common = path.dirname(common);
  }
  return common;
}

/**
 * Overlay options that fit in a page, plus the cwd to run mount in. Throws if even the relative form
 * does not fit.
 */
export function compactOverlayOptions(options: string[]): { options: string[]; cwd?: string } {
  const data = options.join(',');
  if (data.length < PAGE_SIZE) return { options };
  const paths: string[] = [];
  for (const o of options) {
    const [k, v] = splitOption(o);
    if (v !== undefined && PATH_OPTIONS.includes(k)) paths.push(...v.split(':'));
  }
  if (paths.length === 0 || !paths.every((p) => path.isAbsolute(p))) return { options };
  const cwd = commonDir(paths);
  const rel = (p: string) => path.relative(cwd, p) || '.';
  const out = options.map((o) => {
    const [k, v] = splitOption(o);
    return v !== undefined && PATH_OPTIONS.includes(k) ? `${k}=${v.split(':').map(rel).join(':')}` : o;
  });
  const len = out.join(',').length;
  if (len >= PAGE_SIZE) throw new Error(`overlay mount options are ${len} bytes even with paths relative to ${cwd}: more than a page (${PAGE_SIZE})`);
  return { options: out, cwd };
}

function splitOption(o: string): [string, string | undefined] {
  const i = o.indexOf('=');
  return i === -1 ? [o, undefined] : [o.slice(0, i), o.slice(i + 1)];
}

/** Mounts `mounts` on `target` in order (the last one on top). */
export async function mountAll(mounts: Mount[], target: string): Promise<void> {
  const done: number[] = [];
  try {
    for (const m of mounts) {
      await mountOne(m, target);
      done.push(1);
    }
  } catch (err) {
    for (const _ of done) await unmount(target).catch(() => undefined);
    throw err;
  }
}

async function mountOne(m: Mount, target: string): Promise<void> {
  if (m.type === 'bind' || m.type === 'rbind') {
    const opts = m.options.filter((o) => o !== 'bind' && o !== 'rbind');
    const recursive = m.type === 'rbind' || m.options.includes('rbind');
    await run('mount', ['--no-mtab', recursive ? '--rbind' : '--bind', m.source, target]);
    // A read-only bind needs a remount (util-linux does that too, but say it explicitly).
    if (opts.includes('ro')) {
      try {
        await run('mount', ['--no-mtab', '-o', 'remount,bind,ro', target]);
      } catch (err) {
        await unmount(target).catch(() => undefined);
        throw err;
      }
    }
    return;
  }
  let options = m.options;
  let cwd: string | undefined;
  if (m.type === 'overlay') ({ options, cwd } = compactOverlayOptions(m.options));
  const args = ['--no-mtab', '-t', m.type];
  if (options.length) args.push('-o', options.join(','));
  args.push(m.source, target);
  await run('mount', args, { cwd });
}

/** Mount points at or below `target`, deepest first, from /proc/self/mountinfo. */
export async function mountsUnder(target: string): Promise<string[]> {
  const abs = path.resolve(target);
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info
    .split('\n')
    .filter(Boolean)
    .map((line) => unescapeMountinfo(line.split(' ')[4]!))
    .filter((p) => p === abs || p.startsWith(`${abs}/`));
  return points.sort((a, b) => b.length - a.length);
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export async function isMountPoint(target: string): Promise<boolean> {
  return (await mountsUnder(target)).includes(path.resolve(target));
}

/**
 * Unmounts everything mounted at or below `target` (idempotent: nothing mounted is not an error).
 * A busy mount is retried a few times, then detached lazily so cleanup can always proceed.
 */
export async function unmount(target: string): Promise<void> {
  for (const point of await mountsUnder(target)) {
    let lastErr: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await run('umount', [point]);
        lastErr = undefined;
        break;
      } catch (err) {
        lastErr = err;
        if (!(await isMountPoint(point))) {
          lastErr = undefined;
          break;
        }
        await new Promise((r) => setTimeout(r, 50 * (attempt + 1)));
      }
    }
    if (lastErr) await run('umount', ['-l', point]);
  }
}
