// How COPY/ADD read a source path: the rules the copy itself (fileop) and the cache key of what it
// reads (cache/checksum-select) must share exactly, or a key could miss what a copy takes.

import { cleanPath, hasWildcards } from './gopath.js';

/** Splits a cleaned relative path at its first element with a wildcard: "a/b*" / "c" -> fixed ["a"], pattern ["b*", "c"]. */
export function splitWildcards(rel: string): { fixed: string[]; pattern: string[] } {
  const parts = rel === '' ? [] : rel.split('/');
  const i = parts.findIndex(hasWildcards);
  return i === -1 ? { fixed: parts, pattern: [] } : { fixed: parts.slice(0, i), pattern: parts.slice(i) };
}

/** --parents: "a/./b/c" keeps "b/c" (the "/./" pivot); without a pivot the whole path is kept. */
export function splitPivot(raw: string): { base: string; rest: string } {
  const s = raw.replace(/^(\.\/)+/, '');
  const i = s.indexOf('/./');
  if (i === -1) return { base: '', rest: s };
  return { base: s.slice(0, i), rest: s.slice(i + 3) };
}

/** A source path as a clean path relative to the source root ("" for the root itself; ".." clamped). */
export function relOf(p: string): string {
  const c = cleanPath('/' + p);
  return c === '/' ? '' : c.slice(1);
}
