// The daemon half of the incremental context upload (the client half is context/sync.ts).
//
// Each context a client sent is kept under `<dir>/<id>/`, keyed by an identity the client chooses
// (typically one per CI job and context directory):
//
//   <dir>/<id>/tree/          the files; the build reads this directory
//   <dir>/<id>/index.json     the SyncEntry list last applied to tree/, and when it was last used
//   <dir>/<id>/staging-*/     files of an upload in progress (renamed into tree/ when complete)
//
// One upload is plan() (compare the client's list with index.json: which files to send) then
// receive() (take those files into staging/, then make tree/ equal the list). Files that did not
// change keep their inode, mtime and ctime, so caches keyed by them on this side stay valid.
//
// Crash safety: receive() does not touch tree/ until every wanted file is in staging/. Before it
// changes tree/ it deletes index.json, and writes it again (temp + rename) only when tree/ equals the
// list: a daemon killed half way leaves no index, so the next upload is a full one, and the apply
// below (which walks tree/ itself rather than trusting the index) repairs whatever was left.
//
// Safety: a previous upload may have left `a -> /etc` in tree/. Every path operation checks its parent
// components with lstat and refuses a link (context/tar-extract.ts's safeTreePath), names from the
// client never reach the file system before validation, and tar names are only matched against the
// planned list (staged files get numbered names). Check-then-use is sound here because a lease gives
// exclusive use of the tree while it is written.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ContextError, listDigest, safeTreePathSync, setDirMetaSync, type ContextEntry, type SyncEntry } from '../context/index.js';
import { processAlive } from '../fsutil/process.js';
import { isMissing, lstatOrUndefined, lstatOrUndefinedSync } from '../fsutil/stat.js';
import { UploadReceiver } from './upload-receiver.js';

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
const STAGING_PREFIX = 'staging-';
const INDEX = 'index.json';

interface IndexFile {
  version: 1;
  lastUsed: string;
  entries: SyncEntry[];
}

export interface ContextLease {
  readonly id: string;
  /** The directory the build reads (the tree). */
  readonly dir: string;
  /** Validates the client's list and says which files to send. Modifies nothing. */
  plan(entries: SyncEntry[]): Promise<{ wanted: string[]; bytes: number }>;
  /**
   * Instead of plan() and receive(): when the tree is known (in this process) to equal the list whose
   * listDigest() is `digest`, takes it as received and says true; otherwise false, and a plan() of
   * the whole list must follow. Reads nothing but the index's stat.
   */
  reuse(digest: string): Promise<boolean>;
  /** Reads the tar of the planned files, then makes the tree equal the planned list. */
  receive(tar: NodeJS.ReadableStream): Promise<{ files: number; bytes: number }>;
  /** After receive(): the entries of the tree, as a walk of it would list them (without walking it). */
  entries(): ContextEntry[];
  /**
   * After receive() or reuse(): a name for the tree's exact state, the same in a later lease only
   * while the tree has not changed in between (see Known). Undefined when unknown.
   */
  token(): string | undefined;
  /** Touches lastUsed and releases the lease. Idempotent. */
  release(): Promise<void>;
}

export interface KeptContextInfo {
  id: string;
  /** Disk usage of the tree in bytes (blocks, each inode once), as `du` would say. */
  size: number;
  lastUsed: Date;
  inUse: boolean;
}

function checkId(id: string): void {
  if (typeof id !== 'string' || !ID_RE.test(id)) {
    throw new ContextError(
      `invalid build context identity ${JSON.stringify(id)}: use 1-128 letters, digits, "_", "." or "-", starting with a letter or digit`,
      String(id),
    );
  }
}

/**
 * What this process knows a kept tree equals, learnt when it received (or verified) the tree's list.
 * Sound because the daemon holds its root alone and changes a tree only through a lease's receive(),
 * which forgets this first: while an entry is here, the tree is exactly `entries`, so a client whose
 * list has the same digest needs nothing compared, and the token names that content (a COPY's key
 * over it can be reused without stat'ing a file). Lost with the process, never on disk. As a guard
 * against hands in the root, it holds only while index.json is the very file it was learnt with.
 */
interface Known {
  /** index.json's inode and ctime when this was learnt. */
  index: string;
  entries: SyncEntry[];
  /** listDigest(entries). */
  digest: string;
  /** Unique in this process to this content of this tree: a new one whenever the tree changes. */
  token: string;
}

