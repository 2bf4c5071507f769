// Snapshot bookkeeping shared by the overlay and copying drivers: keys, parent chains, the on-disk
// layout (<root>/snapshots/<id>/{fs,work}), crash cleanup. Drivers supply how a snapshot's directory is
// prepared, how it is mounted, and how its changes are applied and diffed.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { MetadataStore, ownerAlive, processStart, type MetadataDoc, type SnapshotRecord } from './metadata.js';
import type { ApplyResult, CleanupReport, DiffOptions, DiffResult, Mount, PrepareOptions, SnapshotInfo, SnapshotKind, Snapshotter, Usage } from './types.js';

export class SnapshotError extends Error {
  constructor(
    readonly key: string,
    message: string,
    readonly code: 'not-found' | 'exists' | 'invalid' | 'in-use' = 'invalid',
  ) {
    super(`snapshot ${JSON.stringify(key)}: ${message}`);
    this.name = 'SnapshotError';
  }
}

/** A resolved snapshot: its record and the directories of its parent chain, nearest first. */
export interface Resolved {
  key: string;
  rec: SnapshotRecord;
  dir: string;
  parentDirs: string[];
}

export abstract class BaseSnapshotter implements Snapshotter {
  abstract readonly driver: 'overlay' | 'copy';
  readonly root: string;
  protected readonly snapshotsDir: string;
  protected readonly meta: MetadataStore;

  constructor(root: string) {
    this.root = path.resolve(root);
    // Paths end up in overlay option strings, where ',' and ':' are separators.
    if (/[,:]/.test(this.root)) throw new Error(`snapshotter root ${this.root}: must not contain ',' or ':'`);
    this.snapshotsDir = path.join(this.root, 'snapshots');
    this.meta = new MetadataStore(this.root);
  }

  /** Creates the root's directories; safe to call more than once. */
  async init(): Promise<this> {
    await fsp.mkdir(this.snapshotsDir, { recursive: true, mode: 0o700 });
    return this;
  }

  protected dirOf(id: number): string {
    return path.join(this.snapshotsDir, String(id));
  }

  /** Directory the snapshot's own files live in (overlay: its upper dir). */
  protected fsDir(id: number): string {
    return path.join(this.dirOf(id), 'fs');
  }

  protected abstract initDir(dir: string, kind: SnapshotKind, parentDirs: string[]): Promise<void>;
  protected abstract mountsFor(r: Resolved): Mount[] | Promise<Mount[]>;
  protected abstract applyInto(r: Resolved, layer: Readable, mediaType?: string): Promise<ApplyResult>;
  protected abstract diffOf(r: Resolved, opts: DiffOptions): Promise<DiffResult>;
  protected abstract usageOf(r: Resolved): Promise<Usage>;

  private resolveIn(doc: MetadataDoc, key: string): Resolved {
    const rec = doc.snapshots[key];
    if (!rec) throw new SnapshotError(key, 'not found', 'not-found');
    const parentDirs: string[] = [];
    const seen = new Set<string>([key]);
    for (let p = rec.parent; p !== undefined; p = doc.snapshots[p]!.parent) {
      const prec = doc.snapshots[p];
      if (!prec) throw new SnapshotError(key, `parent ${JSON.stringify(p)} is missing from the metadata`);
      if (seen.has(p)) throw new SnapshotError(key, 'parent chain has a cycle');
      seen.add(p);
      parentDirs.push(this.fsDir(prec.id));
    }
    return { key, rec, dir: this.dirOf(rec.id), parentDirs };
  }

  protected async resolve(key: string): Promise<Resolved> {
    return this.meta.locked((doc) => this.resolveIn(doc, key));
  }

