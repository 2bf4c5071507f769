// A small deterministic tar (ustar + pax) writer, for layer diffs and context uploads, and the
// header checksum the project's tar readers check against.
// Why not tar-stream's pack: it encodes pax values as UTF-8 strings, so binary xattr values such as
// security.capability cannot survive, and its pax fallback would stack a second header on ours.
// Output depends only on the entries given: fixed pax header names, no uname/gname, whole-second mtimes
// (as Docker truncates them), and no trailing record padding beyond the two end blocks.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { Readable } from 'node:stream';

export type TarType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarEntry {
  /** Path inside the archive: no leading '/', no trailing '/'. */
  name: string;
  type: TarType;
  mode: number; // permission bits incl. setuid/setgid/sticky (07777)
  uid: number;
  gid: number;
  mtime: number; // whole seconds since the epoch
  size?: number; // regular files only
  linkname?: string; // symlink target, or archive path of a hard link's first name
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, written as pax SCHILY.xattr.* records in the order given. */
  xattrs?: Array<[string, Buffer]>;
  /** Host file the content of a regular file is read from. */
  source?: string;
}

const BLOCK = 512;
const TYPEFLAG: Record<TarType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  char: '3',
  block: '4',
  dir: '5',
  fifo: '6',
};
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

function isPlainAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

function writeOctal(buf: Buffer, off: number, width: number, value: number): void {
  const digits = value.toString(8).padStart(width - 1, '0');
  buf.write(digits, off, width - 1, 'ascii');
  buf[off + width - 1] = 0;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const base = Buffer.byteLength(` ${key}=`) + value.length + 1;
  let total = base + 1;
  for (let d = 1; ; d++) {
    total = base + d;
    if (String(total).length === d) break;
  }
  return Buffer.concat([Buffer.from(`${total} ${key}=`), value, Buffer.from('\n')]);
}

/** Splits a long ASCII name into ustar prefix (<=155) and name (<=100), if possible. */
function splitUstar(name: string): [string, string] | undefined {
  if (name.length <= 100) return ['', name];
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (prefix.length <= 155 && rest.length <= 100 && rest.length > 0) return [prefix, rest];
  }
  return undefined;
}

interface RawHeader {
  name: string;
  prefix: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
}

/**
 * A header block's checksum: the sum of its bytes with the checksum field (148-155) counted as
 * spaces, as POSIX defines it (unsigned), and as some old tar programs wrote it (signed bytes).
 * Readers accept either.
 */
export function headerChecksums(block: Uint8Array): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return { unsigned, signed };
}

function encodeHeader(h: RawHeader): Buffer {
  const buf = Buffer.alloc(BLOCK);
  buf.write(h.name, 0, 100, 'utf8');
  writeOctal(buf, 100, 8, h.mode);
  writeOctal(buf, 108, 8, h.uid);
  writeOctal(buf, 116, 8, h.gid);
  writeOctal(buf, 124, 12, h.size);
  writeOctal(buf, 136, 12, h.mtime);
  buf.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  buf.write(h.typeflag, 156, 1, 'ascii');
  buf.write(h.linkname, 157, 100, 'utf8');
  buf.write('ustar\x0000', 257, 8, 'ascii');
  writeOctal(buf, 329, 8, h.devmajor);
  writeOctal(buf, 337, 8, h.devminor);
  buf.write(h.prefix, 345, 155, 'utf8');
  buf.write(headerChecksums(buf).unsigned.toString(8).padStart(6, '0'), 148, 6, 'ascii');
  buf[154] = 0;
  buf[155] = 0x20;
  return buf;
}

function padding(size: number): Buffer {
  const rem = size % BLOCK;
  return Buffer.alloc(rem === 0 ? 0 : BLOCK - rem);
}

