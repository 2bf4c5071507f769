// .dockerignore patterns with Docker's exact semantics (moby/patternmatcher and its ignorefile
// reader), used for the build context walk and for COPY --exclude.
//
// Why not minimatch: Docker's rules differ from a shell glob in ways that change results —
//  - `**` is a plain regexp `(.*/)?` or `.*`, so `a**` matches `abc/def` and `**` may match within a
//    name; a trailing `/**` is a string-prefix test, a leading `**/x` a suffix test;
//  - `*` and `?` match dotfiles (no special leading-dot rule);
//  - braces `{a,b}`, extglobs `+(x)` and `!(x)` are literal text, and `!` only means "exception"
//    at the start of a line;
//  - a pattern also matches every path below a matching directory (parent matching), with later
//    lines winning, which is per-pattern bookkeeping a glob library does not expose.
// So the translation is written here against patternmatcher's documented behaviour.

import { BadPatternError, cleanPath } from './gopath.js';

export class IgnorePatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IgnorePatternError';
  }
}

/**
 * Reads an ignore file the way Docker does (ignorefile.ReadAll): a UTF-8 BOM is dropped, lines
 * starting with `#` are comments, whitespace is trimmed, patterns are cleaned, a leading `/` is
 * removed (also after `!`), and blank lines vanish.
 */
