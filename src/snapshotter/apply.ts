// Applies an OCI/Docker layer (a tar, maybe gzip- or zstd-compressed) to a directory.
//
// Two targets exist:
//  - 'overlay': the directory is a fresh overlay upper dir of a snapshot whose parents are `lowers`.
//    Whiteouts become what overlayfs understands (a 0/0 character device; `trusted.overlay.opaque=y` on
//    a directory), so the applied directory can serve as an upper or lower as it is.
//  - 'delete': the directory holds a full tree (the copying snapshotter); whiteouts delete.
//
// Every entry is treated as hostile: names with "..", absolute names, entries beneath a symlink (in the
// target or, for overlay, in a lower layer) and hard links to anything outside are refused with an error
// naming the entry. Resolution goes through fsutil's resolveInRoot as a second line of defence.
import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { Readable, pipeline as pipelineCb } from 'node:stream';
import type tar from 'tar-stream';
import { tarStream } from '../util/lazy-modules.js';
import { resolveInRootSync } from '../fsutil/rootpath.js';
import { lstatOrUndefinedSync } from '../fsutil/stat.js';
import { compressionFromMediaType, decompressStages, detectCompression, HashTap } from './compression.js';
import { isOverlayPrivate, isWhiteout, mknod, OVERLAY_OPAQUE, setXattrSync } from './fsops.js';
import type { ApplyResult } from './types.js';

export interface ApplyOptions {
  /** Host directory the layer is written into. */
  target: string;
  whiteouts: 'overlay' | 'delete';
  /** Overlay mode: the parents' layer dirs, top-most first, consulted for the merged view. */
  lowers?: string[];
  /** Media type of the blob, a hint only: magic bytes decide. */
  mediaType?: string;
}

/** A refused or failed layer entry. */
export class LayerEntryError extends Error {
  constructor(
    readonly entry: string,
    reason: string,
  ) {
    super(`layer entry ${JSON.stringify(entry)}: ${reason}`);
    this.name = 'LayerEntryError';
  }
}

const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_MARKER = '.wh..wh..opq';

/** Normalises an archive path to "a/b/c" (root is ""), refusing absolute names and "..". */
export function cleanEntryName(raw: string): string {
  if (raw.includes('\0')) throw new LayerEntryError(raw, 'name contains a NUL byte');
  if (raw.startsWith('/')) throw new LayerEntryError(raw, 'absolute name refused');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new LayerEntryError(raw, '".." in name refused');
  return parts.join('/');
}

interface PaxHeaders {
  [key: string]: string;
}

interface EntryHeader {
  name: string;
  type: string | null | undefined;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  mtime?: Date;
  linkname?: string | null;
  devmajor?: number;
  devminor?: number;
  pax?: PaxHeaders | null;
}

/**
 * tar-stream decodes pax records as UTF-8, which mangles binary xattr values (security.capability).
 * Decode them ourselves: keys and path-like values as UTF-8, every other value as latin1, which keeps
 * each byte as one char so Buffer.from(v, 'latin1') restores the original bytes.
 */
function decodePaxBinarySafe(buf: Buffer): PaxHeaders {
  const out: PaxHeaders = {};
  let off = 0;
  while (off < buf.length) {
    const sp = buf.indexOf(0x20, off);
    if (sp === -1) break;
    const len = parseInt(buf.subarray(off, sp).toString('ascii'), 10);
    if (!len || off + len > buf.length) break;
    const rec = buf.subarray(sp + 1, off + len - 1); // without the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq !== -1) {
      const key = rec.subarray(0, eq).toString('utf8');
      const raw = rec.subarray(eq + 1);
      out[key] = key.startsWith('SCHILY.xattr.') ? raw.toString('latin1') : raw.toString('utf8');
    }
    off += len;
  }
  return out;
}

function patchExtract(extract: tar.Extract): void {
  // Relies on tar-stream 3.x internals (_decodeLongHeader, _header, _pax, _paxGlobal); the binary xattr
  // round-trip test fails loudly if an upgrade changes them.
  const ex = extract as unknown as {
    _header: { type: string };
    _pax: PaxHeaders | null;
    _paxGlobal: PaxHeaders | null;
    _decodeLongHeader(buf: Buffer): void;
  };
  const original = ex._decodeLongHeader.bind(ex);
  ex._decodeLongHeader = (buf: Buffer) => {
    if (ex._header.type === 'pax-header') {
      ex._pax = { ...(ex._paxGlobal ?? {}), ...decodePaxBinarySafe(buf) };
    } else if (ex._header.type === 'pax-global-header') {
      ex._paxGlobal = decodePaxBinarySafe(buf);
    } else {
      original(buf);
    }
  };
}

