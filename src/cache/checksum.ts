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
// rebuild compares the walk's own lstat of each selected entry with the memo (stats what the walk
// did not stat) and reads only what changed.

import { createHash, hash } from 'node:crypto';
import * as path from 'node:path';
import { scanFiles, type ScanResult } from '../workers/index.js';
import { ChecksumMemo, type MemoEntry } from './checksum-memo.js';
import { entriesByPath, type Selection } from './checksum-select.js';

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

const ROOT: Scanned = { type: 'dir', mode: 0, xattrs: '' };

/** sha256 (hex) over what the selection's copy reads, as the header comment says. */
export async function checksumEntries(contextDir: string, selection: Selection, opts: ChecksumOptions = {}): Promise<string> {
  const root = path.resolve(contextDir);
  const memo = await ChecksumMemo.for(root, opts.cacheDir);
  const walked = entriesByPath(selection.context);

  // Every path to look at ("" is the root: only its type matters, and it is a directory). What the
  // walk's own lstat vouches for needs no stat, no scan item and no host path: a file or directory
  // whose stamp the memo holds digests for (`quick`, by position in the order the lines below read
  // the paths: no map of them), and a symlink. On a one-file-edit rebuild that is all but that file.
  // The memo entry is taken now: a concurrent checksum of the same context may replace it while the
  // workers run. The rest is scanned, once each.
  const quick: (MemoEntry | undefined)[] = [];
  const info = new Map<string, Scanned>();
  const rest: string[] = [];
  const want = (rel: string): void => {
    const e = walked.get(rel);
    if (e?.stat !== undefined && (e.type === 'file' || e.type === 'dir')) {
      const k = memo.get(rel);
      if (k !== undefined && k.stamp === e.stat.stamp) {
        quick.push(k);
        return;
      }
    }
    quick.push(undefined);
    if (info.has(rel)) return;
    if (e?.stat !== undefined && e.type === 'symlink') {
      info.set(rel, { type: 'symlink', mode: e.mode, linkTarget: e.linkTarget ?? '', xattrs: '', inode: inodeOf(e.stat.stamp), nlink: e.stat.nlink });
    } else {
      info.set(rel, ROOT); // a placeholder until scanned
      rest.push(rel);
    }
  };
  for (const it of selection.items) {
    for (const d of it.parentDirs) want(d);
    for (const e of it.entries) if (e.path !== '') want(e.path);
  }
  if (rest.length > 0) {
    const known = rest.map((rel) => memo.get(rel));
    const readSince = Date.now();
    const scanned = await scanFiles(
      rest.map((rel, i) => {
        const k = known[i];
        return k === undefined ? { path: path.join(root, rel) } : { path: path.join(root, rel), known: k.stamp };
      }),
      rest.map((rel) => walked.get(rel)?.size ?? 0),
    );
    rest.forEach((rel, i) => {
      info.set(rel, resolveScan(rel, scanned[i]!, known[i], memo, readSince));
    });
  }
  memo.retain(walked);
  await memo.save();

  // A path as the key sees it: scanned, or from the memo and the walk when quick.
  const scannedOf = (rel: string, k: MemoEntry | undefined): Scanned => {
    if (k === undefined) return info.get(rel)!;
    const e = walked.get(rel)!;
    return {
      type: e.type,
      mode: e.mode,
      xattrs: k.xattrs,
      ...(e.type === 'file' ? { digest: k.digest } : {}),
      inode: inodeOf(e.stat!.stamp),
      nlink: e.stat!.nlink,
    };
  };
  let at = 0;

  // The lines hashed are JSON arrays, as JSON.stringify writes them (the text must stay byte for
  // byte what it was, or every key changes), handed to the hash 64 KiB at a time.
  const h = createHash('sha256');
  let chunk = '';
  const put = (line: string): void => {
    chunk += `${line}\n`;
    if (chunk.length > 65536) {
      h.update(chunk);
      chunk = '';
    }
  };
  put(JSON.stringify([VERSION]));
  // Hard links are kept within one copy (fileop's TreeCopier): the n-th file sharing an inode with
  // an earlier one becomes a link to it, so the key records which earlier file that is.
  const inodes = new Map<string, number>();
  let fileNo = 0;
  const linkOf = (inode: string | undefined, nlink: number | undefined): number | null => {
    const n = fileNo++;
    if (inode === undefined || nlink! <= 1) return null;
    const first = inodes.get(inode);
    if (first !== undefined) return first;
    inodes.set(inode, n);
    return null;
  };
  for (const it of selection.items) {
    put(JSON.stringify(['item', it.named, it.keep ?? null, it.error ?? null]));
    for (const d of it.parentDirs) put(`["parent",${describe(scannedOf(d, quick[at++]), true)}]`);
    for (const e of it.entries) {
      let line: string;
      const k = e.path === '' ? undefined : quick[at++];
      if (k !== undefined) {
        // The common case, written out: ["entry", rel, type, mode, null, null, xattrs, digest, null, link].
        const w = walked.get(e.path)!;
        const file = w.type === 'file';
        const link = file && e.meta ? linkOf(w.stat!.nlink > 1 ? inodeOf(w.stat!.stamp) : undefined, w.stat!.nlink) : null;
        line =
          `["entry",${JSON.stringify(e.rel)},${file ? '"file"' : '"dir"'},` +
          (e.meta ? `${modeText(w.mode)},null,null,${k.xattrs === '' ? '""' : JSON.stringify(k.xattrs)},` : 'null,null,null,null,') +
          `${file ? JSON.stringify(k.digest) : 'null'},null,${link}]`;
      } else {
        const s = e.path === '' ? ROOT : info.get(e.path)!;
        const link = s.type === 'file' && e.meta ? linkOf(s.inode, s.nlink) : null;
        line = `["entry",${JSON.stringify(e.rel)},${describe(s, e.meta)},${link}]`;
      }
      put(line);
      // One-shot hashing: a Hash object per path was most of this loop on a 9,000-file context.
      if (opts.perPath && e.path !== '') opts.perPath[e.path] = hash('sha256', line).slice(0, 16);
    }
  }
  h.update(chunk);
  return h.digest('hex');
}

/** `dev:ino` from a stamp (fsutil/stat.ts's contentStamp: `dev:ino:size:mtimeNs:ctimeNs`). */
function inodeOf(stamp: string): string {
  return stamp.slice(0, stamp.indexOf(':', stamp.indexOf(':') + 1));
}

/** A mode as the key writes it: its octal digits, quoted. Number.toString(8) is slow; modes are few. */
const modeTexts: string[] = [];
function modeText(mode: number): string {
  return (modeTexts[mode] ??= `"${mode.toString(8)}"`);
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

/**
 * The fields of a path that reach the copy's result (metadata only where the copy applies it):
 * [type, mode, linkTarget, rdev, xattrs, digest, error] as JSON.stringify writes it, without the brackets.
 */
function describe(s: Scanned, meta: boolean): string {
  const q = (x: string | undefined) => (x === undefined ? 'null' : JSON.stringify(x));
  return `${q(s.type)},${meta ? modeText(s.mode) : 'null'},${q(s.linkTarget)},${q(s.rdev)},${meta ? q(s.xattrs) : 'null'},${q(s.digest)},${q(s.error)}`;
}
