// ADD's archive handling: a local file is extracted when its *content* is a tar archive, plain or
// compressed (gzip, bzip2, xz, zstd: detected by magic bytes, never by name), as BuildKit does.
//
// Extraction writes into a rootfs and every entry name is hostile. BuildKit unpacks with
// chrootarchive.Untar: the extraction directory is the root of a chroot, so nothing can leave it,
// and nothing is refused for trying. kiln does the same without a chroot:
//  - names are cleaned as rooted paths: "../../x" is "/x", the extraction directory's own x;
//  - a hard link's target is cleaned the same way;
//  - parent directories are resolved with the extraction directory as the root (resolveInRoot), so
//    a symlink in the archive or already there (`x -> /`, `up -> ../../..`) leads at most elsewhere
//    inside the extraction directory; symlinks themselves are written as they are (in the chroot
//    Docker's breakout check on their targets cannot fail).
// Decompression of bzip2/xz/zstd uses the system tools (bzip2, xz-utils, zstd packages).

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import type * as tar from 'tar-stream';
import { tarStream } from '../util/lazy-modules.js';
import { headerChecksums } from '../util/tar-writer.js';
import { cleanPath } from '../context/gopath.js';
import { isInside, mkdirAllInRoot, resolveInRootSync } from '../fsutil/rootpath.js';
import { applyMetaSync, clearForFileSync, makeNode } from './meta.js';
import { lstatOrUndefinedSync } from '../fsutil/stat.js';
import type { Owner } from './owner.js';

export type Compression = 'gzip' | 'bzip2' | 'xz' | 'zstd' | 'none';

export class ArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveError';
  }
}

/** The compression of a file by its first bytes. */
export async function detectCompression(file: string): Promise<Compression> {
  const fh = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const buf = Buffer.alloc(6);
    const { bytesRead } = await fh.read(buf, 0, 6, 0);
    const b = buf.subarray(0, bytesRead);
    if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
    if (b.length >= 3 && b.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
    if (b.length >= 6 && b.equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
    if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'none';
  } finally {
    await fh.close();
  }
}

const TOOLS: Record<'bzip2' | 'xz' | 'zstd', string> = { bzip2: 'bzip2', xz: 'xz', zstd: 'zstd' };

/** A stream of the decompressed content of `file`. Errors (bad data, missing tool) surface on it. */
export function openDecompressed(file: string, compression: Compression): Readable {
  // O_NOFOLLOW: the archive path was resolved already; a link swapped in at the end is not followed.
  const input = fs.createReadStream('', { fd: fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW) });
  if (compression === 'none') return input;
  if (compression === 'gzip') {
    const gunzip = zlib.createGunzip();
    input.on('error', (e) => gunzip.destroy(e));
    return input.pipe(gunzip);
  }
  const tool = TOOLS[compression];
  const out = new PassThrough();
  const child = spawn(tool, ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.on('error', (e) => out.destroy(new ArchiveError(`cannot run ${tool} to decompress ${file}: ${e.message}`)));
  child.stdin.on('error', () => {}); // EPIPE when the reader stops early
  input.on('error', (e) => out.destroy(e));
  input.pipe(child.stdin);
  child.stdout.pipe(out, { end: false });
  child.on('close', (code, signal) => {
    if (code === 0 || out.destroyed) out.end();
    else if (signal === null) out.destroy(new ArchiveError(`${tool} failed on ${file}: ${stderr.trim() || `exit ${code}`}`));
    else out.end();
  });
  out.on('close', () => {
    input.destroy();
    if (child.exitCode === null) child.kill();
  });
  return out;
}

/** A valid (checksummed, non-empty) tar header block, as Go's tar.Reader.Next() would accept first. */
function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  if (block.every((b) => b === 0)) return false;
  const field = block
    .subarray(148, 156)
    .toString('latin1')
    .replace(/[\0 ]+$/g, '')
    .trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const want = parseInt(field, 8);
  const { unsigned, signed } = headerChecksums(block);
  return want === unsigned || want === signed;
}

