// A build context that arrives as a tar (`kiln build -`, or the daemon's tar door), extracted into an
// empty directory. Every entry is treated as hostile:
//
//  - absolute names, names with "..", char/block devices and fifos are refused, naming the entry;
//  - nothing is written through a symlink: every parent component is checked with lstat (a link is
//    refused, whether an earlier entry made it or not), and files are opened with O_NOFOLLOW|O_EXCL,
//    so the kernel never follows a link on our behalf;
//  - a hard link must point at an earlier entry of the same archive;
//  - owners are ignored (the context has none, as in BuildKit); modes and mtimes are kept, and
//    directories get theirs after their contents are written;
//  - a stream that ends early, or is not a tar at all, is an error, never a silently short context.
//
// The helpers that make a write inside a tree safe (safeTreePathSync, writeNewFile) are shared with the
// daemon's kept contexts (server/contexts.ts), so there is one rule for both doors.
//
// Like fsutil's rootpath, the parent checks are check-then-use: safe because nothing else writes in
// the destination while we do (the caller owns it).

import * as fs from 'node:fs';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type tar from 'tar-stream';
import { tarStream } from '../util/lazy-modules.js';
import { lstatOrUndefined, lstatOrUndefinedSync } from '../fsutil/stat.js';
import { ContextError } from './walk.js';

export interface TarContextLimits {
  /** Total bytes of file contents. */
  maxBytes?: number;
  /** Number of tar entries (directories and links count). */
  maxEntries?: number;
}

const OPEN_NEW = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
const OPEN_DIR = fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW;

function refuse(name: string, reason: string): ContextError {
  return new ContextError(`build context: tar entry ${JSON.stringify(name)}: ${reason}`, name);
}

/** "./a//b/" -> "a/b" ("" for the root); refuses absolute names, "..", and NUL bytes. */
export function cleanEntryPath(name: string): string {
  if (name.includes('\0')) throw refuse(name, 'the name contains a NUL byte');
  if (name.startsWith('/')) throw refuse(name, 'absolute names are refused');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw refuse(name, '".." in a name is refused');
  return parts.join('/');
}

/**
 * The host path of `rel` (clean, slash-separated) under `root`, after checking with lstat that every
 * parent component is a real directory, not a symlink (a link is refused even when it points inside
 * the tree: the protocol never needs to write through one). `known` caches directories checked in
 * one pass (sound only while that pass never turns a directory into something else). With
 * `mkdirMode`, missing parents are created (a tar may omit directory entries); without, a missing
 * parent is an error.
 */
export function safeTreePathSync(root: string, rel: string, opts: { known?: Set<string>; mkdirMode?: number } = {}): string {
  const parts = rel.split('/');
  let cur = '';
  for (let i = 0; i < parts.length - 1; i++) {
    cur = cur === '' ? parts[i]! : `${cur}/${parts[i]}`;
    if (opts.known?.has(cur)) continue;
    const host = path.join(root, cur);
    const st = lstatOrUndefinedSync(host);
    if (st === undefined) {
      if (opts.mkdirMode === undefined) throw new ContextError(`build context: ${rel}: its parent directory ${cur} does not exist`, rel);
      fs.mkdirSync(host, { mode: opts.mkdirMode }); // mkdir never follows: an existing link gives EEXIST
    } else if (st.isSymbolicLink()) {
      throw new ContextError(`build context: ${rel}: refusing to write through the symlink ${cur}`, rel);
    } else if (!st.isDirectory()) {
      throw new ContextError(`build context: ${rel}: its parent ${cur} is not a directory`, rel);
    }
    opts.known?.add(cur);
  }
  return path.join(root, rel);
}

/**
 * Streams `body` into a new file at `host` (which must not exist; O_NOFOLLOW|O_EXCL so a planted link
 * cannot redirect the write), then sets mode and mtime. Mode is set after the data because a write
 * clears setuid/setgid bits. Returns the bytes written; `maxBytes` stops an overlong body early.
 */
export async function writeNewFile(
  host: string,
  body: AsyncIterable<unknown> | Iterable<unknown>, // Buffers: a Node or a streamx stream, or a list
  meta: { mode: number; mtimeMs: number; maxBytes?: number; name?: string },
): Promise<number> {
  const fh = await fsp.open(host, OPEN_NEW, 0o600);
  let bytes = 0;
  try {
    for await (const data of body) {
      const chunk = data as Uint8Array;
      bytes += chunk.byteLength;
      if (meta.maxBytes !== undefined && bytes > meta.maxBytes) {
        throw new ContextError(`build context: ${meta.name ?? host} is longer than announced`, meta.name ?? host);
      }
      for (let off = 0; off < chunk.byteLength; ) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
    }
    await fh.chmod(meta.mode & 0o7777);
    await fh.utimes(meta.mtimeMs / 1000, meta.mtimeMs / 1000);
  } finally {
    await fh.close();
  }
  return bytes;
}

