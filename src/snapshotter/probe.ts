// Picks the driver for a root: overlayfs if a real probe mount on that file system works (upper and
// work dir there, a whiteout created through it), the copying driver otherwise. A root that is itself
// on overlayfs, or on a file system without trusted xattrs or mknod, fails the probe.
import * as fsp from 'node:fs/promises';
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

/** Opens (creating if needed) the snapshotter at `root` with the chosen or probed driver. */
export async function createSnapshotter(root: string, driver: DriverChoice = 'auto'): Promise<Snapshotter> {
  const useOverlay = driver === 'overlay' || (driver === 'auto' && (await overlaySupported(root)));
  const s = useOverlay ? new OverlaySnapshotter(root) : new CopySnapshotter(root);
  return s.init();
}
