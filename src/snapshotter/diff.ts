// Turns a snapshot's changes into a layer tar, and the tar into a blob.
//
// Two change sources:
//  - overlayChanges: the overlay upper dir *is* the change set; 0/0 character devices become `.wh.NAME`
//    and `trusted.overlay.opaque=y` directories get a `.wh..wh..opq` entry.
//  - treeChanges: for the copying snapshotter, a walk comparing the child tree against its parent's.
// Both walk directories in byte order of names, emit a directory before its contents, and turn the
// second and later names of a hard-linked inode into hard links to the first, so the same tree always
// gives the same tar.
//
// The walks are synchronous generators (lstat, readdir, xattrs: synchronous calls), pulled a batch at
// a time by tarReadable: thousands of small files cost a few syscalls each, not a round trip through
// libuv's thread pool per call. The tar is hashed (diffID) and compressed in one pass, the compressor
// (zlib, in the thread pool) working on one batch while the next is read.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { BigIntStats } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { compressBlob, compressStages, HashTap, layerMediaType } from './compression.js';
import { devMajor, devMinor, getXattrSync, isWhiteout, OVERLAY_OPAQUE, readXattrsSync } from './fsops.js';
import { hashTar, tarReadable, type TarEntry } from '../util/tar-writer.js';
import type { DiffOptions, DiffResult } from './types.js';

function lstat(p: string): BigIntStats {
  return fs.lstatSync(p, { bigint: true });
}

