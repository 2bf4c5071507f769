// Shared helpers for the snapshotter tests: temp roots on a real disk, tree manifests for comparing
// file systems, hand-made tar archives, and mount bookkeeping that always unmounts.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { listAttributes, getAttribute } from '@napi-rs/xattr';
import tar from 'tar-stream';
import { mountAll, unmount } from '../../src/snapshotter/mount.js';
import type { Mount } from '../../src/snapshotter/types.js';
import { entryHeader, type TarEntry } from '../../src/util/tar-writer.js';

/** /var/tmp is on the machine's real disk (ext4 here), where overlayfs can put upper dirs. */
export async function tmpRoot(prefix = 'kiln-snap-'): Promise<string> {
  return fsp.mkdtemp(path.join('/var/tmp', prefix));
}

export interface ManifestEntry {
  path: string;
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  link?: string;
  rdev?: string;
  xattrs: Record<string, string>;
}

async function sha256(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest('hex');
}

function typeOf(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'other';
}

/**
 * Everything a layer must carry about a tree, path by path (sorted): type, mode (incl. setuid/setgid/
 * sticky), owner, size, content hash, link target, device number, xattrs (overlay-private ones left out).
 */
export async function manifest(root: string, opts: { mtimes?: boolean } = {}): Promise<Array<ManifestEntry & { mtime?: number }>> {
  const out: Array<ManifestEntry & { mtime?: number }> = [];
  async function walk(rel: string): Promise<void> {
    const dir = rel ? path.join(root, rel) : root;
    for (const name of (await fsp.readdir(dir)).sort()) {
      const host = path.join(dir, name);
      const st = await fsp.lstat(host);
      const xattrs: Record<string, string> = {};
      for (const x of (await listAttributes(host)).sort()) {
        if (x.startsWith('trusted.overlay.')) continue;
        xattrs[x] = (await getAttribute(host, x))!.toString('hex');
      }
      const e: ManifestEntry & { mtime?: number } = {
        path: rel ? `${rel}/${name}` : name,
        type: typeOf(st),
        mode: (st.mode & 0o7777).toString(8),
        uid: st.uid,
        gid: st.gid,
        xattrs,
      };
      if (st.isFile()) {
        e.size = st.size;
        e.sha256 = await sha256(host);
      }
      if (st.isSymbolicLink()) e.link = await fsp.readlink(host);
      if (st.isCharacterDevice() || st.isBlockDevice()) e.rdev = st.rdev.toString(16);
      if (opts.mtimes && !st.isSymbolicLink()) e.mtime = Math.floor(st.mtimeMs / 1000);
      out.push(e);
      if (st.isDirectory()) await walk(e.path);
    }
  }
  await walk('');
  return out;
}

export interface RawEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

/** A tar built by tar-stream, the independent writer, for crafted (also hostile) archives. */
export async function rawTar(entries: RawEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(Buffer.from(c as Buffer));
  })();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      pack.entry(
        {
          name: e.name,
          type: e.type ?? 'file',
          linkname: e.linkname,
          mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644),
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: new Date(1_700_000_000_000),
        },
        e.content ?? '',
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A tar from full TarEntry descriptions (binary xattrs, devices), with inline content. */
export function richTar(entries: Array<TarEntry & { content?: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const size = e.type === 'file' ? (e.content?.length ?? 0) : 0;
    parts.push(entryHeader({ ...e, size }));
    if (size) {
      parts.push(e.content!);
      parts.push(Buffer.alloc((512 - (size % 512)) % 512));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export function streamOf(buf: Buffer, chunk = 64 * 1024): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0; i < buf.length; i += chunk) yield buf.subarray(i, i + chunk);
    })(),
  );
}

/** Mounts and remembers the target, so unmountAll() in afterEach can clean up even after a failure. */
export class MountTracker {
  private readonly targets: string[] = [];
  async mount(mounts: Mount[], target: string): Promise<string> {
    await fsp.mkdir(target, { recursive: true });
    this.targets.push(target);
    await mountAll(mounts, target);
    return target;
  }
  async unmountAll(): Promise<void> {
    for (const t of this.targets.splice(0).reverse()) await unmount(t).catch(() => undefined);
  }
}

/** The names in a tar, in order. */
export async function tarNames(buf: Buffer): Promise<Array<{ name: string; type: string; linkname?: string | null }>> {
  const extract = tar.extract();
  const out: Array<{ name: string; type: string; linkname?: string | null }> = [];
  const done = (async () => {
    for await (const e of extract) {
      out.push({ name: e.header.name, type: e.header.type ?? 'file', linkname: e.header.linkname });
      e.resume();
    }
  })();
  extract.end(buf);
  await done;
  return out;
}

export const T = 1_700_000_000;
export const CAP_NET_RAW = Buffer.from('0100000200200000000000000000000000000000', 'hex');
export const BINARY = Buffer.from([0xff, 0x00, 0x80, 0xc3, 0x28, 0x0a, 0x3d]);

/** A base layer with every kind of entry and every piece of metadata a layer carries. */
export function baseLayer(): Buffer {
  const d = (name: string, mode = 0o755, extra = {}) => ({ name, type: 'dir' as const, mode, uid: 0, gid: 0, mtime: T, ...extra });
  const f = (name: string, content: string, mode = 0o644, extra = {}) => ({
    name,
    type: 'file' as const,
    mode,
    uid: 0,
    gid: 0,
    mtime: T,
    content: Buffer.from(content),
    ...extra,
  });
  return richTar([
    d('bin'),
    f('bin/su', 'su binary', 0o4755),
    { name: 'bin/su-again', type: 'link', linkname: 'bin/su', mode: 0o4755, uid: 0, gid: 0, mtime: T },
    f('bin/ping', 'ping binary', 0o755, {
      xattrs: [
        ['security.capability', CAP_NET_RAW],
        ['user.binary', BINARY],
      ],
    }),
    f('bin/wall', 'wall binary', 0o2755, { gid: 5 }),
    d('dev'),
    { name: 'dev/null', type: 'char', mode: 0o666, uid: 0, gid: 0, mtime: T, devmajor: 1, devminor: 3 },
    { name: 'dev/sda', type: 'block', mode: 0o660, uid: 0, gid: 6, mtime: T, devmajor: 8, devminor: 0 },
    d('empty', 0o700),
    d('etc'),
    f('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'),
    f('etc/shadow', 'root:*::::::\n', 0o640, { gid: 42 }),
    { name: 'lib', type: 'symlink', linkname: 'usr/lib', mode: 0o777, uid: 0, gid: 0, mtime: T },
    d('run'),
    { name: 'run/fifo', type: 'fifo', mode: 0o620, uid: 1000, gid: 1000, mtime: T },
    d('shared', 0o2775, { gid: 100 }),
    d('tmp', 0o1777),
    d('usr'),
    d('usr/lib'),
    f('usr/lib/libc.so', Array.from({ length: 100 }, (_, i) => createHash('sha256').update(String(i)).digest('base64')).join('')),
    d('usr/share'),
    d('usr/share/doc', 0o750, { uid: 1000, gid: 1000 }),
    f('usr/share/doc/readme', 'docs', 0o600, { uid: 1000, gid: 1000 }),
    f(`usr/share/doc/${'long-name-'.repeat(15)}ü`, 'pax path'),
  ]);
}
