// Variable substitution in Dockerfile words, following BuildKit's shell lexer (frontend/dockerfile/shell).
//
// This is not a shell: there is no command substitution, globbing or arithmetic. It does exactly what
// BuildKit does to the arguments of ENV/ARG/LABEL/COPY/WORKDIR/FROM/...: remove quotes, process the
// escape character, and expand $VAR / ${VAR...} forms. Where BuildKit has quirks (they are part of what a
// Dockerfile means), they are reproduced on purpose and marked "quirk" below, because a builder that
// expands a word differently from BuildKit produces a different image from the same Dockerfile.
//
// The scanner walks code points (like Go's text/scanner), so names and whitespace are Unicode-aware.

export type EscapeChar = '\\' | '`';

/** Looks a variable up; undefined means "not set" (distinct from set to ""). */
export type VarLookup = (name: string) => string | undefined;

export interface WordResult {
  result: string;
  /** Variables that were referenced and set. */
  matched: Set<string>;
  /** Variables that were referenced but not set (for the UndefinedVar lint rule). */
  unmatched: Set<string>;
}

export interface WordsResult {
  words: string[];
  matched: Set<string>;
  unmatched: Set<string>;
}

/**
 * BuildKit's less common lexer modes. The defaults are what instructions use; the others exist for
 * heredoc bodies and partial expansion (BuildKit's Lex.RawQuotes / RawEscapes / SkipProcessQuotes /
 * SkipUnsetEnv).
 */
export interface LexOptions {
  /** Keep quote characters in the output (their content is still treated as quoted). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  rawEscapes?: boolean;
  /** Treat ' and " as ordinary characters. */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written ($X, ${X}, ${X:-w}...) instead of expanding them. */
  skipUnsetEnv?: boolean;
}

export class ShellLexError extends Error {
  override name = 'ShellLexError';
  /** The word being processed when the error happened. */
  word: string;
  /** The message without the "failed to process" prefix (the part a user needs to fix). */
  detail: string;
  constructor(word: string, detail: string) {
    super(`failed to process ${JSON.stringify(word)}: ${detail}`);
    this.word = word;
    this.detail = detail;
  }
}

/** Expands one word (quotes removed, escapes processed), as ENV/LABEL/COPY/WORKDIR... do. */
export function processWord(word: string, lookup: VarLookup, escape: EscapeChar = '\\', opts: LexOptions = {}): WordResult {
  if (isPlain(word, escape)) return { result: word, matched: new Set(), unmatched: new Set() };
  const r = run(word, lookup, escape, opts, false);
  return { result: r.result, matched: r.matched, unmatched: r.unmatched };
}

/**
 * Expands and splits into words on unquoted whitespace (used where one argument may become several).
 * As in BuildKit, the text a $-expansion produces is split too unless it sits inside double quotes, and a
 * word that ends up empty is dropped even if it was quoted ("" alone gives no word).
 */
export function processWords(word: string, lookup: VarLookup, escape: EscapeChar = '\\', opts: LexOptions = {}): WordsResult {
  if (isPlain(word, escape)) return { words: splitOnSpace(word), matched: new Set(), unmatched: new Set() };
  const r = run(word, lookup, escape, opts, true);
  return { words: r.words, matched: r.matched, unmatched: r.unmatched };
}

// ---- fast path -----------------------------------------------------------------------------------------

/** Most words have nothing to expand; they skip the scanner entirely. */
function isPlain(word: string, escape: EscapeChar): boolean {
  for (let i = 0; i < word.length; i++) {
    const c = word.charCodeAt(i);
    // $ ' " escape, and a leading BOM (Go's scanner drops it)
    if (c === 0x24 || c === 0x27 || c === 0x22 || c === escape.charCodeAt(0) || c === 0xfeff) return false;
  }
  return true;
}