  private async create(kind: 'active' | 'view', key: string, parent: string | undefined, opts?: PrepareOptions): Promise<Mount[]> {
    if (!key) throw new SnapshotError(key, 'empty key');
    const start = processStart(process.pid);
    const r = await this.meta.update(async (doc) => {
      if (doc.snapshots[key]) throw new SnapshotError(key, 'already exists', 'exists');
      let parentDirs: string[] = [];
      if (parent !== undefined) {
        const p = doc.snapshots[parent];
        if (!p) throw new SnapshotError(parent, 'parent not found', 'not-found');
        if (p.kind !== 'committed') throw new SnapshotError(parent, `parent is ${p.kind}, not committed`);
        parentDirs = [this.fsDir(p.id), ...this.resolveIn(doc, parent).parentDirs];
      }
      const id = doc.nextId++;
      const now = new Date().toISOString();
      const rec: SnapshotRecord = {
        id,
        kind,
        ...(parent !== undefined ? { parent } : {}),
        labels: { ...(opts?.labels ?? {}) },
        created: now,
        updated: now,
        ...(start ? { owner: { pid: process.pid, start } } : {}),
      };
      // Directory first, record second: a crash in between leaves an orphan dir for cleanup().
      const dir = this.dirOf(id);
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.mkdir(dir, { mode: 0o700 });
      await this.initDir(dir, kind, parentDirs);
      doc.snapshots[key] = rec;
      return { key, rec, dir, parentDirs };
    });
    return this.mountsFor(r);
  }

  prepare(key: string, parent?: string, opts?: PrepareOptions): Promise<Mount[]> {
    return this.create('active', key, parent, opts);
  }

  view(key: string, parent?: string, opts?: PrepareOptions): Promise<Mount[]> {
    return this.create('view', key, parent, opts);
  }

  async mounts(key: string): Promise<Mount[]> {
    const r = await this.resolve(key);
    if (r.rec.kind === 'committed') throw new SnapshotError(key, 'committed snapshots cannot be mounted; view them instead');
    return this.mountsFor(r);
  }

  async commit(name: string, key: string, opts?: PrepareOptions): Promise<void> {
    await this.meta.update((doc) => {
      const rec = doc.snapshots[key];
      if (!rec) throw new SnapshotError(key, 'not found', 'not-found');
      if (rec.kind !== 'active') throw new SnapshotError(key, `is ${rec.kind}; only active snapshots can be committed`);
      if (doc.snapshots[name]) throw new SnapshotError(name, 'already exists', 'exists');
      delete doc.snapshots[key];
      const { owner: _owner, ...rest } = rec;
      doc.snapshots[name] = {
        ...rest,
        kind: 'committed',
        labels: { ...rec.labels, ...(opts?.labels ?? {}) },
        updated: new Date().toISOString(),
      };
    });
  }

  async remove(key: string): Promise<void> {
    const dir = await this.meta.update((doc) => {
      const rec = doc.snapshots[key];
      if (!rec) throw new SnapshotError(key, 'not found', 'not-found');
      const child = Object.entries(doc.snapshots).find(([, s]) => s.parent === key);
      if (child) throw new SnapshotError(key, `is the parent of ${JSON.stringify(child[0])}`, 'in-use');
      delete doc.snapshots[key];
      return this.dirOf(rec.id);
    });
    // Record gone first, files second: a crash here leaves an orphan dir for cleanup().
    await fsp.rm(dir, { recursive: true, force: true });
  }

  async stat(key: string): Promise<SnapshotInfo> {
    const doc = await this.meta.read();
    const rec = doc.snapshots[key];
    if (!rec) throw new SnapshotError(key, 'not found', 'not-found');
    return info(key, rec);
  }

