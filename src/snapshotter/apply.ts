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
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Stats } from 'node:fs';
import * as path from 'node:path';
import { Readable, pipeline as pipelineCb } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { resolveInRoot } from '../fsutil/rootpath.js';
import { compressionFromMediaType, decompressStages, detectCompression, HashTap } from './compression.js';
import { isOverlayPrivate, isWhiteout, mknod, OVERLAY_OPAQUE, setXattr } from './fsops.js';
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

async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

function paxNumber(pax: PaxHeaders | null | undefined, key: string): number | undefined {
  const v = pax?.[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

class LayerApplier {
  private readonly root: string;
  /** Paths ("a/b") this layer created: whiteouts and opaque markers never hide them. */
  private readonly created = new Set<string>();
  /** Directories known to be real directories in the target (cleared whenever something is removed). */
  private readonly verifiedDirs = new Set<string>(['']);
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

    const parentHost = await this.ensureDir(dir, name);
    const host = path.join(parentHost, base);
    const existing = await lstatOrNull(host);
    const mode = (h.mode ?? 0o644) & 0o7777;
    const type = h.type ?? 'file';

    if (type === 'directory') {
      if (existing && !existing.isDirectory()) await this.removePath(host);
      if (!existing?.isDirectory()) await fsp.mkdir(host, { mode: 0o700 });
      this.created.add(name);
      this.verifiedDirs.add(name);
      await this.setMeta(host, h, mode, false, name);
      const mtime = this.mtimeOf(h);
      this.dirTimes.set(host, { atime: paxNumber(h.pax, 'atime') ?? mtime, mtime });
      return;
    }

    if (type === 'link') {
      const targetHost = await this.hardlinkTarget(h.linkname ?? '', name);
      if (existing) {
        const tst = await fsp.lstat(targetHost);
        if (existing.ino === tst.ino && existing.dev === tst.dev) return;
        await this.removePath(host);
      }
      await fsp.link(targetHost, host);
      this.created.add(name);
      return;
    }

    if (existing) await this.removePath(host);
    switch (type) {
      case 'file':
      case 'contiguous-file': {
        // O_EXCL|O_NOFOLLOW: we just removed what was there; never write through a planted link.
        const fh = await fsp.open(host, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
        await pipeline(body, fh.createWriteStream());
        break;
      }
      case 'symlink':
        await fsp.symlink(h.linkname ?? '', host);
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
    await this.setMeta(host, h, mode, type === 'symlink', name);
    const mtime = this.mtimeOf(h);
    const atime = paxNumber(h.pax, 'atime') ?? mtime;
    await fsp.lutimes(host, atime, mtime);
  }

  /** Sets directory mtimes once every entry is in place. */
  async finish(): Promise<void> {
    for (const [host, t] of [...this.dirTimes].reverse()) await fsp.utimes(host, t.atime, t.mtime);
  }

  private mtimeOf(h: EntryHeader): number {
    return paxNumber(h.pax, 'mtime') ?? (h.mtime ? h.mtime.getTime() / 1000 : 0);
  }

  // chown first (it clears setuid/setgid and security.capability), then mode, then xattrs.
  private async setMeta(host: string, h: EntryHeader, mode: number, isSymlink: boolean, name: string): Promise<void> {
    const uid = paxNumber(h.pax, 'uid') ?? h.uid ?? 0;
    const gid = paxNumber(h.pax, 'gid') ?? h.gid ?? 0;
    await fsp.lchown(host, uid, gid);
    if (!isSymlink) await fsp.chmod(host, mode);
    for (const [key, value] of Object.entries(h.pax ?? {})) {
      if (!key.startsWith('SCHILY.xattr.')) continue;
      const xname = key.slice('SCHILY.xattr.'.length);
      if (isOverlayPrivate(xname)) continue; // a layer must not forge overlay redirects or opaqueness
      try {
        await setXattr(host, xname, Buffer.from(value, 'latin1'));
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
  private async ensureDir(dir: string, entry: string): Promise<string> {
    if (!this.verifiedDirs.has(dir)) {
      let cur = '';
      for (const comp of dir.split('/')) {
        cur = cur ? `${cur}/${comp}` : comp;
        if (this.verifiedDirs.has(cur)) continue;
        const host = path.join(this.root, cur);
        const st = await lstatOrNull(host);
        if (st?.isDirectory()) {
          this.verifiedDirs.add(cur);
          continue;
        }
        if (st?.isSymbolicLink()) await this.refuseSymlink(entry, cur, host);
        if (st && !isWhiteout(st)) throw new LayerEntryError(entry, `parent ${cur} is not a directory`);
        // Missing here (or whited out by this layer). In overlay mode the lower layers decide what
        // the merged tree has at this path.
        const lower = st ? null : await this.lowerLookup(cur, entry);
        if (st) await fsp.rm(host, { force: true });
        await fsp.mkdir(host, { mode: 0o700 });
        if (lower) {
          // Copy the lower directory's metadata, as overlayfs copy-up would, so the merged view of
          // this directory does not change just because a layer added something beneath it.
          await fsp.lchown(host, lower.uid, lower.gid);
          await fsp.chmod(host, lower.mode & 0o7777);
          this.dirTimes.set(host, { atime: lower.atimeMs / 1000, mtime: lower.mtimeMs / 1000 });
        } else {
          await fsp.chmod(host, 0o755);
          this.created.add(cur);
        }
        this.verifiedDirs.add(cur);
      }
    }
    const host = dir ? path.join(this.root, dir) : this.root;
    // Second line of defence: the house resolver must agree that nothing was followed.
    const resolved = await resolveInRoot(this.root, dir);
    if (resolved !== host) throw new LayerEntryError(entry, `parent ${dir} resolves to ${resolved}, outside the expected ${host}`);
    return host;
  }

  /** First layer below the target that has `rel`: a directory's stat, or null if none has it. */
  private async lowerLookup(rel: string, entry: string): Promise<Stats | null> {
    for (const lower of this.opts.lowers ?? []) {
      const st = await lstatOrNull(path.join(lower, rel));
      if (!st) continue;
      if (isWhiteout(st)) return null;
      if (st.isSymbolicLink()) await this.refuseSymlink(entry, rel, path.join(lower, rel));
      if (!st.isDirectory()) throw new LayerEntryError(entry, `parent ${rel} is not a directory in a lower layer`);
      return st;
    }
    return null;
  }

  private async refuseSymlink(entry: string, rel: string, host: string): Promise<never> {
    const to = await fsp.readlink(host).catch(() => '?');
    throw new LayerEntryError(entry, `parent ${rel} is a symlink (-> ${to}); entries beneath symlinks are refused`);
  }

  private async hardlinkTarget(linkname: string, entry: string): Promise<string> {
    let target: string;
    try {
      target = cleanEntryName(linkname);
    } catch {
      throw new LayerEntryError(entry, `hard link target ${JSON.stringify(linkname)} is outside the layer`);
    }
    if (target === '') throw new LayerEntryError(entry, 'hard link to the root refused');
    const dir = path.posix.dirname(target) === '.' ? '' : path.posix.dirname(target);
    const parent = await this.ensureDirExisting(dir, entry);
    const host = path.join(parent, path.posix.basename(target));
    const resolved = await resolveInRoot(this.root, target, { followFinal: false });
    if (resolved !== host) throw new LayerEntryError(entry, `hard link target ${target} resolves outside the layer`);
    const st = await lstatOrNull(host);
    if (!st) throw new LayerEntryError(entry, `hard link target ${target} is not in this layer`);
    if (st.isDirectory()) throw new LayerEntryError(entry, `hard link to directory ${target} refused`);
    return host;
  }

  /** Like ensureDir but never creates: a hard link's target must already be in the layer. */
  private async ensureDirExisting(dir: string, entry: string): Promise<string> {
    let cur = '';
    for (const comp of dir ? dir.split('/') : []) {
      cur = cur ? `${cur}/${comp}` : comp;
      const host = path.join(this.root, cur);
      const st = await lstatOrNull(host);
      if (st?.isSymbolicLink()) await this.refuseSymlink(entry, cur, host);
      if (!st?.isDirectory()) throw new LayerEntryError(entry, `hard link target directory ${cur} is not in this layer`);
    }
    return dir ? path.join(this.root, dir) : this.root;
  }

  private async whiteout(victim: string, entry: string): Promise<void> {
    // A whiteout hides lower layers only, never what this same layer put there.
    if (this.created.has(victim)) return;
    const dir = path.posix.dirname(victim) === '.' ? '' : path.posix.dirname(victim);
    const parentHost = await this.ensureDir(dir, entry);
    const host = path.join(parentHost, path.posix.basename(victim));
    const existing = await lstatOrNull(host);
    if (existing) await this.removePath(host);
    if (this.opts.whiteouts === 'overlay') await mknod(host, 'c', 0, 0);
  }

  private async opaque(dir: string, entry: string): Promise<void> {
    const host = await this.ensureDir(dir, entry);
    // Drop whatever the layer did not create itself (in overlay mode the upper normally has nothing).
    for (const child of await fsp.readdir(host)) {
      const rel = dir ? `${dir}/${child}` : child;
      if (!this.created.has(rel)) await this.removePath(path.join(host, child));
    }
    if (this.opts.whiteouts === 'overlay') {
      if (host === this.root) throw new LayerEntryError(entry, 'opaque marker on the layer root cannot be represented in overlayfs');
      await setXattr(host, OVERLAY_OPAQUE, Buffer.from('y'));
    }
  }

  private async removePath(host: string): Promise<void> {
    await fsp.rm(host, { recursive: true, force: true });
    this.verifiedDirs.clear();
    this.verifiedDirs.add('');
  }
}

/** Applies one layer blob to `opts.target`; resolves with its diffID once every entry is in place. */
export async function applyLayer(layer: Readable, opts: ApplyOptions): Promise<ApplyResult> {
  const { head, stream } = await sniff(layer);
  const compression = head.length > 0 ? detectCompression(head) : (compressionFromMediaType(opts.mediaType) ?? 'none');
  const tap = new HashTap();
  const extract = tar.extract();
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
    await applier.finish();
  } catch (err) {
    stream.destroy();
    fed.catch(() => {});
    if (err instanceof LayerEntryError) throw err;
    throw new Error(`applying layer to ${opts.target}: ${(err as Error).message}`, { cause: err });
  }
  return { diffID: tap.digest(), size: tap.bytes, entries: applier.entries };
}