export function parseIgnoreFile(text: string): string[] {
  const out: string[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (const line of lines) {
    if (line.startsWith('#')) continue;
    let pattern = line.trim();
    if (pattern === '') continue;
    const invert = pattern.startsWith('!');
    if (invert) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = cleanPath(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    out.push(invert ? '!' + pattern : pattern);
  }
  return out;
}

type MatchKind = 'exact' | 'prefix' | 'suffix' | 'regexp';

export interface Pattern {
  /** The cleaned pattern without its `!`. */
  readonly text: string;
  /** True for `!pattern` lines: a match re-includes. */
  readonly exclusion: boolean;
  readonly kind: MatchKind;
  readonly regexp?: RegExp;
}

function lit(ch: string): string {
  return `\\u{${ch.codePointAt(0)!.toString(16)}}`;
}

/** Reads a `[...]` class starting at chars[i] === '['; returns the regexp class and the next index. */
function readClass(chars: string[], start: number, pattern: string): [string, number] {
  let i = start + 1;
  let cls = '[';
  if (chars[i] === '^') {
    cls += '^';
    i++;
  }
  let n = 0;
  for (;;) {
    const c = chars[i];
    if (c === undefined) throw new BadPatternError(pattern, 'unterminated character class');
    if (c === ']' && n > 0) return [cls + ']', i + 1];
    let ch = c;
    if (ch === '\\') {
      i++;
      ch = chars[i] ?? '';
      if (ch === '') throw new BadPatternError(pattern, 'trailing backslash in character class');
    }
    if (ch === '-' && c !== '\\' && n > 0 && chars[i + 1] !== ']') {
      cls += '-';
    } else {
      cls += lit(ch);
    }
    i++;
    n++;
  }
}

/** patternmatcher's Pattern.compile, translated: the kind of match and, for regexps, the expression. */
function compile(text: string): Pattern & { exclusion: false } {
  const chars = Array.from(text);
  let re = '^';
  let kind: MatchKind = 'exact';
  let i = 0;
  for (let iter = 0; i < chars.length; iter++) {
    const ch = chars[i++]!;
    if (ch === '*') {
      if (chars[i] === '*') {
        i++;
        if (chars[i] === '/') i++; // "**/" is treated as "**"
        if (i >= chars.length) {
          // Trailing "**": a prefix test when nothing before it needed a regexp.
          if (kind === 'exact') kind = 'prefix';
          else {
            re += '.*';
            kind = 'regexp';
          }
        } else {
          re += '(.*/)?';
          kind = 'regexp';
        }
        if (iter === 0) kind = 'suffix';
      } else {
        re += '[^/]*';
        kind = 'regexp';
      }
    } else if (ch === '?') {
      re += '[^/]';
      kind = 'regexp';
    } else if (ch === '\\') {
      if (i < chars.length) {
        re += lit(chars[i++]!);
        kind = 'regexp';
      } else {
        throw new BadPatternError(text, 'trailing backslash');
      }
    } else if (ch === '[') {
      const [cls, next] = readClass(chars, i - 1, text);
      re += cls;
      i = next;
      kind = 'regexp';
    } else {
      re += lit(ch);
    }
  }
  if (kind === 'regexp') {
    let regexp: RegExp;
    try {
      regexp = new RegExp(re + '$', 'u');
    } catch (err) {
      throw new BadPatternError(text, (err as Error).message);
    }
    return { text, exclusion: false, kind, regexp };
  }
  return { text, exclusion: false, kind };
}

function matchOne(p: Pattern, path: string): boolean {
  switch (p.kind) {
    case 'exact':
      return path === p.text;
    case 'prefix':
      return path.startsWith(p.text.slice(0, -2));
    case 'suffix': {
      const suffix = p.text.slice(2);
      if (path.endsWith(suffix)) return true;
      // "**/foo" matches "foo" itself.
      return suffix.startsWith('/') && path === suffix.slice(1);
    }
    case 'regexp':
      return p.regexp!.test(path);
  }
}

/** Per-pattern results for a directory, handed to its children (patternmatcher's MatchInfo). */
export type MatchInfo = readonly boolean[];

/** Trailing "/**" or "/*" removed: what fsutil compares directory prefixes against. */
function withoutTrailingGlob(text: string): string {
  if (text.endsWith('/**')) return text.slice(0, -3);
  if (text.endsWith('/*')) return text.slice(0, -2);
  return text;
}

export class PatternMatcher {
  readonly patterns: readonly Pattern[];
  /** True when some pattern is a `!` exception. */
  readonly hasExclusions: boolean;
  /** True when every exception is a plain path (maybe ending in /* or /**): fsutil may then skip
   * an excluded directory unless an exception names something inside it. */
  readonly onlyPrefixExceptions: boolean;

  /** Compiles patterns as patternmatcher.New does (trimmed, cleaned, `!` split off); throws on bad syntax. */
  constructor(lines: readonly string[]) {
    const patterns: Pattern[] = [];
    for (const line of lines) {
      let p = line.trim();
      if (p === '') continue;
      p = cleanPath(p);
      let exclusion = false;
      if (p.startsWith('!')) {
        if (p.length === 1) throw new IgnorePatternError('illegal exclusion pattern: "!"');
        exclusion = true;
        p = p.slice(1);
      }
      try {
        patterns.push({ ...compile(p), exclusion });
      } catch (err) {
        if (err instanceof BadPatternError) throw new IgnorePatternError(err.message);
        throw err;
      }
    }
    this.patterns = patterns;
    this.hasExclusions = patterns.some((p) => p.exclusion);
    this.onlyPrefixExceptions = patterns.every((p) => !p.exclusion || !/[*[\]?^\\]/.test(withoutTrailingGlob(p.text)));
  }

  /**
   * Whether `path` (slash-separated, relative, clean) is excluded, given its parent directory's
   * MatchInfo (undefined at the top or when unknown: parents are then checked lexically).
   * Later patterns win; a pattern that matched a parent directory matches everything below it.
   */
  match(path: string, parent?: MatchInfo): { matched: boolean; info: MatchInfo } {
    const info: boolean[] = new Array(this.patterns.length).fill(false);
    let matched = false;
    const known = parent !== undefined && parent.length === this.patterns.length && parent.length > 0;
    this.patterns.forEach((p, i) => {
      let m = known ? parent[i]! : false;
      if (!m) {
        // Only patterns that could change the verdict are evaluated, as patternmatcher does; their
        // unevaluated state (false) is what children inherit.
        if (p.exclusion !== matched) return;
        m = matchOne(p, path);
        if (!m && !known) m = this.parentMatches(p, path);
      }
      info[i] = m;
      if (m) matched = !p.exclusion;
    });
    return { matched, info };
  }

  private parentMatches(p: Pattern, path: string): boolean {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (matchOne(p, parts.slice(0, i).join('/'))) return true;
    }
    return false;
  }

  /** patternmatcher's MatchesOrParentMatches: the verdict for one path without walk state. */
  matches(path: string): boolean {
    const clean = cleanPath(path);
    if (clean === '.') return false;
    return this.match(clean).matched;
  }

  /**
   * For an excluded directory: may something inside it be re-included, so the walk must go in?
   * Mirrors fsutil: with only plain-path exceptions, go in only when an exception lies below `dir`;
   * with glob exceptions, always go in.
   */
  mayIncludeBelow(dir: string): boolean {
    if (!this.hasExclusions) return false;
    if (!this.onlyPrefixExceptions) return true;
    const dirSlash = dir + '/';
    return this.patterns.some((p) => p.exclusion && (withoutTrailingGlob(p.text) + '/').startsWith(dirSlash));
  }
}
