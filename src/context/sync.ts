// The client half of the incremental context upload. The protocol, in two steps:
//
//  1. The client sends the list of the context's entries (syncEntries): paths, types, modes, sizes,
//     mtimes, link targets, hard links, and for each file a change stamp. The daemon compares it with
//     the list it kept from the previous upload and answers with the files it wants
//     (server/contexts.ts, KeptContexts lease.plan()).
//  2. The client sends a tar holding exactly those files (writeWantedTar); the daemon applies the
//     whole list to its kept copy (lease.receive()).
//
// Hard links travel only in the list: their content is never sent, the daemon links them to their
// target after the target is in place. Symlinks travel in the list as their target text. Owners are
// not sent (a build context has none, as in BuildKit).

import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
// tar-stream (type only here): loaded when there is something to send, not on every client start.
import type tar from 'tar-stream';
import { fileStampOf, type FileStamp } from './stamp.js';
import { ContextError, type ContextEntry } from './walk.js';
import { mapLimit } from '../util/map-limit.js';

export interface SyncEntry {
  /** Slash-separated, relative, as ContextEntry.path. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  /** st_mode & 07777. */
  mode: number;
  /** Bytes for files, 0 otherwise. */
  size: number;
  /** Kept on the daemon's copy (files keep the client's mtime). */
  mtimeMs: number;
  /**
   * The client's change stamp for files: `${dev}:${ino}:${ctimeNs}` from a bigint lstat, in base 36
   * (it is sent for every file on every build: short matters; size and mtime are fields already). A file whose stamp differs from the kept one is sent again: ctime and inode catch a
   * same-size rewrite whose mtime was put back, which size+mtime alone would miss.
   */
  stamp?: string;
  /** Symlinks travel as links, target text unresolved. */
  linkTarget?: string;
  /** An earlier entry's path with the same inode (created as a hard link, content never sent). */
  hardlinkTo?: string;
}

/**
 * sha256 of a list, over every field the daemon keeps, in a fixed order: the same on both sides for
 * the same list (the client's, and the daemon's validated copy of it). A client first sends only
 * this; a daemon that knows its kept tree equals the list with this digest needs nothing else.
 */
export function listDigest(entries: readonly SyncEntry[]): string {
  const h = createHash('sha256');
  // One line per entry; text fields length-prefixed (unambiguous, and cheaper than JSON for 10,000
  // entries), numbers as JavaScript prints them (the same doubles on both sides). Hashed in slices.
  const text = (s: string | undefined) => (s === undefined ? '-' : `${s.length}:${s}`);
  let chunk = '';
  for (const e of entries) {
    chunk += `${text(e.path)} ${e.type} ${e.mode} ${e.size} ${e.mtimeMs} ${text(e.stamp)} ${text(e.linkTarget)} ${text(e.hardlinkTo)}\n`;
    if (chunk.length > 65536) {
      h.update(chunk);
      chunk = '';
    }
  }
  h.update(chunk);
  return `sha256:${h.digest('hex')}`;
}

/** bigint lstat of every file entry not in `known`, at most 64 at a time. */
async function statFiles(contextDir: string, entries: ContextEntry[], known?: ReadonlyMap<string, FileStamp>): Promise<Map<string, FileStamp>> {
  const files = entries.filter((e) => e.type === 'file' && !known?.has(e.path));
  const out = new Map<string, FileStamp>();
  await mapLimit(files, 64, async (e) => {
    try {
      out.set(e.path, fileStampOf(await fsp.lstat(path.join(contextDir, e.path), { bigint: true })));
    } catch (err) {
      throw new ContextError(`build context: cannot stat ${e.path}: ${(err as Error).message}`, e.path, { cause: err });
    }
  });
  return out;
}

/**
 * From walked ContextEntry[] (already filtered, maybe narrowed further by the caller) to the list
 * sent first. Files are lstat'ed with bigint precision for their stamp (size and mtime come from
 * that same lstat, so the three agree), unless `walked` has that stat from the walk. Hard links are recomputed here from the inodes rather
 * than taken from the walk, so a link whose first name the caller narrowed away is sent as content.
 */
