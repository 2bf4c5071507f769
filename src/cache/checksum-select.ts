// Which build context entries a COPY/ADD (or a bind mount) of some sources reads, exactly: the same
// rules as the copy itself (src/fileop/copy.ts and source.ts), played over the walk's entry list
// instead of the disk, so a cache key can be computed before anything is copied.
//
//  - Sources are cleaned inside the context ("../../x" is "/x" of it); `--parents` keeps what follows
//    a "/./" pivot.
//  - A wildcard matches per path element with Go's filepath.Match, descending only into real
//    directories; what it matches is then followed. This expansion is fileop/expand.ts's walk, the
//    one the copy drives too, asked of the entry list instead of the disk.
//  - A named or matched symlink is followed inside the context (an absolute target restarts at the
//    context root, ".." stops there) through visible entries only: the copy reads its target.
//  - A directory contributes its whole subtree; links inside it are copied as links, not followed.
//  - `--exclude` patterns (context/patterns.ts, the matcher fileop uses) drop entries as the copier
//    does: a wildcard match by its path below the wildcard's fixed part, everything below an item by
//    its path relative to the item; a matched directory is still entered when an exception could
//    re-include something below it.
//  - Entries .dockerignore hides are not in the walk, so they are never selected: for COPY they do
//    not exist.
// test/cache/checksum-select.test.ts checks these rules against what fileop's copy() really copies.

import { compareNames, isWalkOrder, type ContextEntry } from '../context/walk.js';
import { resolveRelative } from '../fsutil/rootpath.js';
import { relOf } from '../context/source-paths.js';
import { expandSource, type EntryKind, type Expanded, type ExpandView } from '../fileop/expand.js';
import { PatternMatcher, type MatchInfo } from '../context/patterns.js';

export interface SelectOptions {
  /** COPY --parents. */
  parents?: boolean;
  /** COPY --exclude patterns. */
  exclude?: readonly string[];
}

/** One entry an item reads. */
export interface SelectedEntry {
  /** Context-relative path of what is read ("" is the context root). */
  path: string;
  /** Path relative to the item ("" for the item itself): where it lands below the item's target. */
  rel: string;
  /** False for the top directory of a directory item: the copy writes into it but keeps none of
   * its metadata (fileop's TreeCopier applies a top directory's metadata only to one it creates,
   * and the top target always exists by then). */
  meta: boolean;
}

/** One thing the copy copies: a source as written, or one match of a wildcard. */
export interface SelectedItem {
  /** The source as written. */
  source: string;
  /** The path as named or matched, clean and context-relative ("" = the root): its base name is
   * the name of a copied file, and with --parents it is the path recreated. */
  named: string;
  /** --parents: the part of `named` recreated below the destination. */
  keep?: string;
  /** Why the copy will fail on this source (not found, not a directory, bad pattern, link loop). */
  error?: string;
  /** --parents: directories (context-relative, followed) whose metadata the recreated parents take. */
  parentDirs: string[];
  /** What the item reads, in the order the copier reads it. */
  entries: SelectedEntry[];
}

export interface Selection {
  items: SelectedItem[];
  /** Every context entry the copy reads, once each, in walk order. */
  entries: ContextEntry[];
  /** The walk the selection was made from. */
  context: readonly ContextEntry[];
}

interface Index {
  byPath: Map<string, ContextEntry>;
  /** Visible entries in each directory, byte-wise sorted by name (readdir of fileop's context view). */
  children: Map<string, ContextEntry[]>;
  /** Their names, made when a wildcard first asks for them. */
  names: Map<string, string[]>;
}

const indexes = new WeakMap<readonly ContextEntry[], Index>();

const nameOf = (e: ContextEntry) => e.path.slice(e.path.lastIndexOf('/') + 1);
const byName = (a: ContextEntry, b: ContextEntry) => compareNames(nameOf(a), nameOf(b));