  async list(): Promise<SnapshotInfo[]> {
    const doc = await this.meta.read();
    return Object.entries(doc.snapshots)
      .map(([k, rec]) => info(k, rec))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async usage(key: string): Promise<Usage> {
    return this.usageOf(await this.resolve(key));
  }

  async touch(key: string, at: Date = new Date()): Promise<void> {
    await this.meta.deferred((doc) => {
      const rec = doc.snapshots[key];
      if (!rec) throw new SnapshotError(key, 'not found', 'not-found');
      rec.lastUsed = at.toISOString();
      rec.usageCount = (rec.usageCount ?? 0) + 1;
    });
  }

  flush(): Promise<void> {
    return this.meta.flush();
  }

  async location(key: string): Promise<string> {
    return (await this.resolve(key)).dir;
  }

  async cleanup(): Promise<CleanupReport> {
    const removedSnapshots: string[] = [];
    // Children before parents: only active snapshots and views (never parents) are candidates.
    const doc = await this.meta.read();
    for (const [key, rec] of Object.entries(doc.snapshots)) {
      if (rec.kind === 'committed') continue;
      if (rec.owner && ownerAlive(rec.owner)) continue;
      await this.remove(key);
      removedSnapshots.push(key);
    }
    const removedDirs = await this.meta.locked(async (current) => {
      const known = new Set(Object.values(current.snapshots).map((s) => String(s.id)));
      const gone: string[] = [];
      for (const name of await fsp.readdir(this.snapshotsDir)) {
        if (known.has(name)) continue;
        const dir = path.join(this.snapshotsDir, name);
        await fsp.rm(dir, { recursive: true, force: true });
        gone.push(dir);
      }
      return gone;
    });
    return { removedSnapshots, removedDirs };
  }

  async isDirectory(_key: string, _dir: string): Promise<boolean> {
    return false; // unsure: the overlay driver reads its layers (overlay.ts)
  }

  async layerOfFile(_key: string, _file: string): Promise<string | undefined> {
    return undefined; // unsure: the overlay driver reads its layers (overlay.ts)
  }

  async strayDirs(): Promise<string[]> {
    const known = new Set(Object.values((await this.meta.read()).snapshots).map((s) => String(s.id)));
    const names = await fsp.readdir(this.snapshotsDir).catch(() => [] as string[]);
    return names.filter((n) => !known.has(n)).map((n) => path.join(this.snapshotsDir, n));
  }

  async applyLayer(key: string, layer: Readable, mediaType?: string): Promise<ApplyResult> {
    const r = await this.resolve(key);
    if (r.rec.kind !== 'active') throw new SnapshotError(key, `is ${r.rec.kind}; layers are applied to active snapshots`);
    try {
      return await this.applyInto(r, layer, mediaType);
    } catch (err) {
      (err as Error).message = `applying layer to snapshot ${JSON.stringify(key)}: ${(err as Error).message}`;
      throw err;
    }
  }

  async diff(key: string, opts: DiffOptions): Promise<DiffResult> {
    const r = await this.resolve(key);
    if (r.rec.kind === 'view') throw new SnapshotError(key, 'a view has no changes to diff');
    return this.diffOf(r, opts);
  }
}

function info(key: string, rec: SnapshotRecord): SnapshotInfo {
  return {
    key,
    kind: rec.kind,
    ...(rec.parent !== undefined ? { parent: rec.parent } : {}),
    labels: { ...rec.labels },
    created: rec.created,
    updated: rec.updated,
    ...(rec.lastUsed !== undefined ? { lastUsed: rec.lastUsed } : {}),
    ...(rec.usageCount !== undefined ? { usageCount: rec.usageCount } : {}),
  };
}

/** Bytes allocated and inodes used by the tree at `dir` (hard links counted once). */
export async function treeUsage(dir: string): Promise<Usage> {
  let size = 0;
  let inodes = 0;
  const seen = new Set<string>();
  async function walk(p: string): Promise<void> {
    const st = await fsp.lstat(p, { bigint: true });
    const id = `${st.dev}:${st.ino}`;
    if (seen.has(id)) return;
    seen.add(id);
    inodes++;
    size += Number(st.blocks) * 512;
    if (st.isDirectory()) for (const n of await fsp.readdir(p)) await walk(path.join(p, n));
  }
  await walk(dir);
  return { size, inodes };
}
