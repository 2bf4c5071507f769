// One process at a time owns a kiln root (the snapshotter's metadata and the runc state assume it).
// A second process waits; a lock left by a killed process is taken over.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { processAlive } from '../fsutil/process.js';

/** The root is held by another live kiln process and the caller chose not to wait (a daemon). */
export class RootBusyError extends Error {
  constructor(
    readonly root: string,
    readonly holder: number,
  ) {
    super(`kiln root ${root} is in use by another kiln process (pid ${holder}); one daemon or build owns a root at a time`);
    this.name = 'RootBusyError';
  }
}

/**
 * Takes the root's lock. With `onWait` a live holder is waited for (embedded builds queue behind each
 * other); with `wait: false` it is an immediate RootBusyError (a second daemon must not wait forever).
 */
export async function acquireRootLock(root: string, onWait?: ((holder: number) => void) | { wait: false }): Promise<() => Promise<void>> {
  await fsp.mkdir(root, { recursive: true });
  const file = path.join(root, 'kiln.lock');
  let told = false;
  for (;;) {
    try {
      const fh = await fsp.open(file, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return async () => {
        // Only remove our own lock.
        const holder = Number(await fsp.readFile(file, 'utf8').catch(() => ''));
        if (holder === process.pid) await fsp.rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const text = await fsp.readFile(file, 'utf8').catch(() => '');
    const holder = Number(text);
    // An empty file is a lock being written right now, unless it has been empty for a while.
    const beingWritten = text === '' && Date.now() - ((await fsp.stat(file).catch(() => undefined))?.mtimeMs ?? 0) < 5000;
    if (!beingWritten && (!Number.isInteger(holder) || holder <= 0 || !processAlive(holder))) {
      // Left by a killed process (or torn while being written): remove it and compete again through
      // the exclusive create above. Two processes taking over the same stale lock in the same
      // instant is the one window this leaves open; Node has no flock(2) to close it.
      await fsp.rm(file, { force: true });
      continue;
    }
    if (typeof onWait === 'object') throw new RootBusyError(root, holder);
    if (!told) {
      onWait?.(holder);
      told = true;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