function lstatOrNull(p: string): BigIntStats | null {
  try {
    return lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/** Directory entries in byte order (not UTF-16 order), so sorting is the same for every name. */
function sortedNames(dir: string): string[] {
  const names = fs.readdirSync(dir);
  return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

function join(rel: string, name: string): string {
  return rel ? `${rel}/${name}` : name;
}

/** Tracks hard-linked inodes: the first archived name of each stays a file, later ones link to it. */
class LinkTracker {
  private readonly seen = new Map<string, string>();
  firstName(st: BigIntStats, name: string): string | undefined {
    if (st.nlink <= 1n || st.isDirectory()) return undefined;
    const key = `${st.dev}:${st.ino}`;
    const first = this.seen.get(key);
    if (first === undefined) this.seen.set(key, name);
    return first;
  }
}

/** The tar entry describing host file `host` (lstat'ed as `st`) under archive name `name`. */
function entryFor(host: string, name: string, st: BigIntStats, links: LinkTracker): TarEntry {
  const base = {
    name,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtime: Number(st.mtimeNs / 1_000_000_000n),
  };
  const first = links.firstName(st, name);
  if (first !== undefined) return { ...base, type: 'link', linkname: first };
  const xattrs = readXattrsSync(host);
  if (st.isDirectory()) return { ...base, type: 'dir', xattrs };
  if (st.isFile()) return { ...base, type: 'file', size: Number(st.size), source: host, xattrs };
  if (st.isSymbolicLink()) return { ...base, type: 'symlink', linkname: fs.readlinkSync(host), xattrs };
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    return {
      ...base,
      type: st.isCharacterDevice() ? 'char' : 'block',
      devmajor: devMajor(st.rdev),
      devminor: devMinor(st.rdev),
      xattrs,
    };
  }
  if (st.isFIFO()) return { ...base, type: 'fifo', xattrs };
  throw new Error(`${host}: sockets and other special files cannot go into a layer`);
}

function whiteoutEntry(name: string, st: BigIntStats | null): TarEntry {
  return {
    name,
    type: 'file',
    size: 0,
    mode: st ? Number(st.mode & 0o777n) : 0,
    uid: st ? Number(st.uid) : 0,
    gid: st ? Number(st.gid) : 0,
    mtime: st ? Number(st.mtimeNs / 1_000_000_000n) : 0,
  };
}

/** The changes recorded in an overlay upper dir. */
export function* overlayChanges(upper: string, lowers: readonly string[] = []): Generator<TarEntry> {
  const links = new LinkTracker();
  function* walk(rel: string): Generator<TarEntry> {
    const dirHost = rel ? path.join(upper, rel) : upper;
    const items: Array<{ tarName: string; name: string; st: BigIntStats; whiteout: boolean }> = [];
    for (const name of fs.readdirSync(dirHost)) {
      const st = lstat(path.join(dirHost, name));
      const whiteout = isWhiteout(st);
      items.push({ tarName: whiteout ? `.wh.${name}` : name, name, st, whiteout });
    }
    items.sort((a, b) => Buffer.compare(Buffer.from(a.tarName), Buffer.from(b.tarName)));
    for (const it of items) {
      const host = path.join(dirHost, it.name);
      const name = join(rel, it.tarName);
      // Whiteouts may share one inode (the kernel's whiteout cache): never treat them as hard links.
      if (it.whiteout) {
        yield whiteoutEntry(name, it.st);
        continue;
      }
      if (it.st.isDirectory()) {
        const opaque = getXattrSync(host, OVERLAY_OPAQUE)?.toString() === 'y';
        // overlayfs copies a directory up whenever something below it changes (or a mount point is
        // made and removed in it): such a copy says nothing new, so only its changed children go in.
        if (opaque || !sameAsLower(host, name, it.st, lowers)) yield entryFor(host, name, it.st, links);
        if (opaque) yield whiteoutEntry(join(name, '.wh..wh..opq'), it.st);
        yield* walk(name);
        continue;
      }
      yield entryFor(host, name, it.st, links);
    }
  }
  yield* walk('');
}

/**
 * Whether directory `rel` of an upper dir is an unmodified copy of the one the lowers (top first)
 * show. The first lower holding the path decides; a whiteout there means the directory is new.
 * A directory hidden by an opaque ancestor in a higher lower is not looked for: a directory made
 * anew in this layer carries this layer's mtime, which cannot equal an old hidden one's.
 */
function sameAsLower(host: string, rel: string, st: BigIntStats, lowers: readonly string[]): boolean {
  for (const lower of lowers) {
    const p = path.join(lower, rel);
    let lst: BigIntStats;
    try {
      lst = lstat(p);
    } catch {
      continue;
    }
    if (isWhiteout(lst) || !lst.isDirectory()) return false;
    return !changed(host, st, p, lst);
  }
  return false;
}

function sameXattrs(a: Array<[string, Buffer]>, b: Array<[string, Buffer]>): boolean {
  return a.length === b.length && a.every(([k, v], i) => k === b[i]![0] && v.equals(b[i]![1]));
}

function sameContent(a: string, b: string): boolean {
  const hash = (p: string) => {
    const h = createHash('sha256');
    const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    try {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (let pos = 0; ; ) {
        const n = fs.readSync(fd, buf, 0, buf.length, pos);
        if (n === 0) break;
        h.update(buf.subarray(0, n));
        pos += n;
      }
    } finally {
      fs.closeSync(fd);
    }
    return h.digest('hex');
  };
  return hash(a) === hash(b);
}

/** Whether `child` differs from `parent` in anything a layer records. */
function changed(childHost: string, c: BigIntStats, parentHost: string, p: BigIntStats): boolean {
  if ((c.mode & 0o170000n) !== (p.mode & 0o170000n)) return true;
  if (c.mode !== p.mode || c.uid !== p.uid || c.gid !== p.gid) return true;
  if (!c.isDirectory() && (c.size !== p.size || c.mtimeNs !== p.mtimeNs)) return true;
  if (c.isDirectory() && c.mtimeNs !== p.mtimeNs) return true;
  if ((c.isCharacterDevice() || c.isBlockDevice()) && c.rdev !== p.rdev) return true;
  if (c.isSymbolicLink() && fs.readlinkSync(childHost) !== fs.readlinkSync(parentHost)) return true;
  if (!sameXattrs(readXattrsSync(childHost), readXattrsSync(parentHost))) return true;
  // A zero sub-second part may mean a tool truncated the time (as containerd reasons): check content.
  if (c.isFile() && c.mtimeNs % 1_000_000_000n === 0n && c.ino !== p.ino) return !sameContent(childHost, parentHost);
  return false;
}

/**
 * The changes turning tree `parent` (or nothing) into tree `child`, by comparison. Unchanged parent
 * directories of a change are included, so the layer applies on any implementation.
 */
export function* treeChanges(child: string, parent: string | undefined): Generator<TarEntry> {
  const links = new LinkTracker();
  // Directories passed through without a change of their own, emitted once something inside changes.
  const pending: Array<{ host: string; name: string; st: BigIntStats }> = [];
  function* flush(): Generator<TarEntry> {
    for (const d of pending.splice(0)) yield entryFor(d.host, d.name, d.st, links);
  }
  function* added(host: string, name: string, st: BigIntStats): Generator<TarEntry> {
    yield* flush();
    yield entryFor(host, name, st, links);
    if (!st.isDirectory()) return;
    for (const n of sortedNames(host)) {
      const h = path.join(host, n);
      yield* added(h, join(name, n), lstat(h));
    }
  }
  function* compare(rel: string): Generator<TarEntry> {
    const cDir = rel ? path.join(child, rel) : child;
    const pDir = parent ? (rel ? path.join(parent, rel) : parent) : undefined;
    const cNames = sortedNames(cDir);
    const pNames = pDir ? sortedNames(pDir) : [];
    const cSet = new Set(cNames);
    const items = [
      ...cNames.map((n) => ({ key: n, name: n, gone: false })),
      ...pNames.filter((n) => !cSet.has(n)).map((n) => ({ key: `.wh.${n}`, name: n, gone: true })),
    ].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    for (const it of items) {
      const name = join(rel, it.key);
      if (it.gone) {
        yield* flush();
        yield whiteoutEntry(name, null);
        continue;
      }
      const cHost = path.join(cDir, it.name);
      const c = lstat(cHost);
      const pHost = pDir ? path.join(pDir, it.name) : undefined;
      const p = pHost ? lstatOrNull(pHost) : null;
      if (!p || c.isDirectory() !== p.isDirectory()) {
        yield* added(cHost, name, c);
        continue;
      }
      if (c.isDirectory()) {
        const depth = pending.length;
        if (changed(cHost, c, pHost!, p)) {
          yield* flush();
          yield entryFor(cHost, name, c, links);
        } else {
          pending.push({ host: cHost, name, st: c });
        }
        yield* compare(name);
        pending.length = Math.min(pending.length, depth); // nothing inside changed: drop it again
        continue;
      }
      if (changed(cHost, c, pHost!, p)) {
        yield* flush();
        yield entryFor(cHost, name, c, links);
      }
    }
  }
  yield* compare('');
}

/** Counts the entries as they pass. */
function counting(entries: Iterable<TarEntry>, seen: { entries: number }): Iterable<TarEntry> {
  return (function* () {
    for (const e of entries) {
      seen.entries++;
      yield e;
    }
  })();
}

/** The entries with every mtime after `epoch` set to it (the tar records no atime or ctime). */
function* clampMtimes(entries: Iterable<TarEntry>, epoch: number): Generator<TarEntry> {
  for (const e of entries) yield e.mtime > epoch ? { ...e, mtime: epoch } : e;
}

/**
 * Writes a layer blob for `entries` to `opts.dest`. gzip and uncompressed layers take one pass: the
 * tar is hashed (diffID) on its way into the compressor and the blob hashed on its way to disk, with
 * no temporary tar. (deflate's output does not depend on how its input is cut into pieces, so the
 * blob is byte-identical to a compression of the whole tar at once.) zstd, whose compressor is
 * WebAssembly that would run on this thread, tars to a temporary file first and compresses in the
 * worker pool. Without `opts.dest` an uncompressed layer is only hashed: the same tar, the same
 * digests, no bytes written (a blob the content store defers). An empty change set gives
 * `{ empty: true }` and leaves no file behind.
 */
export async function writeLayer(entries: Iterable<TarEntry>, opts: DiffOptions): Promise<DiffResult> {
  const compression = opts.compression ?? 'gzip';
  const dest = opts.dest;
  if (dest === undefined && compression !== 'none') throw new Error(`a ${compression} layer needs a file to be written to`);
  if (opts.clampMtime !== undefined) entries = clampMtimes(entries, opts.clampMtime);
  if (dest === undefined) return hashOnly(entries, opts);
  const tarPath = compression === 'zstd' ? `${dest}.tar-${process.pid}` : dest;
  try {
    const seen = { entries: 0 };
    const diffTap = new HashTap();
    const blobTap = new HashTap();
    const stages: Transform[] = compression === 'gzip' ? [...(await compressStages('gzip', opts.level)), blobTap] : [];
    await pipeline([tarReadable(counting(entries, seen)), diffTap, ...stages, fs.createWriteStream(tarPath)]);
    if (seen.entries === 0) {
      await fsp.rm(tarPath, { force: true });
      return { empty: true };
    }
    const diffID = diffTap.digest();
    const blob =
      compression === 'none'
        ? { digest: diffID, size: diffTap.bytes }
        : compression === 'gzip'
          ? { digest: blobTap.digest(), size: blobTap.bytes }
          : await compressBlob(tarPath, dest, compression, opts.level);
    return {
      empty: false,
      mediaType: layerMediaType(compression, opts.flavor ?? 'oci'),
      digest: blob.digest,
      size: blob.size,
      diffID,
      uncompressedSize: diffTap.bytes,
      path: dest,
    };
  } catch (err) {
    await fsp.rm(dest, { force: true });
    throw err;
  } finally {
    if (tarPath !== dest) await fsp.rm(tarPath, { force: true });
  }
}

/** An uncompressed layer's digests and size, the tar hashed and not written (see hashTar). */
async function hashOnly(entries: Iterable<TarEntry>, opts: DiffOptions): Promise<DiffResult> {
  const seen = { entries: 0 };
  const { digest, bytes } = await hashTar(counting(entries, seen));
  if (seen.entries === 0) return { empty: true };
  return { empty: false, mediaType: layerMediaType('none', opts.flavor ?? 'oci'), digest, size: bytes, diffID: digest, uncompressedSize: bytes };
}
