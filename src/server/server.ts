// The build service. Embedded mode calls it in-process; a daemon will serve the same methods over HTTP.
// It owns one kiln root: the content store, snapshots, image names and the solver that uses them.

import * as fsp from 'node:fs/promises';
import { ContentStore } from '../cache/content-store.js';
import { RegistryClient } from '../image/registry/index.js';
import { ImageStore, type ImageRecord } from '../image/store.js';
import { createSnapshotter, type Compression, type Snapshotter } from '../snapshotter/index.js';
import { exportResult, type ExportOutput } from '../solver/export.js';
import { planBuild } from '../solver/plan.js';
import { ProgressTracker, type ProgressSink } from '../solver/progress.js';
import { Solver } from '../solver/solver.js';
import { defaultRoot, rootLayout, type RootLayout } from '../solver/state-root.js';
import type { BuildRequest, BuildResult, LayerCompression, OutputSpec } from './api.js';
import { loadConfig, type KilnConfig } from './config.js';
import { acquireRootLock } from './root-lock.js';

interface Services {
  layout: RootLayout;
  store: ContentStore;
  snapshotter: Snapshotter;
  registry: RegistryClient;
  images: ImageStore;
  solver: Solver;
  release: () => Promise<void>;
}

export interface ServerOptions {
  root?: string;
  config?: KilnConfig;
}

export class BuildServer {
  private services?: Promise<Services>;
  private readonly root: string;

  constructor(private readonly opts: ServerOptions = {}) {
    this.root = opts.root ?? defaultRoot();
  }

  private open(onWait?: (pid: number) => void): Promise<Services> {
    this.services ??= (async () => {
      const layout = rootLayout(this.root);
      const release = await acquireRootLock(layout.root, onWait);
      try {
        const config = this.opts.config ?? loadConfig();
        await fsp.mkdir(layout.tmp, { recursive: true });
        // Whatever a killed build left: half-written blobs, active snapshots, temp files.
        const store = new ContentStore(layout.content);
        await store.cleanupIngest(0);
        const snapshotter = await createSnapshotter(layout.snapshots);
        await snapshotter.cleanup();
        await cleanTmp(layout.tmp);
        const registry = new RegistryClient(config.registry);
        const images = new ImageStore(layout.images);
        const solver = new Solver({ layout, store, snapshotter, registry, images }, { maxParallelRuns: config.maxParallelRuns });
        return { layout, store, snapshotter, registry, images, solver, release };
      } catch (err) {
        await release();
        throw err;
      }
    })();
    return this.services;
  }

  async build(req: BuildRequest, onProgress: ProgressSink = () => undefined, signal?: AbortSignal): Promise<BuildResult> {
    if (req.dryRun) {
      const graph = planBuild({ dockerfile: req.dockerfile, buildArgs: req.buildArgs, target: req.target, targetPlatform: req.platform });
      return { graph, warnings: graph.warnings };
    }
    const progress = new ProgressTracker(onProgress);
    const s = await this.open((pid) => progress.message('info', `waiting for another kiln process (pid ${pid}) using ${this.root}`));
    const result = await s.solver.solve(
      {
        contextDir: req.contextDir,
        dockerfile: req.dockerfile,
        buildArgs: req.buildArgs,
        target: req.target,
        platform: req.platform,
        network: req.network,
        noCache: req.noCache,
        pull: req.pull,
      },
      progress,
      signal,
    );
    const exported = await exportResult(result, req.outputs.map(toExportOutput), req.labels, s, progress);
    return {
      graph: result.graph,
      warnings: result.graph.warnings,
      image: {
        id: exported.configDigest,
        configDigest: exported.configDigest,
        manifestDigest: exported.manifestDigest,
        pushed: exported.pushed,
        names: exported.names,
      },
    };
  }

  async listImages(): Promise<ImageRecord[]> {
    return (await this.open()).images.list();
  }

  /** Releases the root for other processes. */
  async close(): Promise<void> {
    if (!this.services) return;
    const s = await this.services.catch(() => undefined);
    this.services = undefined;
    await s?.release();
  }
}

function compression(c: LayerCompression | undefined): Compression | undefined {
  return c === 'uncompressed' ? 'none' : c;
}

function toExportOutput(o: OutputSpec): ExportOutput {
  switch (o.type) {
    case 'image':
      return { type: 'image', names: o.names, push: o.push, compression: compression(o.compression) };
    case 'docker':
      return { type: 'docker', names: o.names, dest: o.dest, load: o.load, compression: compression(o.compression) };
    case 'oci':
      return { type: 'oci', names: o.names, dest: o.dest, compression: compression(o.compression) };
    case 'local':
    case 'tar':
      return o;
  }
}

async function cleanTmp(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    // Mount points under tmp were unmounted by the snapshotter's cleanup or never existed; rm refuses
    // to cross into a still-mounted file system (EBUSY), which then stays for a later start.
    await fsp.rm(`${dir}/${name}`, { recursive: true, force: true }).catch(() => undefined);
  }
}
