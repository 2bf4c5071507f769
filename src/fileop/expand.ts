// What one COPY/ADD source names: the source as written cleaned inside the source root, --parents'
// "/./" pivot, and wildcards matched per path element with Go's filepath.Match, descending only
// into real directories (links are not followed while matching, as fsutil's walk); each match, and
// a plain source, is then followed through symlinks inside the root.
//
// Written once as a generator that asks its questions of the tree ("resolve this path", "what is
// here", "which names are in this directory") instead of doing I/O, the way fsutil/rootpath's
// resolution walk is: the copy (fileop/copy.ts, over the disk) and the cache key of what a copy
// reads (cache/checksum-select.ts, over the context walk's entry list) drive the same walk, so the
// key cannot select other paths than the copy copies. It lives beside the copy rather than in
// fsutil (beside rootpath) because it needs the context room's Go matcher, and context sits above
// fsutil.

import { compileGoMatch } from '../context/gopath.js';
import { relOf, splitPivot, splitWildcards } from '../context/source-paths.js';

/** What kind of entry is at a path: only directories matter to the walk. */
export type EntryKind = 'dir' | 'other';

/** A question the walk asks of the tree; the answer is sent back into the generator. */
export type ExpandQuestion =
  /** -> the clean relative path `path` resolves to, following symlinks inside the root. */
  | { ask: 'resolve'; path: string }
  /** -> the entry kind at a clean relative path ("" is the root), undefined when absent. */
  | { ask: 'kind'; rel: string }
  /** -> the visible names in a directory, byte-wise sorted. */
  | { ask: 'readdir'; rel: string };

/** The tree the walk asks, synchronously. */
export interface ExpandView {
  resolve(path: string): string;
  kind(rel: string): EntryKind | undefined;
  readdir(rel: string): string[];
}

/** One thing a source names: itself, or one match of its wildcard. */
export interface Expanded {
  /** As named or matched, clean and relative to the root, not followed ("" = the root). */
  named: string;
  /** `named` followed through symlinks. */
  resolved: string;
  /** --parents: the part of the path to recreate under the destination. */
  keep: string;
  /** The root-relative directory `keep` is relative to (for the parents' metadata). */
  keepBase: string;
  /** What --exclude matches the item itself against ("" = named by the user: never excluded). */
  excludeRel: string;
}

/** Why a source names nothing the copy can take; each user words it for its own messages. */
export class ExpandError extends Error {
  constructor(
    /** not-found: `path` does not exist; not-a-directory: the wildcard's fixed part `path` is not a directory. */
    readonly reason: 'not-found' | 'not-a-directory',
    /** Clean, relative to the root. */
    readonly path: string,
    /** The source, clean and relative (for not-a-directory messages). */
    readonly source: string,
  ) {
    super(reason === 'not-found' ? `/${path}: not found` : `/${source}: ${path || '/'} is not a directory`);
    this.name = 'ExpandError';
  }
}

/** The walk: one source as written -> what it names (none for a wildcard matching nothing). */
export function* expandSourceWalk(raw: string, parents: boolean): Generator<ExpandQuestion, Expanded[], unknown> {
  const pivot = parents ? splitPivot(raw) : { base: '', rest: raw };
  const keepBase = relOf(pivot.base);
  const rel = relOf(pivot.base === '' ? pivot.rest : `${pivot.base}/${pivot.rest}`);
  const keepOf = (r: string) => (keepBase === '' ? r : r.slice(keepBase.length + 1));
  const { fixed, pattern } = splitWildcards(rel);
  const resolve = function* (p: string): Generator<ExpandQuestion, string, unknown> {
    return (yield { ask: 'resolve', path: p }) as string;
  };
  const kind = function* (r: string): Generator<ExpandQuestion, EntryKind | undefined, unknown> {
    return (yield { ask: 'kind', rel: r }) as EntryKind | undefined;
  };

  if (pattern.length === 0) {
    const resolved = yield* resolve(rel);
    if ((yield* kind(resolved)) === undefined) throw new ExpandError('not-found', rel, rel);
    return [{ named: rel, resolved, keep: keepOf(rel), keepBase, excludeRel: '' }];
  }

  const fixedRel = fixed.join('/');
  const baseRel = yield* resolve(fixedRel);
  const baseKind = yield* kind(baseRel);
  if (baseKind === undefined) throw new ExpandError('not-found', fixedRel, rel);
  if (baseKind !== 'dir') throw new ExpandError('not-a-directory', fixedRel, rel);

  const regexps = pattern.map((p) => compileGoMatch(p));
  const matches: string[] = [];
  // Depth first in name order, so matches come in the order the copy takes them.
  const walk = function* (dirRel: string, namedPrefix: string, depth: number): Generator<ExpandQuestion, void, unknown> {
    const names = (yield { ask: 'readdir', rel: dirRel }) as string[];
    for (const name of names) {
      if (!regexps[depth]!.test(name)) continue;
      const childRel = dirRel === '' ? name : `${dirRel}/${name}`;
      const childNamed = namedPrefix === '' ? name : `${namedPrefix}/${name}`;
      if (depth === regexps.length - 1) {
        matches.push(childNamed);
        continue;
      }
      // Links are not followed while matching: only real directories are entered.
      if ((yield* kind(childRel)) === 'dir') yield* walk(childRel, childNamed, depth + 1);
    }
  };
  yield* walk(baseRel, fixedRel, 0);

  const out: Expanded[] = [];
  for (const m of matches) {
    const resolved = yield* resolve(m);
    if ((yield* kind(resolved)) === undefined) throw new ExpandError('not-found', m, rel); // a dangling link matched
    out.push({ named: m, resolved, keep: keepOf(m), keepBase, excludeRel: m.split('/').slice(fixed.length).join('/') });
  }
  return out;
}

/** Drives the walk over a synchronous view. Throws ExpandError, a bad pattern's error, or the view's. */
export function expandSource(view: ExpandView, raw: string, parents: boolean): Expanded[] {
  const gen = expandSourceWalk(raw, parents);
  let next = gen.next();
  while (!next.done) {
    const q = next.value;
    next = gen.next(q.ask === 'resolve' ? view.resolve(q.path) : q.ask === 'kind' ? view.kind(q.rel) : view.readdir(q.rel));
  }
  return next.value;
}
