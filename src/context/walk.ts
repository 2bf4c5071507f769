// The build context walk: every entry of the context directory that .dockerignore lets through, as
// BuildKit's client (fsutil's filtered walk) sends it.
//
//  - Symlinks are never followed: a link is an entry with its target text, nothing more.
//  - An excluded directory is not entered unless an exception could re-include something inside
//    it; when something inside is re-included, the directory itself is listed too (before it), as
//    the receiving side needs it to hold the child.
//  - `Dockerfile` and `.dockerignore` get no special treatment: when ignored they are not part of
//    the context, so COPY cannot see them (Docker documents this; BuildKit reads the Dockerfile
//    through its own channel, which is the caller's job here).
//  - Order is the walk order (names compared byte-wise inside each directory), which is also the
//    order a content checksum of the context must use.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { PatternMatcher, parseIgnoreFile, type MatchInfo } from './patterns.js';
import { fileStampOf, nsToMs, type FileStamp } from './stamp.js';
import { contentStamp } from '../fsutil/stat.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block';

export interface ContextEntry {
  /** Slash-separated, relative to the context root, never "." or with a leading "/". */
  path: string;
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (st_mode & 07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes for files, the target's length for symlinks, 0 otherwise. */
  size: number;
  /** Modification time in milliseconds since the epoch (fractional part kept). */
  mtimeMs: number;
  /** Symlink target as stored (never resolved). */
  linkTarget?: string;
  /** For a file sharing its inode with an earlier entry: that entry's path (a hard link). */
  hardlinkTo?: string;
  /** Device numbers for char/block devices. */
  devMajor?: number;
  devMinor?: number;
  /** The walk's own lstat of the entry, when it was asked for one (WalkOptions.stats). */
  stat?: EntryStat;
}

/**
 * What the context checksum needs of an entry's lstat (bigint precision), so it need not lstat the
 * entry again: on a 9,000-file context that second pass was a tenth of a one-file-edit rebuild.
 */
export interface EntryStat {
  /** `dev:ino:size:mtimeNs:ctimeNs`, in decimal: the stamp file digests are memoised under. */
  stamp: string;
  nlink: number;
}

export class ContextError extends Error {
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ContextError';
  }
}

export interface WalkOptions {
  /** Ignore patterns; when absent they are read from the ignore file (see readIgnorePatterns). */
  excludes?: readonly string[];
  /** Host path of the Dockerfile, to find a `<Dockerfile>.dockerignore` next to it. */
  dockerfile?: string;
  /**
   * When given, entries are lstat'ed with bigint (nanosecond) precision and what an upload needs of
   * each listed file's stat (stamp.ts) is stored here by path: no second stat per file.
   */
  fileStamps?: Map<string, FileStamp>;
  /** Entries are lstat'ed with bigint precision and carry what the checksum needs of it (`stat`). */
  stats?: boolean;
}

type AnyStats = fs.Stats | fs.BigIntStats;

function entryType(st: AnyStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'char';
  return 'block';
}

const SURROGATE = /[\uD800-\uDFFF]/;

/** Byte-wise order of names, as Go's sort of strings (UTF-16 order differs above the BMP). */
export function compareNames(a: string, b: string): number {
  // Without surrogates UTF-16 order is code point order, which is UTF-8 byte order: no buffers.
  if (!SURROGATE.test(a) && !SURROGATE.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * Sorts names in place in compareNames' order. Without surrogates (characters above the BMP) UTF-16
 * order is UTF-8 byte order, and the default sort gets it without two buffers per comparison.
 */
export function sortNames(names: string[]): string[] {
  return names.some((n) => SURROGATE.test(n)) ? names.sort(compareNames) : names.sort();
}

/**
 * The ignore patterns of a context: `<dockerfile>.dockerignore` beside the Dockerfile wins over the
 * context's `.dockerignore` (BuildKit's rule); none at all gives [].
 */
export async function readIgnorePatterns(contextDir: string, dockerfile?: string): Promise<string[]> {
  const candidates = dockerfile ? [`${dockerfile}.dockerignore`] : [];
  candidates.push(path.join(contextDir, '.dockerignore'));
  for (const file of candidates) {
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw new ContextError(`cannot read ignore file ${file}: ${(err as Error).message}`, file, { cause: err });
    }
    return parseIgnoreFile(text);
  }
  return [];
}

/** mtimeMs as a number, the same value whether the stat was taken with bigint precision or not. */
function mtimeMsOf(st: AnyStats): number {
  return typeof st.mtimeMs === 'bigint' ? nsToMs((st as fs.BigIntStats).mtimeNs) : st.mtimeMs;
}

export function entryFromStat(rel: string, st: AnyStats, linkTarget?: string): ContextEntry {
  const type = entryType(st);
  const e: ContextEntry = {
    path: rel,
    type,
    mode: Number(st.mode) & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: type === 'file' ? Number(st.size) : type === 'symlink' ? Buffer.byteLength(linkTarget ?? '') : 0,
    mtimeMs: mtimeMsOf(st),
  };
  if (linkTarget !== undefined) e.linkTarget = linkTarget;
  if (type === 'char' || type === 'block') {
    e.devMajor = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
    e.devMinor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & 0xfff00n));
  }
  return e;
}

function entryStatOf(st: fs.BigIntStats): EntryStat {
  // Only what the checksum reads: dev and ino lead the stamp, and a device's numbers are the entry's.
  return { stamp: contentStamp(st), nlink: Number(st.nlink) };
}