export async function syncEntries(contextDir: string, entries: ContextEntry[], walked?: ReadonlyMap<string, FileStamp>): Promise<SyncEntry[]> {
  const out: SyncEntry[] = [];
  const firstOfInode = new Map<string, string>();
  // The stats run side by side (libuv's thread pool), then the list is built in walk order. Files
  // the walk already stat'ed with bigint precision (walkContext's fileStamps) are not stat'ed again.
  const stats = await statFiles(contextDir, entries, walked);
  for (const e of entries) {
    if (e.type !== 'file' && e.type !== 'dir' && e.type !== 'symlink') {
      throw new ContextError(`build context: ${e.path} is a ${e.type}: special files cannot be sent`, e.path);
    }
    if (e.type !== 'file') {
      const s: SyncEntry = { path: e.path, type: e.type, mode: e.mode, size: 0, mtimeMs: e.mtimeMs };
      if (e.type === 'symlink') s.linkTarget = e.linkTarget ?? '';
      out.push(s);
      continue;
    }
    const st = walked?.get(e.path) ?? stats.get(e.path)!;
    if (!st.isFile) throw new ContextError(`build context: ${e.path} changed while being read: it is no longer a file`, e.path);
    const s: SyncEntry = { path: e.path, type: 'file', mode: st.mode, size: st.size, mtimeMs: st.mtimeMs };
    const first = st.inode !== undefined ? firstOfInode.get(st.inode) : undefined;
    if (first !== undefined) {
      s.hardlinkTo = first;
    } else {
      if (st.inode !== undefined) firstOfInode.set(st.inode, e.path);
      s.stamp = st.stamp;
    }
    out.push(s);
  }
  return out;
}

/**
 * Writes a tar of exactly the `wanted` files to `out` (and ends it). Contents are streamed from disk
 * with backpressure, so memory stays flat whatever the file sizes. A file whose size differs from
 * the list (it changed since syncEntries) fails the upload naming it: the daemon checks each entry
 * against the size it planned, and a silently different file would be a wrong build.
 */
export async function writeWantedTar(
  contextDir: string,
  entries: SyncEntry[],
  wanted: string[],
  out: NodeJS.WritableStream,
): Promise<{ files: number; bytes: number }> {
  if (wanted.length === 0) {
    // Nothing changed (the warm case): the empty archive is its end marker, two zero blocks, and
    // needs no tar library loaded.
    await pipeline(Readable.from([Buffer.alloc(1024)]), out as NodeJS.WritableStream & NodeJS.EventEmitter);
    return { files: 0, bytes: 0 };
  }
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const { default: tarStream } = await import('tar-stream');
  const pack = tarStream.pack();
  // tar-stream's pack is a streamx stream; Readable.from makes it a plain Node one for pipeline.
  const sending = pipeline(Readable.from(pack, { objectMode: false }), out as NodeJS.WritableStream & NodeJS.EventEmitter);
  // When the receiver goes away, stop waiting for 'drain' on the entry being written.
  const stop = new AbortController();
  sending.catch(() => stop.abort());

  let files = 0;
  let bytes = 0;
  const list = wanted.map((p) => {
    const e = byPath.get(p);
    if (e === undefined || e.type !== 'file' || e.hardlinkTo !== undefined) {
      throw new ContextError(`build context: ${p} was asked for, but it is not a file whose content the list carries`, p);
    }
    return e;
  });
  // Small files are read ahead, several at once, while earlier ones are written: one file at a time
  // would cost an open, a stat, a read and a close in a row for each of 10,000 files. Large files
  // stream. At most READ_AHEAD small files (each under SMALL_FILE bytes) are held in memory.
  const reads = new Map<number, Promise<Buffer>>();
  let nextRead = 0;
  const readAhead = (upTo: number) => {
    for (; nextRead < list.length && nextRead <= upTo; nextRead++) {
      const e = list[nextRead]!;
      if (e.size > SMALL_FILE) continue;
      const p = readSmallFile(contextDir, e);
      p.catch(() => {}); // observed when its turn comes
      reads.set(nextRead, p);
    }
  };
  const adding = (async () => {
    for (let i = 0; i < list.length; i++) {
      readAhead(i + READ_AHEAD);
      const e = list[i]!;
      const pending = reads.get(i);
      reads.delete(i);
      if (pending) {
        const data = await pending;
        const written = new Promise<void>((resolve, reject) => pack.entry(tarHeader(e), data, (err) => (err ? reject(err) : resolve())));
        await written;
        bytes += data.length;
      } else {
        bytes += await addFile(pack, contextDir, e, stop.signal);
      }
      files++;
    }
    pack.finalize();
  })();
  try {
    await adding;
  } catch (err) {
    pack.destroy(err as Error); // ends `out` with an error, so the receiver sees a broken upload
    const sendErr = await sending.then(
      () => undefined,
      (e: unknown) => e,
    );
    // When the receiver failed first, its error is the cause; our abort is only the consequence.
    throw stop.signal.aborted && sendErr !== undefined ? sendErr : err;
  }
  await sending;
  return { files, bytes };
}