/** The process-unique part of tokens, so a token of an earlier daemon can never match. */
const TOKEN_PREFIX = randomBytes(6).toString('hex');
let tokenSerial = 0;

export class KeptContexts {
  // Present while an id is leased (or being removed); the queue holds the waiting leases, FIFO.
  private readonly slots = new Map<string, (() => void)[]>();
  private readonly known = new Map<string, Known>();
  private readonly maxContextBytes: number | undefined;

  constructor(
    private readonly dir: string,
    opts: { maxContextBytes?: number } = {},
  ) {
    this.maxContextBytes = opts.maxContextBytes;
  }

  async lease(id: string, signal?: AbortSignal): Promise<ContextLease> {
    checkId(id);
    await this.acquire(id, signal);
    try {
      const base = path.join(this.dir, id);
      // The contexts hold other people's files: keep the directory private to the daemon.
      await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
      await fsp.mkdir(path.join(base, 'tree'), { recursive: true, mode: 0o700 });
      const known = {
        get: () => this.known.get(id),
        set: (k: Known | undefined) => (k === undefined ? this.known.delete(id) : this.known.set(id, k)),
      };
      return new Lease(id, base, this.maxContextBytes, known, () => this.handOff(id));
    } catch (err) {
      this.handOff(id);
      throw err;
    }
  }

  /** A lease on `id` if nobody holds it now; undefined (without waiting) otherwise. */
  async tryLease(id: string): Promise<ContextLease | undefined> {
    checkId(id);
    return this.slots.has(id) ? undefined : this.lease(id);
  }

  async list(): Promise<KeptContextInfo[]> {
    const out: KeptContextInfo[] = [];
    for (const id of await this.ids()) {
      const base = path.join(this.dir, id);
      const st = await lstatOrUndefined(base);
      if (!st?.isDirectory()) continue;
      out.push({
        id,
        size: await diskUsage(path.join(base, 'tree')),
        // Touched when a lease ends (and changed by every upload): the last use.
        lastUsed: st.mtime,
        inUse: this.slots.has(id),
      });
    }
    return out;
  }

  async remove(id: string): Promise<boolean> {
    checkId(id);
    if (this.slots.has(id)) return false;
    this.slots.set(id, []); // hold it while removing: a lease asked for meanwhile waits, then starts empty
    this.known.delete(id);
    try {
      await fsp.rm(path.join(this.dir, id), { recursive: true, force: true });
      return true;
    } finally {
      this.handOff(id);
    }
  }

  /** Removes staging dirs and index temp files that a killed daemon left (not those of live leases). */
  async cleanup(): Promise<void> {
    for (const id of await this.ids()) {
      if (this.slots.has(id)) continue;
      const base = path.join(this.dir, id);
      let names: string[];
      try {
        names = await fsp.readdir(base);
      } catch (err) {
        if (isMissing(err)) continue;
        throw err;
      }
      for (const name of names) {
        const pid = leftoverPid(name);
        if (pid === undefined) continue;
        // Another live process (an embedded kiln sharing the root) may still be writing it.
        if (pid !== process.pid && processAlive(pid)) continue;
        await fsp.rm(path.join(base, name), { recursive: true, force: true });
      }
    }
  }

  private async ids(): Promise<string[]> {
    try {
      return (await fsp.readdir(this.dir)).filter((n) => ID_RE.test(n)).sort();
    } catch (err) {
      if (isMissing(err)) return [];
      throw err;
    }
  }

  private async acquire(id: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const queue = this.slots.get(id);
    if (queue === undefined) {
      this.slots.set(id, []);
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = queue.indexOf(grant);
        if (i >= 0) queue.splice(i, 1);
        reject(signal!.reason);
      };
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      queue.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private handOff(id: string): void {
    const queue = this.slots.get(id);
    const next = queue?.shift();
    if (next)
      next(); // the slot stays taken, now by the next lease
    else this.slots.delete(id);
  }
}

/** The same entries, field for field, in the same order: what the tree already equals. */
function sameList(a: SyncEntry[], b: SyncEntry[]): boolean {
  if (a.length !== b.length) return false;
  const fields = ['path', 'type', 'mode', 'size', 'mtimeMs', 'stamp', 'linkTarget', 'hardlinkTo'] as const;
  for (let i = 0; i < a.length; i++) {
    for (const f of fields) if (a[i]![f] !== b[i]![f]) return false;
  }
  return true;
}

async function indexStamp(base: string): Promise<string | undefined> {
  const st = await fsp.lstat(path.join(base, INDEX), { bigint: true }).catch(() => undefined);
  return st?.isFile() ? `${st.dev}:${st.ino}:${st.ctimeNs}` : undefined;
}

function newToken(): string {
  return `${TOKEN_PREFIX}-${++tokenSerial}`;
}

/** `staging-<pid>-<rand>` or `index.json.tmp-<pid>-<rand>` -> pid; anything else -> undefined. */
function leftoverPid(name: string): number | undefined {
  const m = /^(?:staging-|index\.json\.tmp-)(\d+)-[0-9a-f]+$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

async function readIndex(base: string): Promise<IndexFile | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(base, INDEX), 'utf8');
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as IndexFile;
    if (parsed.version !== 1 || !Array.isArray(parsed.entries)) return undefined;
    return parsed;
  } catch {
    return undefined; // unreadable: treated as absent, so the next upload is a full one
  }
}

