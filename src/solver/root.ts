// Opening a kiln root: take its lock, clear what a killed build left behind, and build the services
// the solver and exporters share. Everything kiln keeps lives under this one directory.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ContentStore } from '../cache/content-store.js';
import { sweepStaleContainers, type ExecLimits } from '../executor/index.js';
import { RegistryClient, type RegistryConfig } from '../image/registry/index.js';
import { ImageStore } from '../image/store.js';
import { createSnapshotter, isMountPoint, unmount, type Snapshotter } from '../snapshotter/index.js';
import { acquireRootLock } from './root-lock.js';
import { Solver } from './solver.js';
import { rootLayout, type RootLayout } from './state-root.js';

export interface RootServices {
  layout: RootLayout;
  store: ContentStore;
  snapshotter: Snapshotter;
  registry: RegistryClient;
  images: ImageStore;
  solver: Solver;
  /** Releases the root's lock for other processes. */
  release(): Promise<void>;
}

export interface OpenRootOptions {
  registry: RegistryConfig;
  maxParallelRuns: number;
  runLimits?: ExecLimits;
  /** Called once when another live process holds the root and we wait for it. */
  onWait?: (pid: number) => void;
  /** Fail with RootBusyError instead of waiting when another live process holds the root. */
  noWait?: boolean;
}

/** Pseudo filesystems a root can never live on (statfs f_type), by name for the message. */
const PSEUDO_FILESYSTEMS: Record<number, string> = {
  40864: 'proc',
  1650812274: 'sysfs',
  2613483: 'cgroup',
  1667723888: 'cgroup2',
  7377: 'devpts',
  1684170528: 'debugfs',
  1953653091: 'tracefs',
  1935894131: 'securityfs',
  3405662737: 'bpf',
  1650812272: 'configfs',
  1634035564: 'pstore',
  3730735588: 'efivarfs',
  16914836: 'tmpfs',
};

/**
 * Refuses, at once and by name, a root kiln cannot use: not root (it mounts overlayfs and runs
 * runc), or a place on a pseudo filesystem (making /proc/x loops in a recursive mkdir). tmpfs is
 * refused unless it takes the trusted.* extended attributes overlayfs needs.
 */
export async function checkRootPlace(root: string): Promise<void> {
  if (process.getuid && process.getuid() !== 0) {
    throw new Error(
      `kiln needs root to build here (it mounts overlayfs and runs runc), and runs as uid ${process.getuid()}: ` +
        'run it as root, or use a kiln daemon (kiln daemon --group GROUP gives a group its socket) with kiln build --addr',
    );
  }
  // The nearest part of the path that exists says which filesystem the root would be on.
  let existing = path.resolve(root);
  for (;;) {
    const st = await fsp.lstat(existing).catch(() => undefined);
    if (st) break;
    const up = path.dirname(existing);
    if (up === existing) break;
    existing = up;
  }
  const fsType = (await fsp.statfs(existing)).type;
  const name = PSEUDO_FILESYSTEMS[fsType];
  if (name === undefined) return;
  if (name === 'tmpfs' && (await takesTrustedXattrs(existing))) return;
  throw new Error(
    `kiln root ${root}: ${existing} is on ${name}, where kiln cannot keep a root${name === 'tmpfs' ? ' (this tmpfs takes no trusted.* extended attributes, which overlayfs needs)' : ''}: choose a directory on a disk filesystem (--root, KILN_ROOT)`,
  );
}

/** Whether a directory's filesystem stores trusted.* extended attributes (tmpfs does only on newer kernels). */
async function takesTrustedXattrs(dir: string): Promise<boolean> {
  const probe = path.join(dir, `.kiln-xattr-probe-${process.pid}`);
  try {
    await fsp.mkdir(probe);
    const { setXattr } = await import('../snapshotter/fsops.js');
    await setXattr(probe, 'trusted.kiln.probe', Buffer.from('y'));
    return true;
  } catch {
    return false;
  } finally {
    await fsp.rm(probe, { recursive: true, force: true });
  }
}

export async function openRoot(root: string, opts: OpenRootOptions): Promise<RootServices> {
  await checkRootPlace(root);
  const layout = rootLayout(root);
  const release = await acquireRootLock(layout.root, opts.noWait ? { wait: false } : opts.onWait);
  try {
    await fsp.mkdir(layout.tmp, { recursive: true });
    // Order matters: containers hold mounts, mounts hold snapshots.
    await sweepStaleContainers(layout.executor);
    await cleanTmp(layout.tmp);
    const store = new ContentStore(layout.content);
    await store.cleanupIngest(0);
    const snapshotter = await createSnapshotter(layout.snapshots);
    await snapshotter.cleanup();
    const registry = new RegistryClient(opts.registry);
    const images = new ImageStore(layout.images);
    const solver = new Solver({ layout, store, snapshotter, registry, images }, { maxParallelRuns: opts.maxParallelRuns, runLimits: opts.runLimits });
    const flushThenRelease = async () => {
      await snapshotter.flush().catch(() => undefined); // reuse times for GC: a hint, never a reason to keep the lock
      await release();
    };
    return { layout, store, snapshotter, registry, images, solver, release: flushThenRelease };
  } catch (err) {
    await release();
    throw err;
  }
}

async function cleanTmp(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    const p = path.join(dir, name);
    // Rootfs mount points of steps that were running: unmount before removing, never delete
    // through a mount into a snapshot.
    await unmount(p);
    if (await isMountPoint(p)) continue; // still busy: leave it for a later start
    await fsp.rm(p, { recursive: true, force: true });
  }
}