/** Sets a directory's mode and mtime through a descriptor opened without following a link. */
export function setDirMetaSync(host: string, mode: number, mtimeMs: number): void {
  const fd = fs.openSync(host, OPEN_DIR);
  try {
    fs.fchmodSync(fd, mode & 0o7777);
    fs.futimesSync(fd, mtimeMs / 1000, mtimeMs / 1000);
  } finally {
    fs.closeSync(fd);
  }
}

/** Yields `input`, gunzipped when it starts with gzip's magic (1f 8b). */
async function maybeGunzip(input: NodeJS.ReadableStream): Promise<Readable[]> {
  const it = input[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let ended = false;
  while (head.length < 2) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    head = Buffer.concat([head, typeof r.value === 'string' ? Buffer.from(r.value) : r.value]);
  }
  async function* rest(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      while (!ended) {
        const r = await it.next();
        if (r.done) return;
        yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      }
    } finally {
      await it.return?.(); // stop (and destroy) the input when extraction gives up early
    }
  }
  const raw = Readable.from(rest(), { objectMode: false });
  return head[0] === 0x1f && head[1] === 0x8b ? [raw, createGunzip()] : [raw];
}

/** An entry's data as tar-stream hands it out (a streamx Readable). */
type EntryBody = AsyncIterable<unknown> & { resume(): unknown; on(ev: 'error', fn: () => void): unknown };

interface DirMeta {
  host: string;
  depth: number;
  mode: number;
  mtimeMs: number;
}

/**
 * Extracts a tar (maybe gzip-compressed) into the empty directory `dest`. On failure `dest` may hold
 * part of the context (never anything outside it); the caller removes it.
 */
export async function extractContextTar(input: NodeJS.ReadableStream, dest: string, limits: TarContextLimits = {}): Promise<{ files: number; bytes: number }> {
  // Until the pipeline below listens, an error on the input (a reset connection) would be an
  // unheard 'error' event, which crashes the process; pipeline still sees it through the stream.
  input.on('error', () => {});
  try {
    return await extractInto(input, dest, limits);
  } catch (err) {
    // Whatever failed, the input is not read further: end it, so a writer piping into it stops.
    (input as { destroy?: (e?: Error) => void }).destroy?.(err as Error);
    throw err;
  }
}