/** Files up to this size are read whole (and ahead); larger ones stream. */
const SMALL_FILE = 1024 * 1024;
/** How many small files are read ahead of the one being written. */
const READ_AHEAD = 32;

function tarHeader(e: SyncEntry): Parameters<tar.Pack['entry']>[0] {
  return { name: e.path, type: 'file', size: e.size, mode: e.mode, mtime: new Date(e.mtimeMs) };
}

/**
 * Opens a listed file to send it: never through a link (it may have been replaced by one since the
 * walk: then what it points at must not be sent), still a file, still of the listed size.
 */
async function openListed(contextDir: string, e: SyncEntry): Promise<fsp.FileHandle> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path.join(contextDir, e.path), fsc.O_RDONLY | fsc.O_NOFOLLOW);
  } catch (err) {
    throw new ContextError(`build context: cannot open ${e.path}: ${(err as Error).message}`, e.path, { cause: err });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ContextError(`build context: ${e.path} changed while being sent: it is no longer a file`, e.path);
    if (st.size !== e.size) throw sizeChanged(e, st.size);
    return fh;
  } catch (err) {
    await fh.close();
    throw err;
  }
}

function sizeChanged(e: SyncEntry, found: number | string): ContextError {
  return new ContextError(`build context: ${e.path} changed size while being sent (listed as ${e.size} bytes, found ${found})`, e.path);
}

/** A small file's content, whole. */
async function readSmallFile(contextDir: string, e: SyncEntry): Promise<Buffer> {
  const fh = await openListed(contextDir, e);
  try {
    const data = await fh.readFile();
    if (data.length !== e.size) throw sizeChanged(e, data.length);
    return data;
  } finally {
    await fh.close();
  }
}

async function addFile(pack: tar.Pack, contextDir: string, e: SyncEntry, signal: AbortSignal): Promise<number> {
  const changed = (read: number | string) => sizeChanged(e, read);
  const fh = await openListed(contextDir, e);
  try {
    let settle!: (err?: Error | null) => void;
    const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
    done.catch(() => {}); // observed below; do not let an early rejection go unhandled
    const entry = pack.entry(tarHeader(e), (err) => settle(err));
    // A destroyed pack destroys the entry with the receiver's error; `done` reports it, and an unheard
    // 'error' event would crash the process.
    entry.on('error', () => {});
    let read = 0;
    for await (const chunk of fh.createReadStream({ autoClose: false, highWaterMark: 256 * 1024 })) {
      read += (chunk as Buffer).length;
      if (read > e.size) throw changed(`at least ${read}`);
      if (!entry.write(chunk)) await once(entry as unknown as NodeJS.EventEmitter, 'drain', { signal });
    }
    if (read !== e.size) throw changed(read);
    (entry as unknown as NodeJS.WritableStream).end();
    await done;
    return read;
  } finally {
    await fh.close();
  }
}
