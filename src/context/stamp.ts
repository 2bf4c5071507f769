// What an upload needs of one file, taken from a bigint lstat at once: the walk keeps these small
// records rather than the stats themselves (a BigIntStats is some twenty heap objects, and 10,000 of
// them kept alive until the upload made a warm client's walk spend much of its time collecting them).

import type { BigIntStats } from 'node:fs';

export interface FileStamp {
  /** st_mode & 07777. */
  mode: number;
  size: number;
  /** The mtime in milliseconds, the fraction kept from the nanoseconds. */
  mtimeMs: number;
  /**
   * `${dev}:${ino}:${ctimeNs}` in base 36: the client's change stamp (sync.ts's SyncEntry.stamp). The
   * ctime and inode catch a same-size rewrite whose mtime was put back.
   */
  stamp: string;
  /** `${dev}:${ino}` when the file has other hard links (nlink > 1), else absent. */
  inode?: string;
  /** False when the stat found something other than a regular file. */
  isFile: boolean;
}

/** Milliseconds with the fraction kept, from nanoseconds, without losing precision in a double first. */
export function nsToMs(ns: bigint): number {
  return Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6;
}

export function fileStampOf(st: BigIntStats): FileStamp {
  const s: FileStamp = {
    mode: Number(st.mode & 0o7777n),
    size: Number(st.size),
    mtimeMs: nsToMs(st.mtimeNs),
    stamp: `${st.dev.toString(36)}:${st.ino.toString(36)}:${st.ctimeNs.toString(36)}`,
    isFile: st.isFile(),
  };
  if (st.nlink > 1n) s.inode = `${st.dev}:${st.ino}`;
  return s;
}