const walks = new WeakSet<readonly ContextEntry[]>();

/**
 * Whether `entries` is a list walkContext returned, in walk order: each directory's entries sorted
 * by name (compareNames), so an index of it need not check or sort them again.
 */
export function isWalkOrder(entries: readonly ContextEntry[]): boolean {
  return walks.has(entries);
}

/** Entries stat'ed between two yields to the event loop. */
const STAT_BATCH = 1000;

/** Walks `contextDir` and returns the entries the ignore rules let through, in walk order. */
export async function walkContext(contextDir: string, opts: WalkOptions = {}): Promise<ContextEntry[]> {
  const root = path.resolve(contextDir);
  let rootStat: AnyStats;
  try {
    rootStat = await fsp.stat(root);
  } catch (err) {
    throw new ContextError(`build context ${root}: ${(err as Error).message}`, root, { cause: err });
  }
  if (!rootStat.isDirectory()) throw new ContextError(`build context ${root} is not a directory`, root);

  const excludes = opts.excludes ?? (await readIgnorePatterns(root, opts.dockerfile));
  let matcher: PatternMatcher | undefined;
  try {
    matcher = excludes.length > 0 ? new PatternMatcher(excludes) : undefined;
  } catch (err) {
    throw new ContextError(`invalid .dockerignore pattern in ${root}: ${(err as Error).message}`, root, { cause: err });
  }

  const out: ContextEntry[] = [];
  const inodes = new Map<string, string>();
  // Excluded directories we went into; listed only when something below them is listed.
  const pending: { entry: ContextEntry; emitted: boolean }[] = [];

  const bigint = opts.fileStamps !== undefined || opts.stats === true;
  const emit = (e: ContextEntry, st: AnyStats) => {
    for (const p of pending) {
      if (!p.emitted) {
        out.push(p.entry);
        p.emitted = true;
      }
    }
    if (e.type === 'file' && opts.fileStamps) opts.fileStamps.set(e.path, fileStampOf(st as fs.BigIntStats));
    if (e.type === 'file' && Number(st.nlink) > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = inodes.get(key);
      if (first !== undefined) e.hardlinkTo = first;
      else inodes.set(key, e.path);
    }
    out.push(e);
  };

  let statted = 0;
  const visit = async (relDir: string, parentInfo: MatchInfo | undefined, dirExcluded: boolean): Promise<void> => {
    const hostDir = relDir === '' ? root : path.join(root, relDir);
    let dirents: fs.Dirent[];
    try {
      dirents = await fsp.readdir(hostDir, { withFileTypes: true });
    } catch (err) {
      // fsutil tolerates unreadable directories that are excluded anyway.
      if (dirExcluded && (err as NodeJS.ErrnoException).code === 'EACCES') return;
      throw new ContextError(`cannot read directory ${relDir || '.'} in build context ${root}: ${(err as Error).message}`, relDir || '.', { cause: err });
    }
    const kinds = new Map<string, fs.Dirent>();
    for (const d of dirents) kinds.set(d.name, d);
    const names = sortNames([...kinds.keys()]);
    const prefix = hostDir.endsWith('/') ? hostDir : `${hostDir}/`;
    for (const name of names) {
      const rel = relDir === '' ? name : `${relDir}/${name}`;
      const host = prefix + name;
      let excluded = false;
      let info: MatchInfo | undefined;
      if (matcher) {
        const r = matcher.match(rel, parentInfo);
        excluded = r.matched;
        info = r.info;
      }
      // An excluded entry that readdir says is no directory is never listed: no stat for it (a
      // tenth of bigctx's files). An unknown type (some file systems) is stat'ed to find out.
      const kind = kinds.get(name)!;
      if (excluded && (kind.isFile() || kind.isSymbolicLink() || kind.isFIFO() || kind.isSocket() || kind.isCharacterDevice() || kind.isBlockDevice()))
        continue;
      // Synchronous stats: lstatSync costs a third of a promise round trip per call, which on a
      // context of 10,000 files was most of the walk. A yield every STAT_BATCH entries keeps the
      // event loop (a daemon's other requests, a progress display) moving.
      if (++statted % STAT_BATCH === 0) await new Promise((r) => setImmediate(r));
      let st: AnyStats | undefined;
      try {
        st = fs.lstatSync(host, { bigint, throwIfNoEntry: false });
      } catch (err) {
        throw new ContextError(`cannot stat ${rel} in build context ${root}: ${(err as Error).message}`, rel, { cause: err });
      }
      if (st === undefined) continue; // removed while walking
      const isDir = st.isDirectory();
      if (excluded && (!isDir || !matcher!.mayIncludeBelow(rel))) continue;

      let linkTarget: string | undefined;
      if (st.isSymbolicLink()) {
        try {
          linkTarget = await fsp.readlink(host);
        } catch (err) {
          throw new ContextError(`cannot read symlink ${rel} in build context ${root}: ${(err as Error).message}`, rel, { cause: err });
        }
      }
      const entry = entryFromStat(rel, st, linkTarget);
      if (opts.stats) entry.stat = entryStatOf(st as fs.BigIntStats);
      if (!excluded) emit(entry, st);
      if (isDir) {
        pending.push({ entry, emitted: !excluded });
        await visit(rel, info, excluded);
        pending.pop();
      }
    }
  };

  await visit('', undefined, false);
  walks.add(out);
  return out;
}