/** Header block(s) for one entry: a pax extended header first when ustar cannot hold everything. */
export function entryHeader(e: TarEntry): Buffer {
  const pax: Buffer[] = [];
  const fullName = e.type === 'dir' ? `${e.name}/` : e.name;
  let name = fullName;
  let prefix = '';
  const split = isPlainAscii(fullName) ? splitUstar(fullName) : undefined;
  if (split) {
    [prefix, name] = split;
  } else {
    pax.push(paxRecord('path', Buffer.from(fullName)));
    name = fullName.replace(/[^\x20-\x7e]/g, '_').slice(0, 99);
  }
  let linkname = e.linkname ?? '';
  if (linkname && (!isPlainAscii(linkname) || linkname.length > 100)) {
    pax.push(paxRecord('linkpath', Buffer.from(linkname)));
    linkname = linkname.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);
  }
  let { uid, gid } = e;
  if (uid > MAX_OCTAL_7) {
    pax.push(paxRecord('uid', Buffer.from(String(uid))));
    uid = 0;
  }
  if (gid > MAX_OCTAL_7) {
    pax.push(paxRecord('gid', Buffer.from(String(gid))));
    gid = 0;
  }
  let size = e.type === 'file' ? (e.size ?? 0) : 0;
  if (size > MAX_OCTAL_11) {
    pax.push(paxRecord('size', Buffer.from(String(size))));
    size = 0;
  }
  for (const [key, value] of e.xattrs ?? []) pax.push(paxRecord(`SCHILY.xattr.${key}`, value));

  const main = encodeHeader({
    name,
    prefix,
    typeflag: TYPEFLAG[e.type],
    mode: e.mode & 0o7777,
    uid,
    gid,
    size,
    mtime: Math.max(0, Math.min(e.mtime, MAX_OCTAL_11)),
    linkname,
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
  });
  if (pax.length === 0) return main;
  const body = Buffer.concat(pax);
  const base = fullName.replace(/\/$/, '').split('/').pop() ?? '';
  const paxHeader = encodeHeader({
    name: `PaxHeaders.0/${base.replace(/[^\x20-\x7e]/g, '_')}`.slice(0, 100),
    prefix: '',
    typeflag: 'x',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: body.length,
    mtime: 0,
    linkname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, body, padding(body.length), main]);
}

const BATCH = 1 << 20;
/** How long one slice of synchronous work may hold the thread before the stream lets others run. */
const SLICE_MS = 15;
// O_NOFOLLOW: a file replaced by a link since it was listed must not be archived through the link.
// O_NONBLOCK: a FIFO put where a file was must not hang the thread (no effect on regular files).
const OPEN_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/** How an archive is produced; every field has a default that suits layers. */
export interface TarStreamOptions {
  /** Bytes per batch (one stream chunk). Default 1 MiB. */
  batchBytes?: number;
  /** Opens an entry's source for reading (default: `source` with O_NOFOLLOW|O_NONBLOCK). A caller
   * may check more here (still a file, the listed size) and throw an error of its own. */
  open?: (e: TarEntry) => number;
  /** The error for a file whose length is not the entry's size: `found` is what the read saw. */
  sizeChanged?: (e: TarEntry, found: string) => Error;
}

function defaultSizeChanged(e: TarEntry, found: string): Error {
  return new Error(`tar entry ${e.name}: ${e.source} changed size while being archived (${found} bytes where ${e.size} were listed)`);
}

/**
 * Produces an archive a batch at a time with synchronous file-system calls: headers and file
 * contents are packed into batch buffers, content read straight into them. Per entry that is a few
 * syscalls and no round trip through libuv's thread pool, which is what made layers and uploads of
 * many small files slow; big files stream through in batch-sized pieces, never held whole. A file
 * that is shorter or longer than its entry says fails the archive: on its last piece the read asks
 * for one byte more, and getting it means the file grew.
 */
class TarProducer {
  private readonly batchBytes: number;
  private batch: Buffer;
  private used = 0;
  private ready: Buffer[] = [];
  /** Batches handed back by a consumer that is done with them (hashTar): written again, not reallocated. */
  private readonly free: Buffer[] = [];
  /** A file whose content is being copied: it may span batches. */
  private open: { fd: number; entry: TarEntry; pos: number; size: number } | undefined;
  private ended = false;

  constructor(
    private readonly entries: Iterator<TarEntry>,
    private readonly opts: TarStreamOptions,
  ) {
    this.batchBytes = opts.batchBytes ?? BATCH;
    this.batch = Buffer.allocUnsafe(this.batchBytes);
  }

  /** The next full batch (or the last, shorter one); null at the end, undefined when the time slice ran out first. */
  next(deadline: number): Buffer | undefined | null {
    while (this.ready.length === 0) {
      if (this.ended) return null;
      if (performance.now() > deadline) return undefined;
      this.step();
    }
    return this.ready.shift();
  }

  /** Takes back a batch `next` returned once its consumer no longer needs its bytes. */
  recycle(b: Buffer): void {
    if (b.length === this.batchBytes) this.free.push(b);
  }

  close(): void {
    if (this.open) fs.closeSync(this.open.fd);
    this.open = undefined;
  }

