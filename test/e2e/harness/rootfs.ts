// Apply an image's layers in order, in memory, into a manifest of the resulting root filesystem.
//
// Layer semantics (OCI image spec, "Applying Changesets"): within one layer, `.wh.NAME` deletes NAME
// from the layers below and `.wh..wh..opq` in a directory hides everything below from lower layers;
// both act on what the lower layers made, never on the same layer's own entries, so a layer is read
// in two passes. A non-directory replacing a directory drops the directory's subtree; a directory over
// a directory only changes its metadata. Hard links share the target's inode, so their metadata and
// content are the target's whatever their own header says.
import { createHash } from 'node:crypto';
import { readTar, type TarHeader } from './tar.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo';

/** One path of the final root filesystem. Mtimes are deliberately absent: they never compare. */
export interface FsEntry {
  path: string; // absolute, "/etc/passwd"
  type: EntryType;
  mode: string; // permission bits with setuid/setgid/sticky, 4 octal digits: "0755", "4755"
  uid: number;
  gid: number;
  size?: number; // files
  sha256?: string; // files: hex of the content
  link?: string; // symlinks: the target as stored
  hardlinks?: string[]; // files: the other paths sharing this inode, sorted
  dev?: string; // devices: "major:minor"
  xattrs?: Record<string, string>; // from PAX SCHILY.xattr.*
  /** A parent directory no layer had an entry for (extracting would invent its metadata). */
  implicit?: boolean;
}

interface Node {
  entry: Omit<FsEntry, 'hardlinks'>;
  inode: number;
  body?: Buffer; // files: kept so that expectations can read contents
}

export interface AppliedRootfs {
  entries: FsEntry[];
  /** The content of a regular file of the result (through hard links too), or undefined. */
  read(path: string): Buffer | undefined;
}

const TYPES: Partial<Record<TarHeader['type'], EntryType>> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'dir',
  symlink: 'symlink',
  'character-device': 'char',
  'block-device': 'block',
  fifo: 'fifo',
};

/** "./a/b/", "/a//b" -> "/a/b"; the root is "/". Refuses ".." so a hostile layer cannot escape. */
export function normalizePath(name: string, what: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new Error(`${what}: entry name with "..": ${JSON.stringify(name)}`);
  return '/' + parts.join('/');
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

function baseOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

export function octalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

function xattrsOf(header: TarHeader): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(header.pax ?? {})) {
    if (k.startsWith('SCHILY.xattr.')) out[k.slice('SCHILY.xattr.'.length)] = Buffer.from(v, 'latin1').toString('hex');
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function paxNumber(header: TarHeader, key: string, fallback: number | undefined): number {
  const v = header.pax?.[key];
  return v !== undefined ? Number(v) : (fallback ?? 0);
}

/** The root filesystem the layers make, as entries sorted by path (the root itself left out). */
export async function applyLayers(layers: Buffer[], what: string): Promise<AppliedRootfs> {
  const state = new Map<string, Node>();
  let nextInode = 1;

  const removeTree = (p: string, keepSelf = false): void => {
    if (!keepSelf) state.delete(p);
    const prefix = p === '/' ? '/' : p + '/';
    for (const k of [...state.keys()]) if (k.startsWith(prefix)) state.delete(k);
  };

  const ensureParents = (p: string): void => {
    const parent = parentOf(p);
    if (parent === '/' || state.get(parent)?.entry.type === 'dir') return;
    ensureParents(parent);
    // A file where a directory must be: extraction replaces it, like a directory entry would.
    removeTree(parent);
    state.set(parent, { entry: { path: parent, type: 'dir', mode: '0755', uid: 0, gid: 0, implicit: true }, inode: nextInode++ });
  };

  for (const [index, layer] of layers.entries()) {
    const where = `${what}: layer ${index}`;
    const entries = await readTar(layer, where);

    // Pass 1: whiteouts against the lower layers.
    for (const { header } of entries) {
      const p = normalizePath(header.name, where);
      const base = baseOf(p);
      if (base === '.wh..wh..opq') removeTree(parentOf(p), true);
      else if (base.startsWith('.wh.')) removeTree(parentOf(p) === '/' ? '/' + base.slice(4) : parentOf(p) + '/' + base.slice(4));
    }

    // Pass 2: this layer's own entries.
    for (const { header, body } of entries) {
      const p = normalizePath(header.name, where);
      if (baseOf(p).startsWith('.wh.')) continue;
      if (p === '/') continue; // the root's own metadata is not carried consistently by layer tars
      const base = {
        path: p,
        mode: octalMode(paxNumber(header, 'mode', header.mode)),
        uid: paxNumber(header, 'uid', header.uid),
        gid: paxNumber(header, 'gid', header.gid),
        xattrs: xattrsOf(header),
      };
      ensureParents(p);
      const existing = state.get(p);

      if (header.type === 'link') {
        const target = normalizePath(header.linkname ?? '', where);
        const t = state.get(target);
        if (!t || t.entry.type === 'dir') {
          throw new Error(`${where}: hard link ${p} -> ${target}: target ${t ? 'is a directory' : 'does not exist'}`);
        }
        if (existing && existing.entry.type === 'dir') removeTree(p);
        state.set(p, { entry: { ...t.entry, path: p }, inode: t.inode, body: t.body });
        continue;
      }

      const type = TYPES[header.type ?? 'file'];
      if (!type) throw new Error(`${where}: ${p}: unsupported tar entry type ${String(header.type)}`);
      if (existing && existing.entry.type === 'dir' && type === 'dir') {
        state.set(p, { entry: { ...existing.entry, ...base, type, implicit: undefined }, inode: existing.inode });
        continue;
      }
      if (existing && existing.entry.type === 'dir') removeTree(p);
      const entry: Node['entry'] = { ...base, type };
      if (type === 'file') {
        entry.size = body.length;
        entry.sha256 = createHash('sha256').update(body).digest('hex');
      } else if (type === 'symlink') {
        entry.link = header.linkname ?? '';
        // Linux has no symlink permissions (lstat always says 0777): whatever a tar header says is
        // unobservable after extraction, so it must not count as a difference.
        entry.mode = '0777';
      } else if (type === 'char' || type === 'block') {
        entry.dev = `${header.devmajor ?? 0}:${header.devminor ?? 0}`;
      }
      state.set(p, { entry, inode: nextInode++, body: type === 'file' ? body : undefined });
    }
  }

  const byInode = new Map<number, string[]>();
  for (const [p, n] of state) {
    if (n.entry.type !== 'file') continue;
    const group = byInode.get(n.inode) ?? [];
    group.push(p);
    byInode.set(n.inode, group);
  }
  const out: FsEntry[] = [];
  for (const [p, n] of [...state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const e: FsEntry = { ...n.entry };
    for (const k of Object.keys(e) as (keyof FsEntry)[]) if (e[k] === undefined) delete e[k];
    const group = byInode.get(n.inode);
    if (group && group.length > 1) e.hardlinks = group.filter((q) => q !== p).sort();
    out.push(e);
  }
  return { entries: out, read: (p) => state.get(p)?.body };
}