async function extractInto(input: NodeJS.ReadableStream, dest: string, limits: TarContextLimits): Promise<{ files: number; bytes: number }> {
  const root = path.resolve(dest);
  const st = await fsp.stat(root).catch((err: Error) => {
    throw new ContextError(`build context destination ${root}: ${err.message}`, root, { cause: err });
  });
  if (!st.isDirectory()) throw new ContextError(`build context destination ${root} is not a directory`, root);
  if ((await fsp.readdir(root)).length > 0) throw new ContextError(`build context destination ${root} is not empty`, root);

  const known = new Set<string>();
  const extracted = new Set<string>(); // non-directories written so far: the only hard link targets
  const dirs = new Map<string, DirMeta>();
  let files = 0;
  let bytes = 0;
  let entries = 0;
  let endOfLastEntry = 0; // offset in the tar just after the last entry's (padded) data
  let tarBytes = 0;

  // An existing non-directory is replaced (the later entry wins, as with tar); a directory is not.
  const makeRoom = async (host: string, name: string) => {
    const old = await lstatOrUndefined(host);
    if (old === undefined) return;
    if (old.isDirectory()) throw refuse(name, 'a directory of that name was already extracted');
    await fsp.unlink(host);
  };

  const handle = async (header: tar.Header, body: EntryBody): Promise<void> => {
    const size = header.size ?? 0;
    const offset = (header as { byteOffset?: number }).byteOffset;
    if (offset !== undefined) endOfLastEntry = offset + size + ((512 - (size % 512)) % 512);
    if (limits.maxEntries !== undefined && ++entries > limits.maxEntries) {
      throw new ContextError(`build context exceeds the maximum of ${limits.maxEntries} entries`, header.name);
    }
    const name = header.name;
    const rel = cleanEntryPath(name);
    const mode = (header.mode ?? 0o644) & 0o7777;
    const mtimeMs = header.mtime?.getTime() ?? 0;
    const type = header.type ?? 'file';
    if (rel === '') {
      if (type !== 'directory') throw refuse(name, 'only a directory can name the context root');
      body.resume();
      return;
    }
    switch (type) {
      case 'file':
      case 'contiguous-file': {
        if (limits.maxBytes !== undefined && bytes + size > limits.maxBytes) {
          throw new ContextError(`build context exceeds the maximum size of ${limits.maxBytes} bytes`, name);
        }
        const host = safeTreePathSync(root, rel, { known, mkdirMode: 0o755 });
        await makeRoom(host, name);
        bytes += await writeNewFile(host, body, { mode, mtimeMs, maxBytes: size, name });
        files++;
        extracted.add(rel);
        return;
      }
      case 'directory': {
        body.resume();
        const host = safeTreePathSync(root, rel, { known, mkdirMode: 0o755 });
        const old = await lstatOrUndefined(host);
        if (old !== undefined && !old.isDirectory()) {
          await fsp.unlink(host);
          extracted.delete(rel);
        }
        // Owner-writable until the end, so its contents can be written whatever its final mode.
        if (old === undefined || !old.isDirectory()) await fsp.mkdir(host, { mode: 0o700 });
        known.add(rel);
        dirs.set(rel, { host, depth: rel.split('/').length, mode, mtimeMs });
        return;
      }
      case 'symlink': {
        body.resume();
        const target = header.linkname ?? '';
        if (target === '' || target.includes('\0')) throw refuse(name, 'a symlink needs a target without NUL bytes');
        const host = safeTreePathSync(root, rel, { known, mkdirMode: 0o755 });
        await makeRoom(host, name);
        await fsp.symlink(target, host); // stored as text, never followed
        await fsp.lutimes(host, mtimeMs / 1000, mtimeMs / 1000);
        extracted.add(rel);
        return;
      }
      case 'link': {
        body.resume();
        const linkname = header.linkname ?? '';
        let targetRel: string;
        try {
          targetRel = cleanEntryPath(linkname);
        } catch {
          throw refuse(name, `hard link to ${JSON.stringify(linkname)} points outside the context`);
        }
        if (!extracted.has(targetRel) || targetRel === rel) {
          throw refuse(name, `hard link to ${JSON.stringify(linkname)}, which is not an earlier entry of the archive`);
        }
        const targetHost = safeTreePathSync(root, targetRel, { known });
        const target = await lstatOrUndefined(targetHost);
        if (target === undefined || target.isDirectory()) throw refuse(name, `hard link target ${JSON.stringify(linkname)} is missing`);
        const host = safeTreePathSync(root, rel, { known, mkdirMode: 0o755 });
        await makeRoom(host, name);
        await fsp.link(targetHost, host); // link(2) does not follow a final symlink
        return;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo':
        throw refuse(name, `a ${type} cannot be part of a build context`);
      default:
        throw refuse(name, `unsupported entry type ${type}`);
    }
  };

  const extract = tarStream().extract();
  // The entry being written: it must settle before we return, or a failed extraction would still be
  // writing into dest while the caller removes it. `failure` is the first handler error.
  let current: Promise<void> = Promise.resolve();
  let failure: unknown;
  extract.on('entry', (header, body, next) => {
    body.on('error', () => {}); // the extract reports the error; an unheard 'error' would crash the process
    current = handle(header, body).then(
      () => next(),
      (err: unknown) => {
        failure ??= err;
        body.resume();
        extract.destroy(err as Error);
      },
    );
  });
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      tarBytes += chunk.length;
      cb(null, chunk);
    },
  });

  try {
    const stages = await maybeGunzip(input);
    await pipeline([...stages, counter, extract]);
    // tar-stream may finish before the last entry's handler has (it does not wait for next()).
    await current;
    if (failure !== undefined) throw failure;
  } catch (err) {
    await current;
    if (err instanceof ContextError) throw err;
    throw new ContextError(`build context tar is unreadable: ${(err as Error).message}`, '', { cause: err });
  }
  // tar-stream accepts a stream that stops at an entry boundary; a real archive ends with zero blocks.
  if (tarBytes < endOfLastEntry + 512) {
    throw new ContextError('build context tar is truncated: it has no end-of-archive marker', '');
  }

  // Deepest first, so a read-only directory is closed only after everything below it is written.
  for (const d of [...dirs.values()].sort((a, b) => b.depth - a.depth)) setDirMetaSync(d.host, d.mode, d.mtimeMs);
  return { files, bytes };
}