function indexOf(entries: readonly ContextEntry[]): Index {
  let idx = indexes.get(entries);
  if (idx) return idx;
  const byPath = new Map<string, ContextEntry>();
  const children = new Map<string, ContextEntry[]>();
  // The walk lists a directory's entries right after it, so the previous entry's parent is usually
  // this one's too: no string is cut and no map asked for most entries.
  let lastDir: string | undefined;
  let last: ContextEntry[] = [];
  for (const e of entries) {
    byPath.set(e.path, e);
    const slash = e.path.lastIndexOf('/');
    const same = lastDir !== undefined && (slash === -1 ? lastDir === '' : slash === lastDir.length && e.path.startsWith(lastDir));
    if (!same) {
      const dir = slash === -1 ? '' : e.path.slice(0, slash);
      let list = children.get(dir);
      if (!list) children.set(dir, (list = []));
      lastDir = dir;
      last = list;
    }
    last.push(e);
  }
  // The walk lists names sorted; sort only what is not (entries from elsewhere). Siblings' paths
  // share all but their names, so their paths compare as their names do.
  if (!isWalkOrder(entries)) {
    for (const list of children.values()) {
      for (let i = 1; i < list.length; i++) {
        if (compareNames(list[i - 1]!.path, list[i]!.path) > 0) {
          list.sort(byName);
          break;
        }
      }
    }
  }
  idx = { byPath, children, names: new Map() };
  indexes.set(entries, idx);
  return idx;
}

/** The entries of a walk by path (the index selectEntries keeps for it, made once per walk). */
export function entriesByPath(entries: readonly ContextEntry[]): ReadonlyMap<string, ContextEntry> {
  return indexOf(entries).byPath;
}

type Kind = ContextEntry['type'];

/** fileop's ContextView, over the entry list: only walked (visible) entries exist. */
class EntriesView implements ExpandView {
  constructor(private readonly idx: Index) {}

  kind(rel: string): EntryKind | undefined {
    const t = this.type(rel);
    return t === undefined ? undefined : t === 'dir' ? 'dir' : 'other';
  }

  /** The entry type at a clean relative path ("" is the root directory); undefined when absent. */
  type(rel: string): Kind | undefined {
    if (rel === '') return 'dir';
    return this.idx.byPath.get(rel)?.type;
  }

  readdir(rel: string): string[] {
    let names = this.idx.names.get(rel);
    if (names === undefined) this.idx.names.set(rel, (names = (this.idx.children.get(rel) ?? []).map(nameOf)));
    return names;
  }

  /** The entries of a directory, in readdir's order. */
  children(rel: string): readonly ContextEntry[] {
    return this.idx.children.get(rel) ?? [];
  }

  /** The entry at a clean relative path, when it is one (the root is none). */
  entry(rel: string): ContextEntry | undefined {
    return this.idx.byPath.get(rel);
  }

  /** Follows symlinks in every component, the last too, never leaving the root. */
  resolve(unsafe: string): string {
    return resolveRelative(
      unsafe,
      (rel) => {
        const e = this.idx.byPath.get(rel);
        return e?.type === 'symlink' ? (e.linkTarget ?? '') : undefined;
      },
      { where: 'the build context' },
    );
  }
}

/**
 * The items and entries a COPY of `sources` from the context reads. Never throws for what makes the
 * copy itself fail (a missing source, a bad pattern): such an item carries `error`, so the key still
 * differs from a working one and the copy reports the failure with its Dockerfile location.
 */
