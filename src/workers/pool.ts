// The one worker pool (piscina) for CPU-heavy work: hashing files and compressing layers. Every room
// that hashes or compresses calls these functions; nothing else starts worker threads for that.
//
//  - Lazy: the pool (and its temporary worker module, see worker-source.ts) is made on first use.
//  - Sized to the machine: os.availableParallelism() threads at most, none kept while idle.
//  - Never holds the process open: piscina unrefs idle threads, and idle ones exit after IDLE_MS,
//    so a CLI run ends as soon as its own work does. closePool() ends it explicitly.
//  - Task inputs and outputs are plain data; the types below are the contract with the worker code.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
// piscina is loaded when the first task needs a pool: a cached build never does, and its import
// (with its dependencies) is a noticeable part of a warm build's start-up.
import type { Piscina } from 'piscina';
import { workerSource } from './worker-source.js';
import { contentStamp } from '../fsutil/stat.js';

const IDLE_MS = 10_000;
/** Files per scan/hash task: large enough to make the per-task cost (~tens of µs) vanish against
 * 20,000 small files, small enough that every thread gets a share of a modest tree. */
const BATCH_FILES = 256;
/** ...and a batch is cut earlier once it holds this many bytes, so one task is not one huge file set. */
const BATCH_BYTES = 64 << 20;

export type Compression = 'gzip' | 'zstd' | 'none';

export type ScannedType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block';

/** What scanFiles learns about one path. */
export type ScanResult =
  | {
      type: ScannedType;
      /** st_mode & 07777. */
      mode: number;
      /** "dev:ino:size:mtimeNs:ctimeNs" of what was read; "" when the file kept changing while read. */
      stamp: string;
      dev: string;
      ino: string;
      nlink: number;
      rdev: string;
      /** Symlinks: the target as stored. */
      linkTarget?: string;
      /** True when the content (files) and xattrs (files, directories) were read for this result. */
      hashed: boolean;
      /** Hex sha256 of a file's content, when hashed. */
      digest?: string;
      /** Hex sha256 over the sorted xattr names and values ("" for none), when hashed. */
      xattrs?: string;
    }
  | { error: string; message: string };

export interface ScanItem {
  /** Host path (not followed: lstat, O_NOFOLLOW). */
  path: string;
  /** The stamp a memo already holds a digest for: the file is only read when its stamp differs. */
  known?: string;
}

interface Tasks {
  hashFiles: { in: { paths: string[] }; out: string[] };
  scanFiles: { in: { items: ScanItem[] }; out: ScanResult[] };
  compressFile: { in: { src: string; dest: string; compression: Compression; level?: number }; out: { digest: string; size: number } };
  whoami: { in: Record<string, never>; out: { threadId: number; isMainThread: boolean } };
}

/** Counters for tests and progress: tasks run per kind, files whose content was read, and the quick lstats. */
export interface PoolCounters {
  tasks: Record<keyof Tasks, number>;
  filesHashed: number;
  /** Paths scanFiles lstat'ed on the calling thread for a known stamp. */
  quickStats: number;
}

let pool: Piscina | undefined;
let workerDir: string | undefined;
let counters: PoolCounters = zeroCounters();

function zeroCounters(): PoolCounters {
  return { tasks: { hashFiles: 0, scanFiles: 0, compressFile: 0, whoami: 0 }, filesHashed: 0, quickStats: 0 };
}

function removeWorkerDir(): void {
  if (workerDir === undefined) return;
  fs.rmSync(workerDir, { recursive: true, force: true });
  workerDir = undefined;
}

/**
 * The workers' module on disk. It is written once per version of its code and user, under a name
 * derived from both, and reused: a process killed with SIGKILL (no exit handler runs) then leaves
 * nothing new behind. A directory found there is trusted only if it is a real directory owned by us
 * and closed to others, and the file only if its content is exactly ours; otherwise a private
 * directory of this process is used and removed at exit.
 */
function workerModule(): string {
  const source = workerSource(fileURLToPath(import.meta.url));
  const uid = process.getuid?.() ?? -1;
  const dir = path.join(os.tmpdir(), `kiln-workers-${uid}-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`);
  try {
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) throw new Error(`${dir} is not a private directory of ours`);
    const file = path.join(dir, 'tasks.cjs');
    let current: string | undefined;
    try {
      current = fs.readFileSync(file, 'utf8');
    } catch {
      current = undefined;
    }
    if (current !== source) {
      const tmp = `${file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, source, { mode: 0o600 });
      fs.renameSync(tmp, file);
    }
    return file;
  } catch {
    workerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-workers-'));
    const file = path.join(workerDir, 'tasks.cjs');
    fs.writeFileSync(file, source, { mode: 0o600, flag: 'wx' });
    process.once('exit', removeWorkerDir);
    return file;
  }
}

let modulePath: string | undefined;

let piscinaClass: Promise<typeof Piscina> | undefined;

async function getPool(): Promise<Piscina> {
  if (pool) return pool;
  piscinaClass ??= import('piscina').then((m) => m.Piscina);
  const PiscinaClass = await piscinaClass;
  if (pool) return pool; // another task made it while this one waited for the import
  let filename: string;
  try {
    filename = modulePath = workerModule();
  } catch (err) {
    removeWorkerDir();
    throw new Error(`cannot write the worker pool's module under ${os.tmpdir()} (set TMPDIR to a writable directory): ${(err as Error).message}`, {
      cause: err,
    });
  }
  const threads = Math.max(1, os.availableParallelism());
  pool = new PiscinaClass({ filename, minThreads: 0, maxThreads: threads, idleTimeout: IDLE_MS });
  return pool;
}

