// Reads a context upload's tar (context/sync.ts writeWantedTar) into a staging directory, parsing
// it here rather than through tar-stream: tar-stream hands out one stream object per entry and one
// promise hop per chunk, which on a 10,000-file upload cost the daemon more than writing the files.
// Here each incoming chunk is parsed and written with synchronous calls before the next is taken
// (a chunk is at most a socket read, some tens of files), so the event loop runs between chunks.
//
// The input is hostile: only regular-file entries whose names the plan asked for are accepted, each
// once and with the planned size; names are only matched, never used as paths (staged files get
// numbered names); headers must carry a valid checksum; pax headers are bounded and read for `path`
// and `size` only; the archive must end with its end-of-archive block.

import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { ContextError, type SyncEntry } from '../context/index.js';
import { headerChecksums } from '../util/tar-writer.js';

const BLOCK = 512;
const OPEN_NEW = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;
/** A pax header is a few records for one name: anything larger is not ours. */
const MAX_PAX = 64 * 1024;

/** tar-stream's names for typeflags, so errors read as before. */
const TYPE_NAMES: Record<string, string> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  '7': 'contiguous-file',
  x: 'pax-header',
  g: 'pax-global-header',
  L: 'gnu-long-path',
  K: 'gnu-long-link-path',
};

/** The error a malformed archive gets; the caller wraps it as "unreadable tar". */
class TarFormatError extends Error {}

function refuse(name: string, reason: string): ContextError {
  return new ContextError(`build context upload: tar entry ${JSON.stringify(name)}: ${reason}`, name);
}

function parseNumber(field: Buffer): number {
  if (field[0]! & 0x80) {
    // base-256 (GNU): big-endian, first byte's top bit is the marker; only positive sizes make sense
    if (field[0] !== 0x80) throw new TarFormatError('Invalid tar header: negative or huge base-256 number');
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    if (!Number.isSafeInteger(n)) throw new TarFormatError('Invalid tar header: number out of range');
    return n;
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`Invalid tar header: bad number ${JSON.stringify(text)}`);
  return Number.parseInt(text, 8);
}

function cString(field: Buffer): string {
  const end = field.indexOf(0);
  return field.toString('utf8', 0, end < 0 ? field.length : end);
}

/** Unsigned or signed header checksum, with the checksum field counted as spaces (both are in use). */
function checksumOk(h: Buffer): boolean {
  const stored = parseNumber(h.subarray(148, 156));
  const { unsigned, signed } = headerChecksums(h);
  return stored === unsigned || stored === signed;
}

/** `path` and `size` of a pax header's records ("LEN key=value\n"); other keys are ignored. */
function parsePax(body: Buffer): { path?: string; size?: number } {
  const out: { path?: string; size?: number } = {};
  let off = 0;
  while (off < body.length) {
    const space = body.indexOf(0x20, off);
    if (space < 0) throw new TarFormatError('Invalid tar header: malformed pax record');
    const len = Number(body.toString('latin1', off, space));
    if (!Number.isSafeInteger(len) || len <= space - off + 1 || off + len > body.length) throw new TarFormatError('Invalid tar header: malformed pax record');
    const record = body.toString('utf8', space + 1, off + len - 1); // without the trailing newline
    const eq = record.indexOf('=');
    if (eq < 0) throw new TarFormatError('Invalid tar header: malformed pax record');
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    if (key === 'path') out.path = value;
    else if (key === 'size') {
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new TarFormatError('Invalid tar header: bad pax size');
      out.size = Number(value);
    }
    off += len;
  }
  return out;
}

type State =
  | { kind: 'header' }
  | { kind: 'pax'; size: number; parts: Buffer[]; got: number }
  | { kind: 'file'; name: string; e: SyncEntry; fd: number; left: number }
  | { kind: 'skip'; left: number } // padding after an entry's data
  | { kind: 'end' };

/**
 * A Writable that takes the upload tar and writes the wanted files into `staging` as `0`, `1`, ...
 * `staged` maps each received name to its staged path. After 'finish', call done() to check that
 * every wanted file came.
 */
export class UploadReceiver extends Writable {
  readonly staged = new Map<string, string>();
  private state: State = { kind: 'header' };
  /** Bytes of a header (or pax body) split across chunks. */
  private partial: Buffer | undefined;
  private pax: { path?: string; size?: number } | undefined;

