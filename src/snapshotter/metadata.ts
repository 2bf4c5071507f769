// Snapshot metadata: one JSON document, replaced atomically (write temp, fsync, rename, fsync dir), so a
// SIGKILL at any moment leaves either the old or the new document. Directories are created before a
// snapshot is recorded and removed after it is forgotten; what a crash strands in between is a
// directory without a record, which cleanup() finds. Mutations are serialised in-process; one process
// owns a snapshotter root at a time.
import { readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { SnapshotKind } from './types.js';

export interface SnapshotRecord {
  id: number;
  kind: SnapshotKind;
  parent?: string;
  labels: Record<string, string>;
  created: string;
  updated: string;
  /** Last reuse by a build and how many reuses (touch); absent until the first. */
  lastUsed?: string;
  usageCount?: number;
  /** The process that made an active snapshot or view: a dead owner means a killed build. */
  owner?: { pid: number; start: string };
}

export interface MetadataDoc {
  version: 1;
  nextId: number;
  snapshots: Record<string, SnapshotRecord>;
}

/** A process's start time from /proc (field 22), to tell a live owner from a reused pid. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: fields count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function ownerAlive(owner: { pid: number; start: string }): boolean {
  return processStart(owner.pid) === owner.start;
}

/**
 * How long a reuse record (touch) may wait in memory before it is written. A cached build touches
 * every step it reuses; writing the document (two fsyncs) for each was a third of a warm build's
 * time in the daemon. Touches are only garbage collection's recency hints: the next real update
 * carries them, or this timer, or flush() when the root is released. A process killed before then
 * loses a few seconds of them, which GC tolerates (it only orders what to remove first).
 */
const TOUCH_FLUSH_MS = 2000;

export class MetadataStore {
  private readonly file: string;
  private doc: MetadataDoc | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** The in-memory document has touches the file lacks. */
  private unsaved = false;
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(root: string) {
    this.file = path.join(root, 'metadata.json');
  }

  private async load(): Promise<MetadataDoc> {
    if (this.doc) return this.doc;
    try {
      const parsed = JSON.parse(await fsp.readFile(this.file, 'utf8')) as MetadataDoc;
      if (parsed.version !== 1) throw new Error(`unsupported metadata version ${String(parsed.version)}`);
      this.doc = parsed;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`reading ${this.file}: ${(err as Error).message}`);
      this.doc = { version: 1, nextId: 1, snapshots: {} };
    }
    return this.doc;
  }

  private async save(doc: MetadataDoc): Promise<void> {
    const tmp = `${this.file}.tmp-${process.pid}`;
    const fh = await fsp.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(doc, null, 1));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, this.file);
    const dir = await fsp.open(path.dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** A consistent read of the document (a deep copy). */
  async read(): Promise<MetadataDoc> {
    return this.serial(async () => structuredClone(await this.load()));
  }

  /**
   * Runs `fn` on a working copy; if it returns without throwing, the copy is persisted atomically and
   * becomes current. `fn` may do file-system work (it runs under the lock) but should persist nothing.
   */
  async update<T>(fn: (doc: MetadataDoc) => Promise<T> | T): Promise<T> {
    return this.serial(async () => {
      const work = structuredClone(await this.load());
      const result = await fn(work);
      await this.save(work);
      this.doc = work;
      this.unsaved = false;
      return result;
    });
  }

  /**
   * Changes the document in memory only, to be written with the next update, by a timer, or by
   * flush(): for bookkeeping whose loss in a crash does no harm (see TOUCH_FLUSH_MS).
   */
  async deferred<T>(fn: (doc: MetadataDoc) => T): Promise<T> {
    return this.serial(async () => {
      const result = fn(await this.load());
      this.unsaved = true;
      this.flushTimer ??= setTimeout(() => {
        this.flushTimer = undefined;
        this.flush().catch(() => undefined);
      }, TOUCH_FLUSH_MS).unref();
      return result;
    });
  }

  /** Writes what deferred() changed, if anything. */
  async flush(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    await this.serial(async () => {
      if (!this.unsaved || !this.doc) return;
      await this.save(this.doc);
      this.unsaved = false;
    });
  }

  /** Runs `fn` under the same lock without persisting anything. */
  async locked<T>(fn: (doc: MetadataDoc) => Promise<T> | T): Promise<T> {
    return this.serial(async () => fn(await this.load()));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