/** Reads up to n bytes of a stream, then stops it. */
async function head(stream: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let len = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      len += (chunk as Buffer).length;
      if (len >= n) break;
    }
  } catch {
    // corrupt compressed data: not an archive we can extract, so it is copied as a file
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

/** The compression when `file` is a tar archive, undefined when it is any other file. */
export async function detectArchive(file: string): Promise<Compression | undefined> {
  const compression = await detectCompression(file);
  const block = await head(openDecompressed(file, compression), 512);
  return isTarHeader(block) ? compression : undefined;
}

export interface ExtractOptions {
  /** Overrides the owners recorded in the archive (ADD --chown). */
  chown?: Owner;
}

export interface ExtractResult {
  entries: number;
  files: number;
  directories: number;
  symlinks: number;
  hardlinks: number;
  bytes: number;
}

/**
 * Extracts the tar archive `file` into `destDir` (rootfs-absolute) of the rootfs at `destRoot`.
 * Names are relative to destDir whatever their leading "/" or "../": destDir is their root.
 */
export async function extractTar(file: string, compression: Compression, destRoot: string, destDir: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const root = path.resolve(destRoot);
  const base = cleanPath('/' + destDir);
  // BuildKit's unpack: copy.MkdirAll(dest, 0755, chowner): what it creates belongs to the --chown
  // user (root without one); an existing destination keeps its own owner and mode.
  // The host directory that stands for BuildKit's chroot: everything below is resolved inside it.
  const chroot = await mkdirAllInRoot(root, base, 0o755, opts.chown ?? { uid: 0, gid: 0 });
  const result: ExtractResult = { entries: 0, files: 0, directories: 0, symlinks: 0, hardlinks: 0, bytes: 0 };
  // Directory times are set at the end: creating children would bump them again.
  const dirTimes: { host: string; mtime: Date }[] = [];

  // Each entry's file-system work is a few synchronous calls on this thread (a round trip through
  // libuv's thread pool per call cost more than the call). The event loop runs whenever the next
  // piece of the archive is read (a piece holds at most some tens of entries), so other builds
  // keep running.
  const handle = async (header: tar.Header, body: tar.Extract extends AsyncIterable<infer S> ? S : never): Promise<void> => {
    const name = header.name;
    // Rooted at the extraction directory, as in the chroot: leading "../" stay at its top.
    const inChroot = cleanPath('/' + name);
    const rel = inChroot === '/' ? '.' : inChroot.slice(1);
    const type = header.type ?? 'file';
    if (rel === '.') {
      body.resume();
      return;
    }
    const rootfsPath = path.posix.join(base, rel); // for messages
    const parentInChroot = path.posix.dirname(inChroot);
    let parentHost = resolveInRootSync(chroot, parentInChroot);
    const parentSt = lstatOrUndefinedSync(parentHost);
    // Implied parents (no entry of their own) are 0:0 0755 even under --chown (go-archive's
    // createImpliedDirectories uses the root pair).
    if (parentSt === undefined) parentHost = await mkdirAllInRoot(chroot, parentInChroot, 0o755, { uid: 0, gid: 0 });
    else if (!parentSt.isDirectory()) throw new ArchiveError(`cannot extract ${name}: ${path.posix.dirname(rootfsPath)} is not a directory`);
    const target = path.join(parentHost, path.posix.basename(inChroot));
    if (!isInside(chroot, target)) throw new ArchiveError(`invalid archive entry ${JSON.stringify(name)}: outside the destination ${base}`);

    const existing = lstatOrUndefinedSync(target);
    if (existing !== undefined && !(existing.isDirectory() && type === 'directory')) {
      fs.rmSync(target, { recursive: true, force: true });
    }
    const owner = opts.chown ?? { uid: header.uid ?? 0, gid: header.gid ?? 0 };
    const mode = (header.mode ?? 0o644) & 0o7777;
    const mtime = header.mtime ?? new Date(0);

    switch (type) {
      case 'directory':
        if (existing === undefined || !existing.isDirectory()) {
          fs.mkdirSync(target, { mode: 0o700 });
          result.directories++;
        }
        body.resume();
        applyMetaSync(target, false, { ...owner, mode, atime: mtime, mtime });
        dirTimes.push({ host: target, mtime });
        break;
      case 'file':
      case 'contiguous-file': {
        clearForFileSync(target, rootfsPath);
        let bytes = 0;
        const fd = fs.openSync(target, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
        try {
          for await (const data of body) {
            const chunk = data as Buffer;
            for (let off = 0; off < chunk.length; ) off += fs.writeSync(fd, chunk, off, chunk.length - off);
            bytes += chunk.length;
          }
        } finally {
          fs.closeSync(fd);
        }
        result.files++;
        result.bytes += bytes;
        applyMetaSync(target, false, { ...owner, mode, atime: mtime, mtime });
        break;
      }
      case 'symlink': {
        const linkname = header.linkname ?? '';
        body.resume();
        fs.symlinkSync(linkname, target);
        result.symlinks++;
        applyMetaSync(target, true, { ...owner, mode, atime: mtime, mtime });
        break;
      }
      case 'link': {
        const linkname = header.linkname ?? '';
        // In the chroot, as every name: "../x" is the extraction directory's x.
        const linkInChroot = cleanPath('/' + linkname);
        body.resume();
        const linkHost = resolveInRootSync(chroot, linkInChroot, { followFinal: false });
        const linkSt = lstatOrUndefinedSync(linkHost);
        if (linkSt === undefined || linkSt.isDirectory())
          throw new ArchiveError(`invalid hard link ${JSON.stringify(name)} -> ${JSON.stringify(linkname)}: no such file in the archive`);
        fs.linkSync(linkHost, target);
        // go-archive's createTarFile treats a hard link's header like any entry's: its owner (or
        // the --chown one), and its mode and times unless the link names a symlink, land on the
        // shared inode.
        if (linkSt.isSymbolicLink()) fs.lchownSync(target, owner.uid, owner.gid);
        else applyMetaSync(target, false, { ...owner, mode, atime: mtime, mtime });
        result.hardlinks++;
        break;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo':
        body.resume();
        await makeNode(target, type === 'fifo' ? 'fifo' : type === 'character-device' ? 'char' : 'block', header.devmajor ?? 0, header.devminor ?? 0);
        applyMetaSync(target, false, { ...owner, mode, atime: mtime, mtime });
        break;
      default:
        // pax/GNU meta entries are consumed by tar-stream; anything else unknown is skipped.
        body.resume();
        return;
    }
    result.entries++;
  };

  const extract = tarStream().extract();
  extract.on('entry', (header, body, next) => {
    handle(header, body).then(
      () => next(),
      (err) => {
        body.resume();
        extract.destroy(err);
      },
    );
  });
  try {
    await pipeline(openDecompressed(file, compression), extract);
  } catch (err) {
    if (err instanceof ArchiveError) throw err;
    throw new ArchiveError(`cannot extract ${path.basename(file)}: ${(err as Error).message}`);
  }
  for (const [i, d] of dirTimes.reverse().entries()) {
    fs.lutimesSync(d.host, d.mtime, d.mtime);
    if (i % 1000 === 999) await new Promise<void>((resolve) => setImmediate(resolve)); // let others run
  }
  return result;
}
