// Picks the driver for a root: overlayfs if a real probe mount on that file system works (upper and
// work dir there, a whiteout created through it), the copying driver otherwise. A root that is itself
// on overlayfs, or on a file system without trusted xattrs or mknod, fails the probe.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { CopySnapshotter } from './copy.js';
import { isWhiteout } from './fsops.js';
import { mountAll, unmount } from './mount.js';
import { OverlaySnapshotter } from './overlay.js';
import type { Snapshotter } from './types.js';

export type DriverChoice = 'auto' | 'overlay' | 'copy';

/** True when overlayfs works with upper and work dirs under `root`. */
export async function overlaySupported(root: string): Promise<boolean> {
  await fsp.mkdir(root, { recursive: true, mode: 0o700 });
  const dir = await fsp.mkdtemp(path.join(root, '.probe-'));
  const [l1, l2, upper, work, merged] = ['l1', 'l2', 'upper', 'work', 'merged'].map((n) => path.join(dir, n)) as [string, string, string, string, string];
  try {
    for (const d of [l1, l2, upper, work, merged]) await fsp.mkdir(d);
    await fsp.writeFile(path.join(l1, 'f'), 'x');
    await mountAll([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${l2}:${l1}`, `upperdir=${upper}`, `workdir=${work}`] }], merged);
    try {
      await fsp.rm(path.join(merged, 'f'));
    } finally {
      await unmount(merged);
    }
    return isWhiteout(await fsp.lstat(path.join(upper, 'f')));
  } catch {
    return false;
  } finally {
    await unmount(merged).catch(() => undefined);
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * The probe's answer is kept beside the snapshots, for this kernel and this file system: a root
 * opened again (every embedded build opens it) skips the probe's mount and unmount, and its
 * snapshots keep the driver that made them.
 */
const CHOICE_FILE = '.driver.json';

async function probedOnce(root: string): Promise<boolean> {
  await fsp.mkdir(root, { recursive: true, mode: 0o700 });
  const here = { kernel: os.release(), dev: (await fsp.stat(root)).dev };
  const file = path.join(root, CHOICE_FILE);
  try {
    const kept = JSON.parse(await fsp.readFile(file, 'utf8')) as { overlay?: unknown; kernel?: unknown; dev?: unknown };
    if (kept.kernel === here.kernel && kept.dev === here.dev && typeof kept.overlay === 'boolean') return kept.overlay;
  } catch {
    /* none yet, or unreadable: probe */
  }
  const overlay = await overlaySupported(root);
  const tmp = `${file}.tmp-${process.pid}`;
  await fsp.writeFile(tmp, JSON.stringify({ overlay, ...here }));
  await fsp.rename(tmp, file);
  return overlay;
}

/** Opens (creating if needed) the snapshotter at `root` with the chosen or probed driver. */
export async function createSnapshotter(root: string, driver: DriverChoice = 'auto'): Promise<Snapshotter> {
  const useOverlay = driver === 'overlay' || (driver === 'auto' && (await probedOnce(root)));
  const s = useOverlay ? new OverlaySnapshotter(root) : new CopySnapshotter(root);
  return s.init();
}
