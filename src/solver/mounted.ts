// Scoped mounts: every snapshot the solver mounts is unmounted on the way out, whatever happens, so
// a failed or cancelled step leaves no mount behind.

import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { mountAll, unmount, type Snapshotter } from '../snapshotter/index.js';

type Mounts = Parameters<typeof mountAll>[0];

export function uniqueKey(prefix: string): string {
  return `${prefix}-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Releases what was acquired, last first, and keeps going when one release fails. */
export class Scope {
  private readonly releases: (() => Promise<unknown>)[] = [];
  defer(release: () => Promise<unknown>): void {
    this.releases.push(release);
  }
  async close(): Promise<void> {
    let first: unknown;
    while (this.releases.length) {
      try {
        await this.releases.pop()!();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }
}

/** Mounts `mounts` on a fresh directory under `tmpDir`; the scope unmounts and removes it. */
export async function mountDir(scope: Scope, tmpDir: string, mounts: Mounts): Promise<string> {
  await fsp.mkdir(tmpDir, { recursive: true });
  const dir = await fsp.mkdtemp(path.join(tmpDir, 'mnt-'));
  scope.defer(() => fsp.rmdir(dir).catch(() => undefined));
  await mountAll(mounts, dir);
  scope.defer(() => unmount(dir));
  return dir;
}

/** A read-only view of a committed snapshot (an empty directory for scratch), released with the scope. */
export async function mountView(scope: Scope, snapshotter: Snapshotter, tmpDir: string, parent: string | undefined): Promise<string> {
  const key = uniqueKey('view');
  const mounts = await snapshotter.view(key, parent);
  scope.defer(() => snapshotter.remove(key));
  return mountDir(scope, tmpDir, mounts);
}

export async function withScope<T>(fn: (scope: Scope) => Promise<T>): Promise<T> {
  const scope = new Scope();
  try {
    return await fn(scope);
  } finally {
    await scope.close();
  }
}

/**
 * Prepares a writable snapshot over `parent`, mounts it for `fn` (which may acquire more into the
 * scope), and commits it as `name` once everything is released and `fn` succeeded; on failure the
 * active snapshot is removed. If another build committed `name` meanwhile, that result is kept: the
 * name is a cache key, so both have the same content.
 */
export async function withActive(
  snapshotter: Snapshotter,
  tmpDir: string,
  parent: string | undefined,
  name: string,
  fn: (rootfs: string, scope: Scope) => Promise<void>,
  beforeMount?: (key: string) => Promise<void>,
): Promise<void> {
  const key = uniqueKey('active');
  const mounts = await snapshotter.prepare(key, parent);
  await commitActive(snapshotter, key, name, async () => {
    await beforeMount?.(key);
    await withScope(async (scope) => fn(await mountDir(scope, tmpDir, mounts), scope));
  });
}

/**
 * Runs `work` on the prepared (active) snapshot `key`, then commits it as `name`; when `work` or
 * the commit fails, the active snapshot is removed. If another build committed `name` meanwhile,
 * that result is kept: the name is a cache key, so both have the same content.
 */
export async function commitActive(
  snapshotter: Snapshotter,
  key: string,
  name: string,
  work: () => Promise<void>,
  opts?: Parameters<Snapshotter['commit']>[2],
): Promise<void> {
  let committed = false;
  try {
    await work();
    try {
      await snapshotter.commit(name, key, opts);
      committed = true;
    } catch (err) {
      if ((err as { code?: string }).code !== 'exists') throw err;
    }
  } finally {
    if (!committed) await snapshotter.remove(key).catch(() => undefined);
  }
}

export async function snapshotExists(snapshotter: Snapshotter, name: string): Promise<boolean> {
  try {
    const info = await snapshotter.stat(name);
    return info.kind === 'committed';
  } catch (err) {
    if ((err as { code?: string }).code === 'not-found') return false;
    throw err;
  }
}