async function writeIndex(base: string, entries: SyncEntry[], lastUsed: Date): Promise<void> {
  const body: IndexFile = { version: 1, lastUsed: lastUsed.toISOString(), entries };
  const tmp = path.join(base, `${INDEX}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await fsp.open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(JSON.stringify(body));
    await fh.sync(); // the rename below must not publish an empty index after a power cut
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, path.join(base, INDEX));
}

async function removeIndex(base: string): Promise<void> {
  await fsp.rm(path.join(base, INDEX), { force: true });
}

/** Disk usage of a tree: allocated blocks, each inode once (hard links), never following links. */
async function diskUsage(root: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const visit = async (host: string): Promise<void> => {
    const st = await lstatOrUndefined(host);
    if (st === undefined) return;
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      total += st.blocks * 512;
    }
    if (st.isDirectory()) for (const name of await fsp.readdir(host)) await visit(path.join(host, name));
  };
  await visit(root);
  return total;
}

// ---- validation of the client's list ----

function bad(p: unknown, reason: string): ContextError {
  return new ContextError(`build context list: entry ${JSON.stringify(p)}: ${reason}`, typeof p === 'string' ? p : '');
}

function isCleanPath(p: string): boolean {
  if (p === '' || p.includes('\0') || p.startsWith('/')) return false;
  return p.split('/').every((c) => c !== '' && c !== '.' && c !== '..');
}

/** Checks the list as untrusted input (it came over the network); returns it by path. */
function validateList(entries: unknown): Map<string, SyncEntry> {
  if (!Array.isArray(entries)) throw new ContextError('build context list: not an array', '');
  const byPath = new Map<string, SyncEntry>();
  for (const raw of entries as unknown[]) {
    const e = raw as SyncEntry;
    if (typeof e !== 'object' || e === null || typeof e.path !== 'string') throw bad(e?.path, 'not an entry with a path');
    const p = e.path;
    if (!isCleanPath(p)) throw bad(p, 'not a clean relative path');
    if (byPath.has(p)) throw bad(p, 'listed twice');
    const slash = p.lastIndexOf('/');
    if (slash >= 0 && byPath.get(p.slice(0, slash))?.type !== 'dir') throw bad(p, `its parent ${p.slice(0, slash)} is not listed before it as a directory`);
    if (e.type !== 'file' && e.type !== 'dir' && e.type !== 'symlink') throw bad(p, `unknown type ${JSON.stringify(e.type)}`);
    if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o7777) throw bad(p, `invalid mode ${JSON.stringify(e.mode)}`);
    if (!Number.isSafeInteger(e.size) || e.size < 0) throw bad(p, `invalid size ${JSON.stringify(e.size)}`);
    if (typeof e.mtimeMs !== 'number' || !Number.isFinite(e.mtimeMs)) throw bad(p, `invalid mtime ${JSON.stringify(e.mtimeMs)}`);
    if (e.stamp !== undefined && typeof e.stamp !== 'string') throw bad(p, 'invalid stamp');
    if (e.type === 'symlink') {
      if (typeof e.linkTarget !== 'string' || e.linkTarget === '' || e.linkTarget.includes('\0')) throw bad(p, 'a symlink needs a target without NUL bytes');
    } else if (e.linkTarget !== undefined) {
      throw bad(p, 'only symlinks have a link target');
    }
    if (e.hardlinkTo !== undefined) {
      const target = typeof e.hardlinkTo === 'string' ? byPath.get(e.hardlinkTo) : undefined;
      if (e.type !== 'file') throw bad(p, 'only files can be hard links');
      if (target === undefined || target.type !== 'file' || target.hardlinkTo !== undefined) {
        throw bad(p, `hard link to ${JSON.stringify(e.hardlinkTo)}, which is not an earlier file of the list`);
      }
    }
    // Keep only the known fields: the list is stored in index.json as the next upload's reference.
    const clean: SyncEntry = { path: p, type: e.type, mode: e.mode, size: e.type === 'file' ? e.size : 0, mtimeMs: e.mtimeMs };
    if (e.stamp !== undefined) clean.stamp = e.stamp;
    if (e.linkTarget !== undefined) clean.linkTarget = e.linkTarget;
    if (e.hardlinkTo !== undefined) clean.hardlinkTo = e.hardlinkTo;
    byPath.set(p, clean);
  }
  return byPath;
}

/** A file whose content must be sent: new, of another kind before, or changed by its stamp. */
function needsContent(e: SyncEntry, kept: SyncEntry | undefined): boolean {
  if (e.type !== 'file' || e.hardlinkTo !== undefined) return false;
  return (
    kept === undefined || kept.type !== 'file' || kept.hardlinkTo !== undefined || kept.stamp !== e.stamp || kept.size !== e.size || kept.mtimeMs !== e.mtimeMs
  );
}

interface Plan {
  entries: SyncEntry[];
  /** listDigest(entries). */
  digest: string;
  byPath: Map<string, SyncEntry>;
  /** Wanted files by path, in list order. */
  wanted: Map<string, SyncEntry>;
  /** The list is the one tree/ already equals (index.json): nothing to apply. */
  unchanged: boolean;
}

class Lease implements ContextLease {
  readonly dir: string;
  private plannedList: Plan | undefined;
  private released = false;
  /** The list tree/ now equals, once received. */
  private applied: SyncEntry[] | undefined;

  constructor(
    readonly id: string,
    private readonly base: string,
    private readonly maxBytes: number | undefined,
    private readonly known: { get(): Known | undefined; set(k: Known | undefined): void },
    private readonly onRelease: () => void,
  ) {
    this.dir = path.join(base, 'tree');
  }

  async plan(entries: SyncEntry[]): Promise<{ wanted: string[]; bytes: number }> {
    this.checkLive();
    this.plannedList = undefined;
    const byPath = validateList(entries);
    let total = 0;
    for (const e of byPath.values()) if (e.type === 'file' && e.hardlinkTo === undefined) total += e.size;
    if (this.maxBytes !== undefined && total > this.maxBytes) {
      throw new ContextError(`build context exceeds the maximum size of ${this.maxBytes} bytes`, '');
    }
    // What the tree equals: known in memory since the last upload, else its index on disk.
    const known = await this.stillKnown();
    const index = known ? { entries: known.entries } : await readIndex(this.base);
    const kept = new Map(index?.entries.map((e) => [e.path, e]) ?? []);
    const wanted = new Map<string, SyncEntry>();
    let bytes = 0;
    for (const e of byPath.values()) {
      if (!needsContent(e, kept.get(e.path))) continue;
      wanted.set(e.path, e);
      bytes += e.size;
    }
    const list = [...byPath.values()];
    this.plannedList = { entries: list, digest: listDigest(list), byPath, wanted, unchanged: index !== undefined && sameList(index.entries, list) };
    return { wanted: [...wanted.keys()], bytes };
  }

  async reuse(digest: string): Promise<boolean> {
    this.checkLive();
    this.plannedList = undefined;
    const known = await this.stillKnown();
    if (known === undefined || known.digest !== digest) return false;
    this.applied = known.entries;
    return true;
  }

  /** What is known of the tree, unless its index is not the one it was learnt with (then forgotten). */
  private async stillKnown(): Promise<Known | undefined> {
    const known = this.known.get();
    if (known === undefined) return undefined;
    if ((await indexStamp(this.base)) === known.index) return known;
    this.known.set(undefined);
    return undefined;
  }

  private async learn(entries: SyncEntry[], digest: string): Promise<void> {
    const index = await indexStamp(this.base);
    if (index !== undefined) this.known.set({ index, entries, digest, token: newToken() });
  }

  token(): string | undefined {
    return this.applied === undefined ? undefined : this.known.get()?.token;
  }

  async receive(input: NodeJS.ReadableStream): Promise<{ files: number; bytes: number }> {
    input.on('error', () => {}); // pipeline reports it; until it listens, an unheard 'error' would crash
    try {
      return await this.receiveAndApply(input);
    } catch (err) {
      // Whatever failed, the input is not read further: end it, so a writer piping into it stops.
      (input as { destroy?: (e?: Error) => void }).destroy?.(err as Error);
      throw err;
    }
  }

  private async receiveAndApply(input: NodeJS.ReadableStream): Promise<{ files: number; bytes: number }> {
    this.checkLive();
    const plan = this.plannedList;
    if (plan === undefined) throw new ContextError('build context upload: receive() without a plan()', '');
    this.plannedList = undefined; // one receive per plan
    if (plan.unchanged && plan.wanted.size === 0) {
      // The warm case: the tree already equals this list. Read the (empty) tar to check it, and
      // leave tree and index as they are rather than walk and rewrite 10,000 entries.
      await receiveFiles(input, plan.wanted, this.base);
      this.applied = plan.entries;
      // Known from now on (after a restart, the first unchanged upload is where it starts again).
      if (this.known.get()?.digest !== plan.digest) await this.learn(plan.entries, plan.digest);
      return { files: 0, bytes: 0 };
    }
    const staging = path.join(this.base, `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`);
    await fsp.mkdir(staging, { mode: 0o700 });
    try {
      const staged = await receiveFiles(input, plan.wanted, staging);
      let bytes = 0;
      for (const e of staged.keys()) bytes += plan.wanted.get(e)!.size;
      // From here tree/ changes: no index (and nothing known of it) until it equals the list again.
      this.known.set(undefined);
      await removeIndex(this.base);
      this.applied = undefined;
      await applyList(this.dir, plan, staged);
      await writeIndex(this.base, plan.entries, new Date());
      this.applied = plan.entries;
      await this.learn(plan.entries, plan.digest);
      return { files: staged.size, bytes };
    } finally {
      await fsp.rm(staging, { recursive: true, force: true });
    }
  }

  entries(): ContextEntry[] {
    if (this.applied === undefined) throw new ContextError(`build context ${this.id}: entries() before receive()`, '');
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    return this.applied.map((e) => {
      const c: ContextEntry = {
        path: e.path,
        type: e.type,
        mode: e.mode,
        uid,
        gid,
        size: e.type === 'symlink' ? Buffer.byteLength(e.linkTarget ?? '') : e.size,
        mtimeMs: e.mtimeMs,
      };
      if (e.linkTarget !== undefined) c.linkTarget = e.linkTarget;
      if (e.hardlinkTo !== undefined) c.hardlinkTo = e.hardlinkTo;
      return c;
    });
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      // Recency for list() (and so prune's order): a touch, not a rewrite of the whole index.
      const now = new Date();
      await fsp.utimes(this.base, now, now);
    } finally {
      this.onRelease();
    }
  }

  private checkLive(): void {
    if (this.released) throw new ContextError(`build context ${this.id}: the lease was released`, '');
  }
}

/**
 * How long the apply may hold the thread with synchronous calls before it lets the event loop run
 * (the daemon serves other builds meanwhile).
 */
const SLICE_MS = 10;

/** Tells a synchronous loop when its slice is over, and yields to the event loop then. */
class Slices {
  private start = performance.now();
  due(): boolean {
    return performance.now() - this.start >= SLICE_MS;
  }
  async yield(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }
}

/**
 * Reads the upload tar into `staging` (flat numbered names: tar names are only matched, never used as
 * paths). Exactly the wanted files, each once, with the planned size; anything else fails naming it.
 */
async function receiveFiles(input: NodeJS.ReadableStream, wanted: Map<string, SyncEntry>, staging: string): Promise<Map<string, string>> {
  const receiver = new UploadReceiver(wanted, staging);
  try {
    await pipeline(input, receiver);
  } catch (err) {
    if (err instanceof ContextError) throw err;
    throw new ContextError(`build context upload: unreadable tar: ${(err as Error).message}`, '', { cause: err });
  }
  receiver.checkComplete();
  return receiver.staged;
}

const sameKind = (e: SyncEntry, d: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }) =>
  e.type === 'dir' ? d.isDirectory() : e.type === 'symlink' ? d.isSymbolicLink() : d.isFile();

/** A file of the list into the tree: the received copy renamed into place, or the kept one left as it is. */
function placeFile(tree: string, e: SyncEntry, staged: Map<string, string>, known: Set<string>): void {
  const host = safeTreePathSync(tree, e.path, { known });
  const st = lstatOrUndefinedSync(host);
  if (st !== undefined && !sameKind(e, st)) throw new ContextError(`build context: ${e.path} changed in the kept tree while it was updated`, e.path);
  const received = staged.get(e.path);
  if (received !== undefined) {
    // Atomic replacement: a killed daemon leaves the old file or the new one, never half of one.
    fs.renameSync(received, host);
    return;
  }
  // Unchanged: left alone, so its inode and times stay as they were.
  if (st === undefined) throw new ContextError(`build context: kept file ${e.path} is missing; the next upload sends everything`, e.path);
  if ((st.mode & 0o7777) !== e.mode) fs.chmodSync(host, e.mode);
}

/**
 * Makes `tree` equal the planned list, moving staged files into place. Synchronous calls in slices
 * of about SLICE_MS (see Slices): per entry an lstat and a rename or a mkdir, each far cheaper than
 * its round trip through libuv's thread pool.
 */
async function applyList(tree: string, plan: Plan, staged: Map<string, string>): Promise<void> {
  const slices = new Slices();
  // 1. Remove what is not listed, or listed as another kind (a link that is now a dir goes first, so
  //    nothing below is ever written through it). Walks the tree itself, not the old index.
  const prune = async (relDir: string): Promise<void> => {
    const hostDir = relDir === '' ? tree : path.join(tree, relDir);
    for (const d of fs.readdirSync(hostDir, { withFileTypes: true })) {
      if (slices.due()) await slices.yield();
      const rel = relDir === '' ? d.name : `${relDir}/${d.name}`;
      const e = plan.byPath.get(rel);
      if (e === undefined || !sameKind(e, d)) fs.rmSync(path.join(hostDir, d.name), { recursive: true, force: true });
      else if (d.isDirectory()) await prune(rel);
    }
  };
  await prune('');

  // 2. Create and update in list order (parents come before children, a hard link's target before it).
  const known = new Set<string>(); // directories verified (or made) in this pass
  for (const e of plan.entries) {
    if (slices.due()) await slices.yield();
    if (e.type === 'file' && e.hardlinkTo === undefined) {
      placeFile(tree, e, staged, known);
      continue;
    }
    const host = safeTreePathSync(tree, e.path, { known });
    const st = lstatOrUndefinedSync(host);
    if (st !== undefined && !sameKind(e, st)) throw new ContextError(`build context: ${e.path} changed in the kept tree while it was updated`, e.path);
    if (e.type === 'dir') {
      // Owner-writable until step 3, so its contents can be written whatever its final mode.
      if (st === undefined) fs.mkdirSync(host, { mode: 0o700 });
      else if ((st.mode & 0o700) !== 0o700) fs.chmodSync(host, (st.mode & 0o7777) | 0o700);
      known.add(e.path);
    } else if (e.type === 'symlink') {
      if (st !== undefined && fs.readlinkSync(host) === e.linkTarget) {
        if (Math.abs(st.mtimeMs - e.mtimeMs) >= 0.001) fs.lutimesSync(host, e.mtimeMs / 1000, e.mtimeMs / 1000);
        continue;
      }
      if (st !== undefined) fs.unlinkSync(host);
      fs.symlinkSync(e.linkTarget!, host); // stored as text, never followed
      fs.lutimesSync(host, e.mtimeMs / 1000, e.mtimeMs / 1000);
    } else if (e.hardlinkTo !== undefined) {
      const target = path.join(tree, e.hardlinkTo); // its parents were verified when it was applied
      const tst = lstatOrUndefinedSync(target);
      if (!tst?.isFile()) throw new ContextError(`build context: hard link target ${e.hardlinkTo} of ${e.path} is missing`, e.path);
      if (st !== undefined && st.ino === tst.ino && st.dev === tst.dev) continue;
      if (st !== undefined) fs.unlinkSync(host);
      fs.linkSync(target, host);
    }
  }

  // 3. Directories' modes and mtimes last, deepest first (writing inside a directory changes its mtime).
  for (let i = plan.entries.length - 1; i >= 0; i--) {
    const e = plan.entries[i]!;
    if (e.type !== 'dir') continue;
    if (slices.due()) await slices.yield();
    const host = path.join(tree, e.path);
    const st = fs.lstatSync(host);
    if ((st.mode & 0o7777) !== e.mode || Math.abs(st.mtimeMs - e.mtimeMs) >= 0.001) setDirMetaSync(host, e.mode, e.mtimeMs);
  }
}
