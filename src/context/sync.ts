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
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileStampOf, type FileStamp } from './stamp.js';
import { ContextError, type ContextEntry } from './walk.js';
import { mapLimit } from '../util/map-limit.js';
import { tarReadable, type TarEntry } from '../util/tar-writer.js';

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
 * Writes a tar of exactly the `wanted` files to `out` (and ends it), through the house tar writer
 * (util/tar-writer.ts): batches of 256 KiB made with synchronous open, fstat, read and close, in
 * short slices between which the event loop runs, where a round trip through libuv's thread pool per
 * call left the thread waiting for most of a 10,000-file upload. A file that is no longer a file, or
 * whose size differs from the list (it changed since syncEntries), fails the upload naming it: the
 * daemon checks each entry against the size it planned, and a silently different file would be a
 * wrong build.
 */
export async function writeWantedTar(
  contextDir: string,
  entries: SyncEntry[],
  wanted: string[],
  out: NodeJS.WritableStream,
): Promise<{ files: number; bytes: number }> {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const list = wanted.map((p) => {
    const e = byPath.get(p);
    if (e === undefined || e.type !== 'file' || e.hardlinkTo !== undefined) {
      throw new ContextError(`build context: ${p} was asked for, but it is not a file whose content the list carries`, p);
    }
    return e;
  });
  // Mode and mtime in the headers are informative only: the daemon takes both from the list.
  const tarEntries = list.map(
    (e): TarEntry => ({
      name: e.path,
      type: 'file',
      mode: e.mode,
      uid: 0,
      gid: 0,
      mtime: Math.floor(e.mtimeMs / 1000),
      size: e.size,
      source: path.join(contextDir, e.path),
    }),
  );
  const stream = tarReadable(tarEntries, {
    batchBytes: UPLOAD_BATCH,
    open: (t) => openListed(contextDir, byPath.get(t.name)!),
    sizeChanged: (t, found) => sizeChanged(byPath.get(t.name)!, found),
  });
  // When the receiver fails first, pipeline rejects with its error (the cause); when a file fails,
  // with ours, and `out` is destroyed, so the receiver sees a broken upload, never a short one.
  await pipeline(stream, out as NodeJS.WritableStream & NodeJS.EventEmitter);
  return { files: list.length, bytes: list.reduce((n, e) => n + e.size, 0) };
}

/** Small enough that a slice hands the socket something soon; large enough for many files per batch. */
const UPLOAD_BATCH = 256 * 1024;
// O_NOFOLLOW: a file replaced by a link since the walk must not send what the link points at.
// O_NONBLOCK: a FIFO put where a file was must not hang the thread (no effect on regular files).
const OPEN_LISTED = fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK;

/**
 * Opens a listed file to send it: never through a link (it may have been replaced by one since the
 * walk: then what it points at must not be sent), still a file, still of the listed size.
 */
function openListed(contextDir: string, e: SyncEntry): number {
  let fd: number;
  try {
    fd = fs.openSync(path.join(contextDir, e.path), OPEN_LISTED);
  } catch (err) {
    throw new ContextError(`build context: cannot open ${e.path}: ${(err as Error).message}`, e.path, { cause: err });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new ContextError(`build context: ${e.path} changed while being sent: it is no longer a file`, e.path);
    if (st.size !== e.size) throw sizeChanged(e, st.size);
    return fd;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function sizeChanged(e: SyncEntry, found: number | string): ContextError {
  return new ContextError(`build context: ${e.path} changed size while being sent (listed as ${e.size} bytes, found ${found})`, e.path);
}
