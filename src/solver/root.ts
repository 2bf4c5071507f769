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

export async function openRoot(root: string, opts: OpenRootOptions): Promise<RootServices> {
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
    return { layout, store, snapshotter, registry, images, solver, release };
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
