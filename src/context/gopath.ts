// Go's path rules that Docker's pattern handling is written in terms of: filepath.Clean and the
// syntax of filepath.Match. Both the .dockerignore matcher and COPY's wildcards need them, and a JS
// glob library would differ in the corners (braces, extglobs, dotfiles, `!` classes), so they are
// written out here once.

/** Go's path.Clean for slash-separated paths: "" -> ".", no trailing slash, ".." resolved lexically. */
export function cleanPath(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const comp of p.split('/')) {
    if (comp === '' || comp === '.') continue;
    if (comp === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(comp);
  }
  const joined = out.join('/');
  if (rooted) return '/' + joined;
  return joined === '' ? '.' : joined;
}

export class BadPatternError extends Error {
  constructor(
    readonly pattern: string,
    detail: string,
  ) {
    super(`syntax error in pattern ${JSON.stringify(pattern)}: ${detail}`);
    this.name = 'BadPatternError';
  }
}

/** True when `s` has an unescaped `*`, `?` or `[` (BuildKit's containsWildcards). */
export function hasWildcards(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') i++;
    else if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}

function lit(ch: string): string {
  return `\\u{${ch.codePointAt(0)!.toString(16)}}`;
}

/**
 * Translates one filepath.Match pattern (for one path element or a slash path) into the body of a
 * JS regular expression: `*` is any run of non-`/`, `?` one non-`/` character, `[...]` a class with
 * `^` negation and ranges, `\` escapes the next character. Malformed patterns throw BadPatternError,
 * as Go's Match returns ErrBadPattern for them.
 */
export function goMatchRegexBody(pattern: string): string {
  const chars = Array.from(pattern); // code points, as Go's Match works on runes
  let out = '';
  let i = 0;
  const bad = (detail: string): never => {
    throw new BadPatternError(pattern, detail);
  };
  while (i < chars.length) {
    const c = chars[i]!;
    if (c === '*') {
      out += '[^/]*';
      i++;
    } else if (c === '?') {
      out += '[^/]';
      i++;
    } else if (c === '\\') {
      if (i + 1 >= chars.length) bad('trailing backslash');
      out += lit(chars[i + 1]!);
      i += 2;
    } else if (c === '[') {
      i++;
      let cls = '[';
      if (chars[i] === '^') {
        cls += '^';
        i++;
      }
      let ranges = 0;
      for (;;) {
        if (i >= chars.length) bad('unterminated character class');
        if (chars[i] === ']' && ranges > 0) {
          i++;
          break;
        }
        const readChar = (): string => {
          let ch = chars[i];
          if (ch === undefined || ch === '-' || ch === ']') bad('bad character class');
          if (ch === '\\') {
            i++;
            ch = chars[i];
            if (ch === undefined) bad('trailing backslash in character class');
          }
          i++;
          return ch!;
        };
        const lo = readChar();
        if (chars[i] === '-') {
          i++;
          const hi = readChar();
          if (hi.codePointAt(0)! < lo.codePointAt(0)!) bad('inverted range in character class');
          cls += `${lit(lo)}-${lit(hi)}`;
        } else {
          cls += lit(lo);
        }
        ranges++;
      }
      // Go's Match lets a class (negated too) match any character, the separator included.
      out += cls + ']';
    } else {
      out += lit(c);
      i++;
    }
  }
  return out;
}

/** Compiles a filepath.Match pattern into an anchored RegExp (throws BadPatternError). */
export function compileGoMatch(pattern: string): RegExp {
  return new RegExp(`^${goMatchRegexBody(pattern)}$`, 'u');
}

/** Go's filepath.Match(pattern, name) (throws BadPatternError on a malformed pattern). */
export function goMatch(pattern: string, name: string): boolean {
  return compileGoMatch(pattern).test(name);
}