async function run<K extends keyof Tasks>(name: K, input: Tasks[K]['in']): Promise<Tasks[K]['out']> {
  counters.tasks[name]++;
  const p = await getPool();
  return (await p.run(input, { name })) as Tasks[K]['out'];
}

/** Scans this small run on the calling thread: few paths, and little content to read. */
const SMALL_SCAN_ITEMS = 64;
const SMALL_SCAN_BYTES = 256 * 1024;

function isSmallScan(items: readonly ScanItem[], sizes?: readonly number[]): boolean {
  if (items.length > SMALL_SCAN_ITEMS) return false;
  let unknownBytes = 0;
  items.forEach((it, i) => {
    if (it.known === undefined) unknownBytes += sizes?.[i] ?? SMALL_SCAN_BYTES; // unknown size: count it as big
  });
  return unknownBytes <= SMALL_SCAN_BYTES;
}

let inline: Promise<{ scanFiles(input: Tasks['scanFiles']['in']): ScanResult[] }> | undefined;

/** The workers' task module, loaded into this thread for small scans. */
function inlineTasks(): Promise<{ scanFiles(input: Tasks['scanFiles']['in']): ScanResult[] }> {
  inline ??= (async () => {
    modulePath ??= workerModule();
    return createRequire(import.meta.url)(modulePath) as { scanFiles(input: Tasks['scanFiles']['in']): ScanResult[] };
  })();
  inline.catch(() => (inline = undefined));
  return inline;
}

/** Ends the pool's threads and removes its worker module. The next task starts a new pool. */
export async function closePool(): Promise<void> {
  const p = pool;
  pool = undefined;
  if (p) await p.destroy();
  removeWorkerDir();
  process.removeListener('exit', removeWorkerDir);
}

export function poolCounters(): PoolCounters {
  return { tasks: { ...counters.tasks }, filesHashed: counters.filesHashed, quickStats: counters.quickStats };
}

export function resetPoolCounters(): void {
  counters = zeroCounters();
}

/** Path of the worker module the current pool loads (undefined when no pool exists). */
export function workerModulePath(): string | undefined {
  return pool ? modulePath : undefined;
}

/** The maximum number of threads the pool runs. */
export function poolSize(): number {
  return Math.max(1, os.availableParallelism());
}

function wrap(what: string, err: unknown): Error {
  return new Error(`${what}: ${(err as Error).message}`, { cause: err });
}

/** Hex sha256 of a regular file's content, read in a worker in 1 MiB chunks (never whole). */
export async function hashFile(file: string): Promise<string> {
  try {
    const [digest] = await run('hashFiles', { paths: [file] });
    counters.filesHashed++;
    return digest!;
  } catch (err) {
    throw wrap(`hashing ${file}`, err);
  }
}