function splitOnSpace(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (const ch of s) {
    if (isSpace(ch.codePointAt(0)!)) {
      if (cur !== '') out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur !== '') out.push(cur);
  return out;
}

// ---- character classes (Go's unicode.IsSpace / IsLetter / IsDigit) ------------------------------------

const EOF = -1;
const CH_DOLLAR = 0x24;
const CH_SQUOTE = 0x27;
const CH_DQUOTE = 0x22;
const CH_LBRACE = 0x7b;
const CH_RBRACE = 0x7d;
const CH_COLON = 0x3a;
const CH_SLASH = 0x2f;

const LETTER_RE = /\p{L}/u;
const DIGIT_RE = /\p{Nd}/u;

function isSpace(c: number): boolean {
  if (c <= 0xff) return c === 0x20 || (c >= 0x09 && c <= 0x0d) || c === 0x85 || c === 0xa0;
  return c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000;
}

function isDigit(c: number): boolean {
  if (c < 0x80) return c >= 0x30 && c <= 0x39;
  return DIGIT_RE.test(String.fromCodePoint(c));
}

function isLetter(c: number): boolean {
  if (c < 0x80) return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  return LETTER_RE.test(String.fromCodePoint(c));
}

function isNameChar(c: number): boolean {
  return c === 0x5f || isLetter(c) || isDigit(c);
}

/** POSIX special parameters: $@ $* $# $? $- $$ $! $0. BuildKit reads them as one-character names. */
function isSpecialParam(c: number): boolean {
  return c === 0x40 || c === 0x2a || c === 0x23 || c === 0x3f || c === 0x2d || c === 0x24 || c === 0x21 || c === 0x30;
}

// ---- word splitting -----------------------------------------------------------------------------------

/**
 * Accumulates words as the lexer emits text. "Raw" text (quoted or escaped) never splits; plain text and
 * unquoted expansions split on whitespace. Empty words are dropped, as BuildKit does.
 */
class WordSplitter {
  words: string[] = [];
  private word = '';

  addChar(c: number): void {
    if (isSpace(c)) {
      if (this.word !== '') {
        this.words.push(this.word);
        this.word = '';
      }
    } else this.word += String.fromCodePoint(c);
  }

  addString(s: string): void {
    for (const ch of s) this.addChar(ch.codePointAt(0)!);
  }

  addRaw(s: string): void {
    this.word += s;
  }

  finish(): string[] {
    if (this.word !== '') {
      this.words.push(this.word);
      this.word = '';
    }
    return this.words;
  }
}

// ---- the lexer ----------------------------------------------------------------------------------------

/** Raised inside the lexer; turned into a ShellLexError naming the whole word at the top. */
class LexFail extends Error {}

function run(word: string, lookup: VarLookup, escape: EscapeChar, opts: LexOptions, split: boolean) {
  const lx = new Lexer(word, lookup, escape.codePointAt(0)!, opts);
  const splitter = split ? new WordSplitter() : null;
  let result: string;
  try {
    result = lx.processStopOn(EOF, opts.rawEscapes === true, splitter);
  } catch (e) {
    if (e instanceof LexFail) throw new ShellLexError(word, e.message);
    throw e;
  }
  return { result, words: splitter ? splitter.finish() : [], matched: lx.matched, unmatched: lx.unmatched };
}

class Lexer {
  matched = new Set<string>();
  unmatched = new Set<string>();
  private pos = 0;
  private readonly rawQuotes: boolean;
  private readonly skipQuotes: boolean;
  private readonly skipUnset: boolean;

  constructor(
    private readonly src: string,
    private readonly lookup: VarLookup,
    private readonly escape: number,
    opts: LexOptions,
  ) {
    this.rawQuotes = opts.rawQuotes === true;
    this.skipQuotes = opts.skipProcessQuotes === true;
    this.skipUnset = opts.skipUnsetEnv === true;
    // Go's text/scanner ignores a byte-order mark at the start of its input.
    if (src.charCodeAt(0) === 0xfeff) this.pos = 1;
  }

  private peek(): number {
    return this.pos < this.src.length ? this.src.codePointAt(this.pos)! : EOF;
  }

  private next(): number {
    if (this.pos >= this.src.length) return EOF;
    const c = this.src.codePointAt(this.pos)!;
    this.pos += c > 0xffff ? 2 : 1;
    return c;
  }

  private atEOF(): boolean {
    return this.pos >= this.src.length;
  }

  private getEnv(name: string): string | undefined {
    const v = this.lookup(name);
    if (v === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return v;
  }

  /**
   * Processes text until `stop` (consumed) or the end of input. `rawEscapes` keeps escape characters in
   * the output: BuildKit uses it for glob patterns, so that \* still means a literal star there.
   */
  processStopOn(stop: number, rawEscapes: boolean, words: WordSplitter | null): string {
    let result = '';
    while (!this.atEOF()) {
      let c = this.peek();
      if (stop !== EOF && c === stop) {
        this.next();
        return result;
      }
      if (c === CH_DOLLAR) {
        const tmp = this.processDollar();
        result += tmp;
        words?.addString(tmp); // unquoted expansions are split
        continue;
      }
      if (!this.skipQuotes && (c === CH_SQUOTE || c === CH_DQUOTE)) {
        const tmp = c === CH_SQUOTE ? this.processSingleQuote() : this.processDoubleQuote(rawEscapes);
        result += tmp;
        words?.addRaw(tmp);
        continue;
      }
      c = this.next();
      if (c === this.escape) {
        if (rawEscapes) {
          const e = String.fromCodePoint(c);
          words?.addRaw(e);
          result += e;
        }
        c = this.next();
        if (c === EOF) break; // an escape at the very end is dropped
        const s = String.fromCodePoint(c);
        words?.addRaw(s);
        result += s;
      } else {
        words?.addChar(c);
        result += String.fromCodePoint(c);
      }
    }
    if (stop !== EOF) throw new LexFail(`unexpected end of statement while looking for matching ${String.fromCodePoint(stop)}`);
    return result;
  }

  /** '...': everything literal up to the next single quote; there is no way to escape one inside. */
  private processSingleQuote(): string {
    this.next();
    let result = this.rawQuotes ? "'" : '';
    for (;;) {
      const c = this.next();
      if (c === EOF) throw new LexFail('unexpected end of statement while looking for matching single-quote');
      if (c === CH_SQUOTE) return this.rawQuotes ? result + "'" : result;
      result += String.fromCodePoint(c);
    }
  }

  /**
   * "...": $ expands; the escape character only escapes ", $ and itself, otherwise it stays literal.
   * Backquotes get no special meaning (there is no command substitution).
   */
  private processDoubleQuote(rawEscapes: boolean): string {
    this.next();
    let result = this.rawQuotes ? '"' : '';
    for (;;) {
      const p = this.peek();
      if (p === EOF) throw new LexFail('unexpected end of statement while looking for matching double-quote');
      if (p === CH_DQUOTE) {
        this.next();
        return this.rawQuotes ? result + '"' : result;
      }
      if (p === CH_DOLLAR) {
        result += this.processDollar();
        continue;
      }
      let c = this.next();
      if (c === this.escape) {
        // quirk: with rawEscapes, an escape that escapes nothing is written twice (BuildKit does this).
        if (rawEscapes) result += String.fromCodePoint(c);
        const n = this.peek();
        if (n === EOF) continue; // then fails as an unterminated quote
        if (n === CH_DQUOTE || n === CH_DOLLAR || n === this.escape) c = this.next();
      }
      result += String.fromCodePoint(c);
    }
  }

  /** Reads a variable name: letters/digits/_, or all-digits ($10 is "10"), or one special parameter. */
  private processName(): string {
    let name = '';
    while (!this.atEOF()) {
      const c = this.peek();
      if (name === '' && isDigit(c)) {
        while (!this.atEOF() && isDigit(this.peek())) name += String.fromCodePoint(this.next());
        return name;
      }
      if (name === '' && isSpecialParam(c)) return String.fromCodePoint(this.next());
      if (!isNameChar(c)) break;
      name += String.fromCodePoint(this.next());
    }
    return name;
  }

  /** Runs a nested processStopOn for the inside of ${...}, with BuildKit's wording for running off the end. */
  private nested(stop: number, rawEscapes: boolean, eofMessage: string): string {
    try {
      return this.processStopOn(stop, rawEscapes, null);
    } catch (e) {
      if (e instanceof LexFail && this.atEOF()) throw new LexFail(eofMessage);
      throw e;
    }
  }

  private processDollar(): string {
    this.next(); // $
    if (this.peek() !== CH_LBRACE) {
      const name = this.processName();
      if (name === '') return '$'; // "$" before a non-name character stays literal
      const v = this.getEnv(name);
      if (v === undefined && this.skipUnset) return '$' + name;
      return v ?? '';
    }

    this.next(); // {
    const first = this.peek();
    if (first === EOF) throw new LexFail("syntax error: missing '}'");
    if (first === CH_LBRACE || first === CH_RBRACE || first === CH_COLON) throw new LexFail('syntax error: bad substitution');

    const name = this.processName();
    let ch = this.next();
    if (ch === EOF) throw new LexFail("syntax error: missing '}'");
    let chs = String.fromCodePoint(ch);

    if (ch === CH_RBRACE) {
      const v = this.getEnv(name);
      if (v === undefined && this.skipUnset) return '${' + name + '}';
      return v ?? '';
    }

    if (ch === CH_SLASH) return this.processReplace(name);

    let nullIsUnset = false;
    if (ch === CH_COLON) {
      nullIsUnset = true;
      ch = this.next();
      chs += ch === EOF ? '' : String.fromCodePoint(ch);
    } else if (!'+-?#%'.includes(chs)) {
      throw new LexFail(`unsupported modifier (${chs}) in substitution`);
    }

    // The word part may itself contain quotes and expansions. Patterns keep their escapes.
    const op = ch === EOF ? '' : String.fromCodePoint(ch);
    let word = this.nested(CH_RBRACE, op === '#' || op === '%', "syntax error: missing '}'");

    // quirk: the variable is looked up (and recorded as used) before an unsupported modifier is reported.
    const value = this.getEnv(name);
    if (value === undefined && this.skipUnset) return '${' + name + chs + word + '}';
    const empty = value === undefined || (nullIsUnset && value === '');

    switch (op) {
      case '-':
        return empty ? word : value!;
      case '+':
        return empty ? '' : word;
      case '?': {
        if (value === undefined) throw new LexFail(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
        if (nullIsUnset && value === '') throw new LexFail(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
        return value;
      }
      case '#':
      case '%': {
        // # / % remove the shortest match, ## / %% the longest.
        let greedy = false;
        if (word.startsWith(op)) {
          greedy = true;
          word = word.slice(1);
        }
        return op === '%' ? trimSuffix(word, value ?? '', greedy) : trimPrefix(word, value ?? '', greedy);
      }
      default:
        throw new LexFail(`unsupported modifier (${chs}) in substitution`);
    }
  }

  /** ${v/pat/repl} replaces the first (longest) match of pat, ${v//pat/repl} every match. */
  private processReplace(name: string): string {
    const all = this.peek() === CH_SLASH;
    if (all) this.next();
    const pattern = this.nested(CH_SLASH, true, "syntax error: missing '/' in ${}");
    const replacement = this.nested(CH_RBRACE, true, "syntax error: missing '}'");

    const value = this.getEnv(name);
    if (value === undefined && this.skipUnset) return '${' + name + '/' + pattern + '/' + replacement + '}';

    const re = compilePattern(pattern, true, false, all);
    const v = value ?? '';
    if (all) return replaceAllGo(re, v, replacement);
    re.lastIndex = 0;
    const m = re.exec(v);
    if (!m) return v;
    return v.slice(0, m.index) + replacement + v.slice(m.index + m[0].length);
  }
}

// ---- shell patterns -----------------------------------------------------------------------------------

const REGEX_SPECIAL = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);

/**
 * Converts a shell pattern (* any string, ? one character, \ escapes * ? \) to a RegExp with the same
 * leftmost-first semantics BuildKit gets from Go's regexp. No bracket expressions, as in BuildKit.
 * A \ before } or / is dropped (it was only there to keep the character out of the ${} syntax); any other
 * escape is an error. "Any character" excludes newline, like Go's `.`.
 */
function compilePattern(pattern: string, greedy: boolean, anchored: boolean, global: boolean): RegExp {
  const cps = Array.from(pattern);
  let out = anchored ? '^' : '';
  const star = greedy ? '[^\\n]*' : '[^\\n]*?';
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!;
    if (c === '*') out += star;
    else if (c === '?') out += '[^\\n]';
    else if (c === '\\') {
      const n = cps[i + 1];
      if (n === '}' || n === '/') continue;
      if (n !== '*' && n !== '?' && n !== '\\') {
        const what = n === undefined ? '\\ at the end' : `\\${n}`;
        throw new LexFail(`invalid pattern (${pattern}) in substitution: invalid escape '${what}'`);
      }
      out += '\\' + n;
      i++;
    } else out += REGEX_SPECIAL.has(c) ? '\\' + c : c;
  }
  return new RegExp(out, global ? 'gu' : 'u');
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = compilePattern(pattern, greedy, true, false).exec(value);
  return m ? value.slice(m[0].length) : value;
}

/**
 * Shortest/longest suffix removal. A regex finds leftmost matches, so (like BuildKit) both the value and
 * the pattern are reversed and the problem becomes a prefix removal. Escape pairs keep their order.
 */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

function reverseString(s: string): string {
  return Array.from(s).reverse().join('');
}

function reversePattern(pattern: string): string {
  const cps = Array.from(pattern);
  const out: string[] = [];
  for (let i = 0; i < cps.length; ) {
    if (cps[i] === '\\' && i !== cps.length - 1) {
      out.push(cps[i]! + cps[i + 1]!);
      i += 2;
    } else {
      out.push(cps[i]!);
      i++;
    }
  }
  return out.reverse().join('');
}

/**
 * Go's Regexp.ReplaceAllString, which differs from String.replace in two ways BuildKit inherits:
 * an empty match right after a previous match is not replaced, and the replacement is a template where
 * $0 / ${0} is the match, $$ is "$", and any other $name is empty (our patterns have no groups).
 */
function replaceAllGo(re: RegExp, src: string, template: string): string {
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length) {
    re.lastIndex = searchPos;
    const m = re.exec(src);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    out += src.slice(lastMatchEnd, start);
    if (end > lastMatchEnd || start === 0) out += expandGoTemplate(template, m[0]);
    lastMatchEnd = end;
    // Always advance at least one character.
    const width = searchPos < src.length ? (src.codePointAt(searchPos)! > 0xffff ? 2 : 1) : 0;
    if (searchPos + width > end) searchPos += width;
    else if (searchPos + 1 > end) searchPos++;
    else searchPos = end;
  }
  return out + src.slice(lastMatchEnd);
}

function expandGoTemplate(template: string, match: string): string {
  if (!template.includes('$')) return template;
  let out = '';
  let i = 0;
  while (i < template.length) {
    const d = template.indexOf('$', i);
    if (d < 0) break;
    out += template.slice(i, d);
    i = d + 1;
    if (template[i] === '$') {
      out += '$';
      i++;
      continue;
    }
    let j = i;
    const brace = template[j] === '{';
    if (brace) j++;
    const nameStart = j;
    while (j < template.length) {
      const c = template.codePointAt(j)!;
      if (!isNameChar(c)) break;
      j += c > 0xffff ? 2 : 1;
    }
    const name = template.slice(nameStart, j);
    if (name === '' || (brace && template[j] !== '}')) {
      out += '$'; // malformed: the $ is literal text
      continue;
    }
    if (brace) j++;
    i = j;
    if (name === '0') out += match; // the only group there is; every other reference expands to nothing
  }
  return out + template.slice(i);
}
