// Memoised content checksums of build context files, so an unchanged tree is not read again: in
// memory for the process and, given a directory, on disk across restarts.
//
// An entry is keyed by the file's context-relative path and valid only while the file's stamp
// (dev, inode, size, mtime ns, ctime ns) is unchanged. The ctime is what makes this safe: it moves on
// every content write, chmod, chown, xattr change and rename onto the path, and unlike the mtime it
// cannot be set back by a program. A file whose ctime is too close to the moment it was read is not
// remembered ("racy", as git calls it: a write in the same timestamp tick would leave the stamp as it
// was), so it is simply read again next time.
//
// On disk: <dir>/<sha256 of the context's real path>.json, replaced atomically (temporary file +
// rename), loaded once per process. It is a cache: a missing, unreadable or malformed file only
// means reading the files again, and a failed write is reported as a warning, never as a failed build.
// Format 2 keeps four parallel arrays (paths, stamps, digests, xattrs): for 10,000 files it parses in
// a third of the time format 1's object of [stamp, digest, xattrs] arrays took, and makes no object
// per file. Format 1 files are still read (and written back as format 2 at the next change).

import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { replaceFile } from '../util/atomic-file.js';

const FORMAT = 2;
/** Files whose ctime lies within this much of the read are not remembered (covers 1 s timestamp
 * filesystems and clock ticks; ns-resolution filesystems still tick coarsely). */
export const RACY_MS = 2000;

export interface MemoEntry {
  /** The stamp the digests belong to. */
  stamp: string;
  /** Hex sha256 of the content ("" for a directory). */
  digest: string;
  /** Hex sha256 of the xattrs ("" for none). */
  xattrs: string;
}

const open = new Map<string, Promise<ChecksumMemo>>();

export class ChecksumMemo {
  private readonly map = new Map<string, MemoEntry>();
  private dirty = false;
  private writing: Promise<void> = Promise.resolve();
  private warned = false;

  private constructor(
    /** The context directory's real path. */
    readonly contextDir: string,
    /** Where it is persisted; undefined: memory only. */
    readonly file: string | undefined,
  ) {}

  /** The memo of a context directory (one per directory and cache dir in a process). */
  static async for(contextDir: string, cacheDir?: string): Promise<ChecksumMemo> {
    const real = await fsp.realpath(contextDir).catch(() => path.resolve(contextDir));
    const key = `${cacheDir === undefined ? '' : path.resolve(cacheDir)}\0${real}`;
    let memo = open.get(key);
    if (!memo) {
      const file = cacheDir === undefined ? undefined : path.join(path.resolve(cacheDir), `${createHash('sha256').update(real).digest('hex')}.json`);
      memo = ChecksumMemo.load(real, file);
      open.set(key, memo);
      memo.catch(() => open.delete(key));
    }
    return memo;
  }

  /** Forgets every memo held in memory (what a new process starts with); files on disk stay. */
  static forgetAll(): void {
    open.clear();
  }

  private static async load(contextDir: string, file: string | undefined): Promise<ChecksumMemo> {
    const memo = new ChecksumMemo(contextDir, file);
    if (file === undefined) return memo;
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch {
      return memo;
    }
    try {
      const data = JSON.parse(text) as unknown;
      if (isRecord(data) && data.context === contextDir) {
        if (data.v === FORMAT) memo.loadColumns(data);
        else if (data.v === 1 && isRecord(data.files)) memo.loadV1(data.files);
      }
    } catch {
      // A torn or foreign file: start empty; the next save replaces it.
    }
    return memo;
  }

  /** Format 2: `paths[i]` has `stamps[i]`, `digests[i]`, `xattrs[i]`; anything malformed is ignored whole. */
  private loadColumns(data: Record<string, unknown>): void {
    const { paths, stamps, digests, xattrs } = data;
    if (!isStrings(paths) || !isStrings(stamps) || !isStrings(digests) || !isStrings(xattrs)) return;
    const n = paths.length;
    if (stamps.length !== n || digests.length !== n || xattrs.length !== n) return;
    for (let i = 0; i < n; i++) this.map.set(paths[i]!, { stamp: stamps[i]!, digest: digests[i]!, xattrs: xattrs[i]! });
  }

  /** Format 1: `files[path]` is `[stamp, digest, xattrs]`. */
  private loadV1(files: Record<string, unknown>): void {
    for (const [rel, v] of Object.entries(files)) {
      if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'string')) {
        this.map.set(rel, { stamp: v[0] as string, digest: v[1] as string, xattrs: v[2] as string });
      }
    }
    // Written back in the current format at the next save, even when nothing else changes.
    this.dirty = true;
  }

  get size(): number {
    return this.map.size;
  }

  get(rel: string): MemoEntry | undefined {
    return this.map.get(rel);
  }

  /**
   * Remembers the digests of `rel` at `stamp`, read no earlier than `readSinceMs` (epoch ms): a
   * racy stamp is not remembered, and an empty one (the file changed while read) neither.
   */
  set(rel: string, entry: MemoEntry, readSinceMs: number): void {
    const ctimeNs = entry.stamp === '' ? undefined : BigInt(entry.stamp.slice(entry.stamp.lastIndexOf(':') + 1));
    if (ctimeNs === undefined || ctimeNs >= BigInt(Math.floor(readSinceMs - RACY_MS)) * 1_000_000n) {
      if (this.map.delete(rel)) this.dirty = true;
      return;
    }
    const old = this.map.get(rel);
    if (old && old.stamp === entry.stamp && old.digest === entry.digest && old.xattrs === entry.xattrs) return;
    this.map.set(rel, entry);
    this.dirty = true;
  }

  /** Drops entries for paths no longer in the context (deleted, or now ignored). */
  retain(paths: { has(rel: string): boolean }): void {
    for (const rel of this.map.keys()) {
      if (!paths.has(rel)) {
        this.map.delete(rel);
        this.dirty = true;
      }
    }
  }

  /** Writes the memo when it changed (serialised; atomic). */
  save(): Promise<void> {
    this.writing = this.writing.then(() => this.write());
    return this.writing;
  }

  private async write(): Promise<void> {
    if (!this.dirty || this.file === undefined) return;
    this.dirty = false;
    const n = this.map.size;
    const paths = new Array<string>(n);
    const stamps = new Array<string>(n);
    const digests = new Array<string>(n);
    const xattrs = new Array<string>(n);
    let i = 0;
    for (const [rel, e] of this.map) {
      paths[i] = rel;
      stamps[i] = e.stamp;
      digests[i] = e.digest;
      xattrs[i++] = e.xattrs;
    }
    const text = JSON.stringify({ v: FORMAT, context: this.contextDir, paths, stamps, digests, xattrs });
    try {
      await replaceFile(this.file, text, { mkdir: { mode: 0o700 }, mode: 0o600 });
    } catch (err) {
      this.dirty = true;
      if (!this.warned) {
        this.warned = true;
        process.emitWarning(`cannot save context checksums to ${this.file}: ${(err as Error).message}`, 'KilnChecksumMemo');
      }
    }
  }
}

function isStrings(x: unknown): x is string[] {
  return Array.isArray(x) && x.every((s) => typeof s === 'string');
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
