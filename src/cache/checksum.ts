// Content checksums of what a COPY/ADD (or a bind mount) reads from the build context, for its
// cache key. The key covers exactly what the copy's result depends on:
//  - each item's name as named or matched (a file takes it; --parents recreates it), so renaming a
//    file a wildcard selects changes the key;
//  - for every entry the copy reads (checksum-select.ts): its path below the item, type, mode, link
//    target, device numbers, xattrs, hard links among the copied files, and content;
//  - never times: touching a file does not miss the cache;
//  - never uid/gid: a COPY from the context gives every file 0:0 (or the --chown owner), as
//    BuildKit's context transfer does (fileop's ContextView has preserveOwner = false), so the
//    owners of context files cannot change the result;
//  - nothing that .dockerignore hides, an unselected sibling or an --exclude'd entry holds.
// File contents are read in the worker pool and memoised by stat stamp (checksum-memo.ts): a
// rebuild stats every selected entry and reads only what changed.

import { createHash, hash } from 'node:crypto';
import * as path from 'node:path';
import type { ContextEntry } from '../context/walk.js';
import { scanFiles, type ScanResult } from '../workers/index.js';
import { ChecksumMemo, type MemoEntry } from './checksum-memo.js';
import type { Selection } from './checksum-select.js';

export { selectEntries } from './checksum-select.js';
export type { SelectOptions, SelectedEntry, SelectedItem, Selection } from './checksum-select.js';
export { ChecksumMemo, RACY_MS } from './checksum-memo.js';
export type { MemoEntry } from './checksum-memo.js';

const VERSION = 'kiln-context-checksum-v2';

export interface ChecksumOptions {
  /**
   * Directory to persist memoised file checksums in (the kiln root's records/checksums), so a new
   * process re-reads nothing unchanged. Without it they are memoised for this process only.
   */
  cacheDir?: string;
  /**
   * Filled with one short digest per selected path (as the key sees it), so a cache miss can name
   * the files that changed.
   */
  perPath?: Record<string, string>;
}

const pathSets = new WeakMap<readonly ContextEntry[], Set<string>>();

function pathsOf(entries: readonly ContextEntry[]): Set<string> {
  let s = pathSets.get(entries);
  if (!s) pathSets.set(entries, (s = new Set(entries.map((e) => e.path))));
  return s;
}

/** sha256 (hex) over what the selection's copy reads, as the header comment says. */
export async function checksumEntries(contextDir: string, selection: Selection, opts: ChecksumOptions = {}): Promise<string> {
  const root = path.resolve(contextDir);
  const memo = await ChecksumMemo.for(root, opts.cacheDir);

  // Every path to look at, once ("" is the root: only its type matters, and it is a directory).
  const wanted = new Set<string>();
  for (const it of selection.items) {
    for (const d of it.parentDirs) wanted.add(d);
    for (const e of it.entries) if (e.path !== '') wanted.add(e.path);
  }
  const rels = [...wanted];
  const byPath = new Map(selection.entries.map((e) => [e.path, e]));
  // What the memo holds now: a concurrent checksum of the same context may replace entries while
  // the workers run, and a result that read nothing refers to exactly the stamp sent.
  const known = rels.map((rel) => memo.get(rel));
  const readSince = Date.now();
  const scanned = await scanFiles(
    rels.map((rel, i) => {
      const k = known[i];
      if (k === undefined) return { path: path.join(root, rel) };
      // The walk's own lstat, when it took one, stands in for a second (pool.ts statKnown).
      const e = byPath.get(rel);
      const seen =
        e?.stat && (e.type === 'file' || e.type === 'dir' || e.type === 'symlink')
          ? { type: e.type, mode: e.mode, ...e.stat, ...(e.linkTarget !== undefined ? { linkTarget: e.linkTarget } : {}) }
          : undefined;
      return { path: path.join(root, rel), known: k.stamp, ...(seen ? { seen } : {}) };
    }),
    rels.map((rel) => byPath.get(rel)?.size ?? 0),
  );
  const info = new Map<string, Scanned>();
  rels.forEach((rel, i) => {
    info.set(rel, resolveScan(rel, scanned[i]!, known[i], memo, readSince));
  });
  memo.retain(pathsOf(selection.context));
  await memo.save();

  const h = createHash('sha256');
  const put = (rec: unknown[]): string => {
    const line = JSON.stringify(rec);
    h.update(line + '\n');
    return line;
  };
  put([VERSION]);
  // Hard links are kept within one copy (fileop's TreeCopier): the n-th file sharing an inode with
  // an earlier one becomes a link to it, so the key records which earlier file that is.
  const inodes = new Map<string, number>();
  let fileNo = 0;
  for (const it of selection.items) {
    put(['item', it.named, it.keep ?? null, it.error ?? null]);
    for (const d of it.parentDirs) {
      const s = info.get(d)!;
      put(['parent', ...describe(s, true)]);
    }
    for (const e of it.entries) {
      const s: Scanned = e.path === '' ? { type: 'dir', mode: 0, xattrs: '' } : info.get(e.path)!;
      let link: number | null = null;
      if (s.type === 'file' && e.meta) {
        const n = fileNo++;
        if (s.inode !== undefined && s.nlink! > 1) {
          const first = inodes.get(s.inode);
          if (first !== undefined) link = first;
          else inodes.set(s.inode, n);
        }
      }
      const line = put(['entry', e.rel, ...describe(s, e.meta), link]);
      // One-shot hashing: a Hash object per path was most of this loop on a 9,000-file context.
      if (opts.perPath && e.path !== '') opts.perPath[e.path] = hash('sha256', line).slice(0, 16);
    }
  }
  return h.digest('hex');
}

/** One path as the key sees it. */
interface Scanned {
  type: string;
  mode: number;
  linkTarget?: string;
  rdev?: string;
  digest?: string;
  xattrs: string;
  inode?: string;
  nlink?: number;
  error?: string;
}

function resolveScan(rel: string, r: ScanResult, known: MemoEntry | undefined, memo: ChecksumMemo, readSince: number): Scanned {
  if ('error' in r) return { type: 'error', mode: 0, xattrs: '', error: r.error };
  const s: Scanned = { type: r.type, mode: r.mode, xattrs: '', inode: `${r.dev}:${r.ino}`, nlink: r.nlink };
  if (r.type === 'symlink') s.linkTarget = r.linkTarget ?? '';
  if (r.type === 'char' || r.type === 'block') s.rdev = r.rdev;
  if (r.type === 'file' || r.type === 'dir') {
    if (r.hashed) {
      const digest = r.digest ?? '';
      s.digest = digest;
      s.xattrs = r.xattrs ?? '';
      memo.set(rel, { stamp: r.stamp, digest, xattrs: s.xattrs }, readSince);
    } else {
      // The worker read nothing: the stamp is the one the memo holds digests for.
      const m = known!;
      s.digest = m.digest;
      s.xattrs = m.xattrs;
    }
    if (r.type === 'dir') delete s.digest;
  }
  return s;
}

/** The fields of a path that reach the copy's result (metadata only where the copy applies it). */
function describe(s: Scanned, meta: boolean): unknown[] {
  return [s.type, meta ? s.mode.toString(8) : null, s.linkTarget ?? null, s.rdev ?? null, meta ? s.xattrs : null, s.digest ?? null, s.error ?? null];
}