/** Reads enough of `src` to sniff the compression, then yields everything again. */
async function sniff(src: Readable): Promise<{ head: Buffer; stream: Readable }> {
  const it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let head = Buffer.alloc(0);
  let done = false;
  while (head.length < 4) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    head = Buffer.concat([head, Buffer.from(r.value)]);
  }
  const stream = Readable.from(
    (async function* () {
      if (head.length) yield head;
      if (done) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield Buffer.from(r.value);
      }
    })(),
  );
  return { head, stream };
}

function paxNumber(pax: PaxHeaders | null | undefined, key: string): number | undefined {
  const v = pax?.[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

function writeFully(fd: number, chunk: Buffer): void {
  for (let off = 0; off < chunk.length; ) off += fs.writeSync(fd, chunk, off, chunk.length - off);
}

// The applier works with synchronous calls between the entries tar-stream hands over: a base image
// of thousands of files costs a few syscalls per entry rather than a round trip through libuv's
// thread pool for each of them. Each entry is a short slice; the loop yields between entries as
// the decompressor and the tar parser feed it.
class LayerApplier {
  private readonly root: string;
  /** Paths ("a/b") this layer created: whiteouts and opaque markers never hide them. */
  private readonly created = new Set<string>();
  /** Directories known to be real directories in the target (cleared whenever something is removed). */
  private readonly verifiedDirs = new Set<string>(['']);
  /** Directories whose host path the house resolver confirmed (cleared with verifiedDirs). */
  private readonly resolvedDirs = new Set<string>(['']);
  /** Directory mtimes are set last: creating children would change them again. */
  private readonly dirTimes = new Map<string, { atime: number; mtime: number }>();
  entries = 0;

  constructor(private readonly opts: ApplyOptions) {
    this.root = path.resolve(opts.target);
  }

  async applyEntry(h: EntryHeader, body: AsyncIterable<Buffer>): Promise<void> {
    this.entries++;
    const name = cleanEntryName(h.name);
    if (name === '') return; // the root itself ("./"): its metadata belongs to the base, not a layer
    const dir = path.posix.dirname(name) === '.' ? '' : path.posix.dirname(name);
    const base = path.posix.basename(name);

    if (base === OPAQUE_MARKER) return this.opaque(dir, name);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..') throw new LayerEntryError(name, 'malformed whiteout');
      return this.whiteout(dir ? `${dir}/${victim}` : victim, name);
    }

    const parentHost = this.ensureDir(dir, name);
    const host = path.join(parentHost, base);
    const existing = lstatOrUndefinedSync(host);
    const mode = (h.mode ?? 0o644) & 0o7777;
    const type = h.type ?? 'file';

    if (type === 'directory') {
      if (existing && !existing.isDirectory()) this.removePath(host);
      if (!existing?.isDirectory()) fs.mkdirSync(host, { mode: 0o700 });
      this.created.add(name);
      this.verifiedDirs.add(name);
      this.setMeta(host, h, mode, false, name);
      const mtime = this.mtimeOf(h);
      this.dirTimes.set(host, { atime: paxNumber(h.pax, 'atime') ?? mtime, mtime });
      return;
    }

    if (type === 'link') {
      const targetHost = this.hardlinkTarget(h.linkname ?? '', name);
      if (existing) {
        const tst = fs.lstatSync(targetHost);
        if (existing.ino === tst.ino && existing.dev === tst.dev) return;
        this.removePath(host);
      }
      fs.linkSync(targetHost, host);
      this.created.add(name);
      return;
    }

    if (existing) this.removePath(host);
    switch (type) {
      case 'file':
      case 'contiguous-file': {
        // O_EXCL|O_NOFOLLOW: we just removed what was there; never write through a planted link.
        // Synchronous writes of the chunks as tar-stream hands them over: no round trip per call.
        const fd = fs.openSync(host, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
        try {
          for await (const chunk of body) writeFully(fd, chunk);
        } finally {
          fs.closeSync(fd);
        }
        break;
      }
      case 'symlink':
        fs.symlinkSync(h.linkname ?? '', host);
        break;
      case 'character-device':
        await mknod(host, 'c', h.devmajor ?? 0, h.devminor ?? 0);
        break;
      case 'block-device':
        await mknod(host, 'b', h.devmajor ?? 0, h.devminor ?? 0);
        break;
      case 'fifo':
        await mknod(host, 'p');
        break;
      default:
        throw new LayerEntryError(name, `unsupported entry type ${type}`);
    }
    this.created.add(name);
    this.setMeta(host, h, mode, type === 'symlink', name);
    const mtime = this.mtimeOf(h);
    const atime = paxNumber(h.pax, 'atime') ?? mtime;
    fs.lutimesSync(host, atime, mtime);
  }

  /** Sets directory mtimes once every entry is in place. */
  finish(): void {
    for (const [host, t] of [...this.dirTimes].reverse()) fs.utimesSync(host, t.atime, t.mtime);
  }

  private mtimeOf(h: EntryHeader): number {
    return paxNumber(h.pax, 'mtime') ?? (h.mtime ? h.mtime.getTime() / 1000 : 0);
  }

  // chown first (it clears setuid/setgid and security.capability), then mode, then xattrs.
  private setMeta(host: string, h: EntryHeader, mode: number, isSymlink: boolean, name: string): void {
    const uid = paxNumber(h.pax, 'uid') ?? h.uid ?? 0;
    const gid = paxNumber(h.pax, 'gid') ?? h.gid ?? 0;
    fs.lchownSync(host, uid, gid);
    if (!isSymlink) fs.chmodSync(host, mode);
    for (const [key, value] of Object.entries(h.pax ?? {})) {
      if (!key.startsWith('SCHILY.xattr.')) continue;
      const xname = key.slice('SCHILY.xattr.'.length);
      if (isOverlayPrivate(xname)) continue; // a layer must not forge overlay redirects or opaqueness
      try {
        setXattrSync(host, xname, Buffer.from(value, 'latin1'));
      } catch (err) {
        throw new LayerEntryError(name, `setting xattr ${xname}: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Makes sure directory `dir` (archive path) exists as a real directory in the target, creating missing
   * components. Refuses if any component is a symlink or a non-directory, in the target or (overlay) in
   * the lower layers' merged view. Returns its host path.
   */
  private ensureDir(dir: string, entry: string): string {
    if (!this.verifiedDirs.has(dir)) {
      let cur = '';
      for (const comp of dir.split('/')) {
        cur = cur ? `${cur}/${comp}` : comp;
        if (this.verifiedDirs.has(cur)) continue;
        const host = path.join(this.root, cur);
        const st = lstatOrUndefinedSync(host);
        if (st?.isDirectory()) {
          this.verifiedDirs.add(cur);
          continue;
        }
        if (st?.isSymbolicLink()) this.refuseSymlink(entry, cur, host);
        if (st && !isWhiteout(st)) throw new LayerEntryError(entry, `parent ${cur} is not a directory`);
        // Missing here (or whited out by this layer). In overlay mode the lower layers decide what
        // the merged tree has at this path.
        const lower = st ? null : this.lowerLookup(cur, entry);
        if (st) fs.rmSync(host, { force: true });
        fs.mkdirSync(host, { mode: 0o700 });
        if (lower) {
          // Copy the lower directory's metadata, as overlayfs copy-up would, so the merged view of
          // this directory does not change just because a layer added something beneath it.
          fs.lchownSync(host, lower.uid, lower.gid);
          fs.chmodSync(host, lower.mode & 0o7777);
          this.dirTimes.set(host, { atime: lower.atimeMs / 1000, mtime: lower.mtimeMs / 1000 });
        } else {
          fs.chmodSync(host, 0o755);
          this.created.add(cur);
        }
        this.verifiedDirs.add(cur);
      }
    }
    const host = dir ? path.join(this.root, dir) : this.root;
    // Second line of defence: the house resolver must agree that nothing was followed. Once per
    // directory until something is removed (as verifiedDirs): only this applier changes the tree.
    if (!this.resolvedDirs.has(dir)) {
      const resolved = resolveInRootSync(this.root, dir);
      if (resolved !== host) throw new LayerEntryError(entry, `parent ${dir} resolves to ${resolved}, outside the expected ${host}`);
      this.resolvedDirs.add(dir);
    }
    return host;
  }

  /** First layer below the target that has `rel`: a directory's stat, or null if none has it. */
  private lowerLookup(rel: string, entry: string): Stats | null {
    for (const lower of this.opts.lowers ?? []) {
      const st = lstatOrUndefinedSync(path.join(lower, rel));
      if (!st) continue;
      if (isWhiteout(st)) return null;
      if (st.isSymbolicLink()) this.refuseSymlink(entry, rel, path.join(lower, rel));
      if (!st.isDirectory()) throw new LayerEntryError(entry, `parent ${rel} is not a directory in a lower layer`);
      return st;
    }
    return null;
  }

  private refuseSymlink(entry: string, rel: string, host: string): never {
    let to = '?';
    try {
      to = fs.readlinkSync(host);
    } catch {}
    throw new LayerEntryError(entry, `parent ${rel} is a symlink (-> ${to}); entries beneath symlinks are refused`);
  }

  private hardlinkTarget(linkname: string, entry: string): string {
    let target: string;
    try {
      target = cleanEntryName(linkname);
    } catch {
      throw new LayerEntryError(entry, `hard link target ${JSON.stringify(linkname)} is outside the layer`);
    }
    if (target === '') throw new LayerEntryError(entry, 'hard link to the root refused');
    const dir = path.posix.dirname(target) === '.' ? '' : path.posix.dirname(target);
    const parent = this.ensureDirExisting(dir, entry);
    const host = path.join(parent, path.posix.basename(target));
    const resolved = resolveInRootSync(this.root, target, { followFinal: false });
    if (resolved !== host) throw new LayerEntryError(entry, `hard link target ${target} resolves outside the layer`);
    const st = lstatOrUndefinedSync(host);
    if (!st) throw new LayerEntryError(entry, `hard link target ${target} is not in this layer`);
    if (st.isDirectory()) throw new LayerEntryError(entry, `hard link to directory ${target} refused`);
    return host;
  }

  /** Like ensureDir but never creates: a hard link's target must already be in the layer. */
  private ensureDirExisting(dir: string, entry: string): string {
    let cur = '';
    for (const comp of dir ? dir.split('/') : []) {
      cur = cur ? `${cur}/${comp}` : comp;
      const host = path.join(this.root, cur);
      const st = lstatOrUndefinedSync(host);
      if (st?.isSymbolicLink()) this.refuseSymlink(entry, cur, host);
      if (!st?.isDirectory()) throw new LayerEntryError(entry, `hard link target directory ${cur} is not in this layer`);
    }
    return dir ? path.join(this.root, dir) : this.root;
  }

  private async whiteout(victim: string, entry: string): Promise<void> {
    // A whiteout hides lower layers only, never what this same layer put there.
    if (this.created.has(victim)) return;
    const dir = path.posix.dirname(victim) === '.' ? '' : path.posix.dirname(victim);
    const parentHost = this.ensureDir(dir, entry);
    const host = path.join(parentHost, path.posix.basename(victim));
    const existing = lstatOrUndefinedSync(host);
    if (existing) this.removePath(host);
    if (this.opts.whiteouts === 'overlay') await mknod(host, 'c', 0, 0);
  }

  private async opaque(dir: string, entry: string): Promise<void> {
    const host = this.ensureDir(dir, entry);
    // Drop whatever the layer did not create itself (in overlay mode the upper normally has nothing).
    for (const child of fs.readdirSync(host)) {
      const rel = dir ? `${dir}/${child}` : child;
      if (!this.created.has(rel)) this.removePath(path.join(host, child));
    }
    if (this.opts.whiteouts === 'overlay') {
      if (host === this.root) throw new LayerEntryError(entry, 'opaque marker on the layer root cannot be represented in overlayfs');
      setXattrSync(host, OVERLAY_OPAQUE, Buffer.from('y'));
    }
  }

  private removePath(host: string): void {
    fs.rmSync(host, { recursive: true, force: true });
    this.verifiedDirs.clear();
    this.verifiedDirs.add('');
    this.resolvedDirs.clear();
    this.resolvedDirs.add('');
  }
}

/** Applies one layer blob to `opts.target`; resolves with its diffID once every entry is in place. */
export async function applyLayer(layer: Readable, opts: ApplyOptions): Promise<ApplyResult> {
  const { head, stream } = await sniff(layer);
  const compression = head.length > 0 ? detectCompression(head) : (compressionFromMediaType(opts.mediaType) ?? 'none');
  const tap = new HashTap();
  const extract = tarStream().extract();
  patchExtract(extract);

  const stages = [stream, ...(await decompressStages(compression)), tap];
  const fed = new Promise<void>((resolve, reject) => {
    pipelineCb(stages as unknown as [Readable, ...NodeJS.ReadWriteStream[]], (err) => {
      if (err) {
        extract.destroy(err);
        reject(err);
      } else resolve();
    });
  });
  tap.pipe(extract as unknown as NodeJS.WritableStream);

  const applier = new LayerApplier(opts);
  try {
    for await (const entry of extract) {
      try {
        await applier.applyEntry(entry.header as EntryHeader, entry as unknown as AsyncIterable<Buffer>);
      } finally {
        entry.resume();
      }
    }
    await fed;
    applier.finish();
  } catch (err) {
    stream.destroy();
    fed.catch(() => {});
    if (err instanceof LayerEntryError) throw err;
    throw new Error(`applying layer to ${opts.target}: ${(err as Error).message}`, { cause: err });
  }
  return { diffID: tap.digest(), size: tap.bytes, entries: applier.entries };
}
