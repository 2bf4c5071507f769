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

import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { replaceFile } from '../util/atomic-file.js';

const FORMAT = 1;
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
      if (!isRecord(data) || data.v !== FORMAT || data.context !== contextDir || !isRecord(data.files)) return memo;
      for (const [rel, v] of Object.entries(data.files)) {
        if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'string')) {
          memo.map.set(rel, { stamp: v[0] as string, digest: v[1] as string, xattrs: v[2] as string });
        }
      }
    } catch {
      // A torn or foreign file: start empty; the next save replaces it.
    }
    return memo;
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
  retain(paths: ReadonlySet<string>): void {
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
    const files: Record<string, [string, string, string]> = {};
    for (const [rel, e] of this.map) files[rel] = [e.stamp, e.digest, e.xattrs];
    const text = JSON.stringify({ v: FORMAT, context: this.contextDir, files });
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

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