export function selectEntries(entries: readonly ContextEntry[], sources: readonly string[], opts: SelectOptions = {}): Selection {
  const view = new EntriesView(indexOf(entries));
  const parents = opts.parents ?? false;
  let exclude: PatternMatcher | undefined;
  const items: SelectedItem[] = [];
  try {
    exclude = opts.exclude && opts.exclude.length > 0 ? new PatternMatcher(opts.exclude) : undefined;
  } catch (err) {
    // The copy refuses the step; the key only has to be distinct.
    items.push({ source: '', named: '', error: `--exclude: ${(err as Error).message}`, parentDirs: [], entries: [] });
  }

  for (const raw of sources) {
    let expanded: Expanded[];
    try {
      expanded = expandSource(view, raw, parents);
    } catch (err) {
      items.push({ source: raw, named: relOf(raw), error: (err as Error).message, parentDirs: [], entries: [] });
      continue;
    }
    for (const x of expanded) {
      const item: SelectedItem = { source: raw, named: x.named, parentDirs: [], entries: [] };
      if (parents) item.keep = x.keep;
      const isDir = view.type(x.resolved) === 'dir';
      // A wildcard match is itself subject to --exclude; a source the user named never is.
      if (exclude && x.excludeRel !== '') {
        if (exclude.match(x.excludeRel).matched && !(isDir && exclude.mayIncludeBelow(x.excludeRel))) continue;
      }
      try {
        if (parents) {
          const comps = x.keep === '' ? [] : x.keep.split('/');
          let srcDir = x.keepBase;
          const upTo = isDir ? comps.length : comps.length - 1;
          for (let i = 0; i < upTo; i++) {
            srcDir = srcDir === '' ? comps[i]! : `${srcDir}/${comps[i]}`;
            const dir = view.resolve(srcDir);
            if (view.type(dir) !== 'dir') throw new Error(`${dir} is not a directory`);
            item.parentDirs.push(dir);
          }
        }
      } catch (err) {
        item.error = (err as Error).message;
      }
      tree(view, exclude, x.resolved, x.resolved, '', undefined, true, item.entries);
      items.push(item);
    }
  }

  // One item reading the whole walk (COPY . with nothing excluded): its entries are distinct context
  // paths (a tree visits each once) and as many as the walk's, so it reads every one, in walk order.
  const only = items.length === 1 ? items[0]! : undefined;
  if (only !== undefined && only.parentDirs.length === 0 && only.entries.length - (only.entries[0]?.path === '' ? 1 : 0) === entries.length) {
    return { items, entries: [...entries], context: entries };
  }
  const read = new Set<string>();
  for (const it of items) {
    for (const d of it.parentDirs) read.add(d);
    for (const e of it.entries) read.add(e.path);
  }
  return { items, entries: entries.filter((e) => read.has(e.path)), context: entries };
}

/**
 * fileop's TreeCopier.copy, reading instead of writing. The paths pushed are the walk's own strings
 * (not made again from a parent's path and a name): the maps keyed by them find them at once.
 */
function tree(
  view: EntriesView,
  exclude: PatternMatcher | undefined,
  itemRoot: string,
  srcRel: string,
  excludeRel: string,
  parentInfo: MatchInfo | undefined,
  top: boolean,
  out: SelectedEntry[],
  entry: ContextEntry | undefined = srcRel === '' ? undefined : view.entry(srcRel),
): void {
  const type: Kind | undefined = srcRel === '' ? 'dir' : entry?.type;
  if (type === undefined) return;
  let info = parentInfo;
  if (exclude && excludeRel !== '') {
    const r = exclude.match(excludeRel, parentInfo);
    if (r.matched && !(type === 'dir' && exclude.mayIncludeBelow(excludeRel))) return;
    info = r.info;
  }
  const rel = srcRel === itemRoot ? '' : itemRoot === '' ? srcRel : srcRel.slice(itemRoot.length + 1);
  out.push({ path: srcRel, rel, meta: type !== 'dir' || !top });
  if (type !== 'dir') return;
  for (const child of view.children(srcRel)) {
    const childExclude = exclude ? (excludeRel === '' ? nameOf(child) : `${excludeRel}/${nameOf(child)}`) : '';
    tree(view, exclude, itemRoot, child.path, childExclude, info, false, out, child);
  }
}