/** Cuts `list` into batches of at most BATCH_FILES items and BATCH_BYTES of `size`. */
function batches<T>(list: readonly T[], size: (t: T) => number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let bytes = 0;
  for (const t of list) {
    if (cur.length > 0 && (cur.length >= BATCH_FILES || bytes + size(t) > BATCH_BYTES)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(t);
    bytes += size(t);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Hex sha256 of many files, in batches spread over the pool (in input order). `sizes`, when known,
 * keeps big files from piling into one batch.
 */
export async function hashFiles(files: readonly string[], sizes?: readonly number[]): Promise<string[]> {
  const indexed = files.map((f, i) => ({ f, n: sizes?.[i] ?? 0 }));
  const parts = await Promise.all(
    batches(indexed, (x) => x.n).map(async (b) => {
      try {
        return await run('hashFiles', { paths: b.map((x) => x.f) });
      } catch (err) {
        throw wrap(`hashing files (${b[0]!.f} ...)`, err);
      }
    }),
  );
  counters.filesHashed += files.length;
  return parts.flat();
}

/**
 * lstat of every path, reading content and xattrs only where the stamp differs from `known`: the
 * step that lets a memo skip unchanged files. Results are in input order; a path that cannot be
 * read gives `{ error, message }` instead of throwing (the caller knows what a missing file means).
 */
export async function scanFiles(items: readonly ScanItem[], sizes?: readonly number[]): Promise<ScanResult[]> {
  // The warm case first: paths whose stamp the memo knows are lstat'ed here, on this thread; only
  // what is new or changed goes on to the tasks below. Handing thousands of
  // unchanged paths to a worker cost more in copying them across than the stats themselves.
  const quick = await statKnown(items);
  const rest: number[] = [];
  quick.forEach((r, i) => {
    if (r === undefined) rest.push(i);
  });
  if (rest.length === 0) return quick as ScanResult[];
  const scanned = await scanAll(
    rest.map((i) => items[i]!),
    sizes && rest.map((i) => sizes[i]!),
  );
  rest.forEach((i, k) => {
    quick[i] = scanned[k];
  });
  return quick as ScanResult[];
}

/** Paths stat'ed by statKnown between two yields to the event loop. */
const STAT_SLICE = 1000;

/**
 * lstat (bigint) of each item with a known stamp: an unchanged file or directory, or a symlink,
 * gives its result here; anything else (no stamp known, a changed stamp, an error, another type)
 * is left undefined for the full scan. Must agree with the worker's scanFiles (worker-source.ts):
 * the same stamp text, type names and fields.
 */
async function statKnown(items: readonly ScanItem[]): Promise<(ScanResult | undefined)[]> {
  const one = (it: ScanItem): ScanResult | undefined => {
    if (it.known === undefined) return undefined;
    counters.quickStats++;
    const st = fs.lstatSync(it.path, { bigint: true, throwIfNoEntry: false });
    if (st === undefined) return undefined; // the full scan reports the error as it always has
    const type: ScannedType | undefined = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : undefined;
    if (type === undefined) return undefined;
    const stamp = contentStamp(st);
    if (type !== 'symlink' && stamp !== it.known) return undefined;
    const r: ScanResult = {
      type,
      mode: Number(st.mode & 0o7777n),
      stamp,
      dev: String(st.dev),
      ino: String(st.ino),
      nlink: Number(st.nlink),
      rdev: String(st.rdev),
      hashed: false,
    };
    if (type === 'symlink') r.linkTarget = fs.readlinkSync(it.path);
    return r;
  };
  // Synchronous stats, a slice at a time: the promise API cost ~10 us of this thread per call
  // (9,000 paths: ~100 ms a build in a daemon's profile) against ~3 us for lstatSync, and a yield
  // between slices keeps a daemon's other requests moving.
  const out = new Array<ScanResult | undefined>(items.length);
  for (let from = 0; from < items.length; from += STAT_SLICE) {
    if (from > 0) await new Promise((r) => setImmediate(r));
    for (let i = from; i < Math.min(items.length, from + STAT_SLICE); i++) {
      try {
        out[i] = one(items[i]!);
      } catch {
        out[i] = undefined; // a path that changed under us: the full scan looks again
      }
    }
  }
  return out;
}

async function scanAll(items: readonly ScanItem[], sizes?: readonly number[]): Promise<ScanResult[]> {
  if (isSmallScan(items, sizes)) {
    // A handful of stats and at most a little hashing (a cached COPY's key, say): not worth waking
    // a worker thread, which costs more than the work. The same task code runs here.
    counters.tasks.scanFiles++;
    let out: ScanResult[];
    try {
      out = (await inlineTasks()).scanFiles({ items: [...items] });
    } catch (err) {
      throw wrap(`scanning files (${items[0]?.path} ...)`, err);
    }
    for (const r of out) if ('hashed' in r && r.hashed && r.type === 'file') counters.filesHashed++;
    return out;
  }
  const indexed = items.map((it, i) => ({ it, n: sizes?.[i] ?? 0 }));
  const parts = await Promise.all(
    batches(indexed, (x) => x.n).map(async (b) => {
      try {
        return await run('scanFiles', { items: b.map((x) => x.it) });
      } catch (err) {
        throw wrap(`scanning files (${b[0]!.it.path} ...)`, err);
      }
    }),
  );
  const out = parts.flat();
  for (const r of out) if ('hashed' in r && r.hashed && r.type === 'file') counters.filesHashed++;
  return out;
}

/**
 * Compresses file `src` into file `dest` in a worker; returns the sha256 digest ("sha256:<hex>") and
 * size of what was written. zstd goes through zstd-codec's streaming transform fed 1 MiB at a time.
 */
export async function compressFile(src: string, dest: string, compression: Compression, level?: number): Promise<{ digest: string; size: number }> {
  try {
    return await run('compressFile', { src, dest, compression, ...(level !== undefined ? { level } : {}) });
  } catch (err) {
    throw wrap(`compressing ${src} (${compression})`, err);
  }
}

/** Which thread runs a task (for tests: it must not be the main one). */
export function whoami(): Promise<{ threadId: number; isMainThread: boolean }> {
  return run('whoami', {});
}