  private step(): void {
    if (this.open) {
      this.copyContent();
      return;
    }
    const r = this.entries.next();
    if (r.done) {
      this.put(Buffer.alloc(2 * BLOCK));
      this.flush();
      this.ended = true;
      return;
    }
    const e = r.value;
    // An empty file has nothing to read, unless the caller's open checks something (still a file).
    if (e.type !== 'file' || (!e.size && !this.opts.open)) {
      this.put(entryHeader(e));
      return;
    }
    if (!e.source) throw new Error(`tar entry ${e.name}: no source for file content`);
    // Opened before its header goes out: a file that cannot be read fails with nothing half-written.
    const fd = this.opts.open ? this.opts.open(e) : fs.openSync(e.source, OPEN_FLAGS);
    this.put(entryHeader(e));
    this.open = { fd, entry: e, pos: 0, size: e.size ?? 0 };
  }

  /** Reads the open file into the batch until the batch is full or the file done. */
  private copyContent(): void {
    const f = this.open!;
    for (;;) {
      if (this.used === this.batchBytes) {
        this.flush();
        return;
      }
      const left = f.size - f.pos;
      const want = Math.min(left + 1, this.batchBytes - this.used);
      const n = fs.readSync(f.fd, this.batch, this.used, want, f.pos);
      if (n > left) throw this.sizeChanged(f.entry, `at least ${f.pos + n}`);
      if (n === 0) {
        if (left === 0) break;
        throw this.sizeChanged(f.entry, String(f.pos));
      }
      this.used += n;
      f.pos += n;
      if (f.pos === f.size && want > left) break; // the extra byte was asked for and not there
    }
    this.close();
    this.put(padding(f.size));
  }

  private sizeChanged(e: TarEntry, found: string): Error {
    this.close();
    return (this.opts.sizeChanged ?? defaultSizeChanged)(e, found);
  }

  private put(bytes: Buffer): void {
    let off = 0;
    while (off < bytes.length) {
      const n = bytes.copy(this.batch, this.used, off);
      this.used += n;
      off += n;
      if (this.used === this.batchBytes) this.flush();
    }
  }

  private flush(): void {
    if (this.used === 0) return;
    this.ready.push(this.used === this.batchBytes ? this.batch : this.batch.subarray(0, this.used));
    this.batch = this.free.pop() ?? Buffer.allocUnsafe(this.batchBytes);
    this.used = 0;
  }
}

/**
 * A whole archive as a byte stream. Entries come from a synchronous iterator (the layer walks stat
 * and read with synchronous calls too), and the stream pulls one batch per read: the consumer's
 * back-pressure (a compressor, a file, a socket) decides the pace, and no slice holds the event loop
 * for longer than about SLICE_MS, so progress and other builds keep moving.
 */
export function tarReadable(entries: Iterable<TarEntry>, opts: TarStreamOptions = {}): Readable {
  let producer: TarProducer | undefined;
  const stream = new Readable({
    highWaterMark: opts.batchBytes ?? BATCH,
    read() {
      const pull = () => {
        try {
          producer ??= new TarProducer(entries[Symbol.iterator](), opts);
          const b = producer.next(performance.now() + SLICE_MS);
          // Time is up with nothing ready yet (a walk over unchanged files): go on in a later turn.
          if (b === undefined) setImmediate(pull);
          else this.push(b);
        } catch (err) {
          this.destroy(err as Error);
        }
      };
      pull();
    },
    destroy(err, cb) {
      try {
        producer?.close();
      } catch {
        // the descriptor is gone either way; the stream's own error is the one to report
      }
      cb(err);
    },
  });
  return stream;
}

/**
 * The sha256 (`sha256:<hex>`) and length of the archive of `entries`, without writing it anywhere:
 * a layer whose blob is deferred needs only these. Batches are hashed as they are made and then
 * written again (no stream, no megabyte allocated per batch), and the work goes in slices of about
 * SLICE_MS between which the event loop runs, as with tarReadable. The bytes hashed are exactly
 * those tarReadable would produce.
 */
export async function hashTar(entries: Iterable<TarEntry>, opts: TarStreamOptions = {}): Promise<{ digest: string; bytes: number }> {
  const producer = new TarProducer(entries[Symbol.iterator](), opts);
  const h = createHash('sha256');
  let bytes = 0;
  try {
    let sliceEnd = performance.now() + SLICE_MS;
    for (;;) {
      const b = producer.next(sliceEnd);
      if (b === null) break;
      if (b !== undefined) {
        h.update(b);
        bytes += b.length;
        producer.recycle(b);
      }
      if (b === undefined || performance.now() > sliceEnd) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceEnd = performance.now() + SLICE_MS;
      }
    }
  } finally {
    producer.close();
  }
  return { digest: `sha256:${h.digest('hex')}`, bytes };
}