  constructor(
    private readonly wanted: Map<string, SyncEntry>,
    private readonly staging: string,
  ) {
    super({ highWaterMark: 256 * 1024 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      this.consume(chunk);
      cb();
    } catch (err) {
      this.closeOpen();
      cb(err as Error);
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.state.kind !== 'end') {
      this.closeOpen();
      cb(new TarFormatError('unexpected end of data: the archive has no end-of-archive block'));
      return;
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.closeOpen();
    cb(err);
  }

  /** After the stream finished: every wanted file was received. */
  checkComplete(): void {
    for (const name of this.wanted.keys()) {
      if (!this.staged.has(name)) throw new ContextError(`build context upload: ${name} was asked for but not sent`, name);
    }
  }

  private closeOpen(): void {
    if (this.state.kind === 'file') {
      const fd = this.state.fd;
      this.state = { kind: 'end' };
      fs.closeSync(fd);
    }
  }

  private consume(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const s = this.state;
      switch (s.kind) {
        case 'end':
          return; // what follows the end-of-archive block (record padding) is not read
        case 'header': {
          const need = BLOCK - (this.partial?.length ?? 0);
          if (chunk.length - off < need) {
            this.partial = Buffer.concat([this.partial ?? Buffer.alloc(0), chunk.subarray(off)]);
            return;
          }
          const block = this.partial ? Buffer.concat([this.partial, chunk.subarray(off, off + need)]) : chunk.subarray(off, off + BLOCK);
          this.partial = undefined;
          off += need;
          this.header(block);
          break;
        }
        case 'pax': {
          const take = Math.min(s.size - s.got, chunk.length - off);
          s.parts.push(chunk.subarray(off, off + take));
          s.got += take;
          off += take;
          if (s.got === s.size) {
            this.pax = parsePax(Buffer.concat(s.parts, s.size));
            this.state = s.size % BLOCK ? { kind: 'skip', left: BLOCK - (s.size % BLOCK) } : { kind: 'header' };
          }
          break;
        }
        case 'file': {
          const take = Math.min(s.left, chunk.length - off);
          for (let w = 0; w < take; ) w += fs.writeSync(s.fd, chunk, off + w, take - w);
          off += take;
          s.left -= take;
          if (s.left === 0) this.finishFile(s);
          break;
        }
        case 'skip': {
          const take = Math.min(s.left, chunk.length - off);
          off += take;
          s.left -= take;
          if (s.left === 0) this.state = { kind: 'header' };
          break;
        }
      }
    }
  }

  private header(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      if (this.pax !== undefined) throw new TarFormatError('Invalid tar header: a pax header without its entry');
      this.state = { kind: 'end' };
      return;
    }
    if (!checksumOk(h)) throw new TarFormatError('Invalid tar header. Maybe the tar is corrupted or it needs to be gunzipped?');
    const flag = String.fromCharCode(h[156]!);
    const type = TYPE_NAMES[flag] ?? `type ${JSON.stringify(flag)}`;
    let size = parseNumber(h.subarray(124, 136));
    if (flag === 'x') {
      if (size > MAX_PAX) throw new TarFormatError(`Invalid tar header: a pax header of ${size} bytes`);
      this.state = size === 0 ? { kind: 'header' } : { kind: 'pax', size, parts: [], got: 0 };
      this.pax = size === 0 ? {} : undefined;
      return;
    }
    let name = cString(h.subarray(0, 100));
    if (h.toString('latin1', 257, 262) === 'ustar') {
      const prefix = cString(h.subarray(345, 500));
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    if (this.pax?.path !== undefined) name = this.pax.path;
    if (this.pax?.size !== undefined) size = this.pax.size;
    this.pax = undefined;
    if (flag !== '0' && flag !== '\0' && flag !== '7') throw refuse(name, `a ${type} was not asked for (only planned files are sent)`);
    const e = this.wanted.get(name);
    if (e === undefined) throw refuse(name, 'was not asked for');
    if (this.staged.has(name)) throw refuse(name, 'sent twice');
    if (size !== e.size) throw refuse(name, `is ${size} bytes, the list said ${e.size}`);
    const host = path.join(this.staging, String(this.staged.size));
    this.staged.set(name, host);
    // O_EXCL|O_NOFOLLOW: the staging directory is ours and fresh, a name in it is never reused.
    const fd = fs.openSync(host, OPEN_NEW, 0o600);
    const file: State & { kind: 'file' } = { kind: 'file', name, e, fd, left: size };
    this.state = file;
    if (size === 0) this.finishFile(file);
  }

  private finishFile(s: State & { kind: 'file' }): void {
    this.state = { kind: 'end' }; // while closing: a failure here must not close the descriptor twice
    try {
      // Mode after the data (a write clears setuid/setgid), and the client's mtime.
      fs.fchmodSync(s.fd, s.e.mode & 0o7777);
      fs.futimesSync(s.fd, s.e.mtimeMs / 1000, s.e.mtimeMs / 1000);
    } finally {
      fs.closeSync(s.fd);
    }
    const pad = (BLOCK - (s.e.size % BLOCK)) % BLOCK;
    this.state = pad ? { kind: 'skip', left: pad } : { kind: 'header' };
  }
}

export { TarFormatError };
