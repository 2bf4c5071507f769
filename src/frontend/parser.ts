// The Dockerfile line parser: text -> one Node per instruction, following BuildKit's
// frontend/dockerfile/parser (line continuations, comments inside continuations, empty continuation
// lines, parser directives, heredocs, per-instruction argument splitting).
//
// Why not dockerfile-ast for this: it is a language-server parser and disagrees with BuildKit on
// cases that change what gets built (an escaped escape at end of line is not a continuation in
// BuildKit, heredocs are not recognised in JSON form, comment stripping inside continuations).
// The build must behave like `docker build`, so the scanner mirrors BuildKit's rules exactly.

import { InstructionError, fail } from './errors.js';

export type Escape = '\\' | '`';

export interface Heredoc {
  name: string;
  /** Raw lines between the opening line and the terminator, each with its line ending. */
  content: string;
  /** `<<-`: leading tabs are stripped from content and terminator. */
  chomp: boolean;
  /** False when the delimiter was quoted: the content is then taken literally. */
  expand: boolean;
  fd: number;
}

export interface Node {
  /** Instruction keyword as written ("run", "Run", "RUN"). */
  cmd: string;
  /** Lower-cased keyword used for dispatch. */
  lower: string;
  /** Builder flags ("--from=x"), already unquoted. */
  flags: string[];
  /** Arguments after the per-instruction splitting (see the parse* functions below). */
  args: string[];
  /** True when the arguments were a JSON array. */
  json: boolean;
  /** ENV/LABEL: whether each key/value pair used "=" (false = legacy "ENV k v"). */
  delims?: boolean[];
  /** ONBUILD: the wrapped instruction. */
  sub?: Node;
  /** The logical line (continuations joined), as BuildKit's Node.Original. */
  original: string;
  heredocs: Heredoc[];
  startLine: number; // 1-based
  endLine: number;
  /** Lines (1-based) of empty continuation lines inside this instruction. */
  emptyContinuationLines: number[];
}

export interface Directives {
  syntax?: string;
  escape: Escape;
  check?: string;
  /** 1-based line of each directive, for error messages. */
  lines: Record<string, number>;
}

export interface ParseResult {
  nodes: Node[];
  directives: Directives;
}

export class ParseError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

const reDirective = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const validDirectives = new Set(['syntax', 'escape', 'check']);
const reWhitespace = /[\t\v\f\r ]+/;
const heredocInstructions = new Set(['run', 'copy', 'add']);

function trimLeft(s: string): string {
  return s.replace(/^\s+/u, '');
}

function trimNewline(s: string): string {
  return s.replace(/[\r\n]+$/, '');
}

function isComment(line: string): boolean {
  return trimLeft(trimNewline(line)).startsWith('#');
}

function escapeRe(ch: Escape): string {
  return ch === '\\' ? '\\\\' : '`';
}

/** Splits text into lines that keep their line endings (BuildKit's scanLines). */
function splitLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (;;) {
    const i = text.indexOf('\n', start);
    if (i < 0) {
      if (start < text.length) out.push(text.slice(start));
      return out;
    }
    out.push(text.slice(start, i + 1));
    start = i + 1;
  }
}

export function parseDockerfile(input: string): ParseResult {
  const text = input.startsWith('\ufeff') ? input.slice(1) : input;
  const lines = splitLines(text);
  const directives: Directives = { escape: '\\', lines: {} };
  let directivesDone = false;
  let contRe = continuationRegex('\\');

  // Parser directives: only at the very top, before any comment, blank line or instruction.
  const possibleDirective = (line: string, lineNo: number) => {
    if (directivesDone) return;
    const m = reDirective.exec(line);
    if (!m) {
      directivesDone = true;
      return;
    }
    const k = m[1].toLowerCase();
    if (!validDirectives.has(k)) {
      directivesDone = true;
      return;
    }
    if (k in directives.lines) throw new ParseError(lineNo, `only one ${k} parser directive can be used`);
    directives.lines[k] = lineNo;
    const v = m[2];
    if (k === 'escape') {
      if (v !== '\\' && v !== '`') throw new ParseError(lineNo, `invalid escape token '${v}' does not match \` or \\`);
      directives.escape = v;
      contRe = continuationRegex(v);
    } else if (k === 'syntax') {
      directives.syntax = v;
    } else {
      directives.check = v;
    }
  };

  const processLine = (raw: string, lineNo: number, stripLeft: boolean): string => {
    let token = trimNewline(raw);
    if (stripLeft) token = trimLeft(token);
    possibleDirective(token, lineNo);
    return token.startsWith('#') ? '' : token;
  };

  const trimContinuation = (line: string): [string, boolean] => {
    if (contRe.test(line)) return [line.replace(contRe, '$1'), false];
    return [line, true];
  };

  const nodes: Node[] = [];
  let i = 0;
  while (i < lines.length) {
    const lineNo = i + 1;
    const first = processLine(lines[i], lineNo, true);
    i++;
    const startLine = lineNo;
    let [line, endOfLine] = trimContinuation(first);
    if (endOfLine && line === '') continue;

    const empties: number[] = [];
    while (!endOfLine && i < lines.length) {
      const raw = lines[i];
      const no = i + 1;
      const processed = processLine(raw, no, false);
      i++;
      if (isComment(raw)) continue;
      if (trimLeft(trimNewline(processed)) === '') {
        empties.push(no);
        continue;
      }
      let cont: string;
      [cont, endOfLine] = trimContinuation(processed);
      line += cont;
    }
    if (!endOfLine) {
      // BuildKit accepts a continuation at the end of the file; kiln's contract makes it an error
      // because it nearly always means a truncated file.
      throw new ParseError(i, 'unexpected end of file after a line continuation');
    }

    let node: Node;
    try {
      node = nodeFromLine(line, directives.escape);
    } catch (e) {
      if (e instanceof InstructionError) throw new ParseError(startLine, e.message);
      throw e;
    }
    node.startLine = startLine;
    node.emptyContinuationLines = empties;

    if (canContainHeredoc(node)) {
      const docs = heredocsFromLine(line);
      for (const doc of docs) {
        let terminated = false;
        while (i < lines.length) {
          const raw = lines[i];
          i++;
          let possible = trimNewline(raw);
          if (doc.chomp) possible = possible.replace(/^\t+/, '');
          if (possible === doc.name) {
            terminated = true;
            break;
          }
          doc.content += raw;
        }
        if (!terminated) throw new ParseError(startLine, `unterminated heredoc <<${doc.name}`);
        node.heredocs.push(doc);
      }
    }
    node.endLine = i;
    nodes.push(node);
  }
  return { nodes, directives };
}

function continuationRegex(esc: Escape): RegExp {
  const e = escapeRe(esc);
  // The escape token at the end of a line continues it, unless it is itself escaped; a token alone
  // on its line also continues.
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

function canContainHeredoc(node: Node): boolean {
  const n = node.lower === 'onbuild' && node.sub ? node.sub : node;
  return heredocInstructions.has(n.lower) && !n.json;
}

/** Builds a Node from one logical line: keyword, builder flags, then the instruction's own splitting. */
export function nodeFromLine(line: string, escape: Escape): Node {
  const trimmed = line.trim();
  const m = /^(\S+)(?:[\t\v\f\r ]+([\s\S]*))?$/.exec(trimmed);
  const cmd = m ? m[1] : trimmed;
  const lower = cmd.toLowerCase();
  let flags: string[] = [];
  let rest = '';
  if (m && m[2] !== undefined) {
    [rest, flags] = extractBuilderFlags(m[2]);
  }
  rest = rest.trim();
  const node: Node = {
    cmd,
    lower,
    flags,
    args: [],
    json: false,
    original: line,
    heredocs: [],
    startLine: 0,
    endLine: 0,
    emptyContinuationLines: [],
  };
  switch (lower) {
    case 'add':
    case 'copy':
    case 'volume':
      parseMaybeJSONToList(rest, node);
      break;
    case 'run':
    case 'cmd':
    case 'entrypoint':
    case 'shell':
      parseMaybeJSON(rest, node);
      break;
    case 'arg':
      node.args = parseWords(rest, escape);
      break;
    case 'env':
    case 'label':
      parseNameVal(rest, lower.toUpperCase(), escape, node);
      break;
    case 'expose':
    case 'from':
      node.args = rest === '' ? [] : rest.split(reWhitespace);
      break;
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      node.args = rest === '' ? [] : [rest];
      break;
    case 'healthcheck':
      parseHealthConfig(rest, node);
      break;
    case 'onbuild':
      if (rest !== '') {
        node.sub = nodeFromLine(rest, escape);
        node.args = [node.sub.cmd, ...node.sub.args];
      }
      break;
    default:
      // Unknown instructions are reported later with their line (BuildKit does the same).
      break;
  }
  return node;
}

/**
 * Leading `--flag[=value]` words of an instruction (BuildKit's extractBuilderFlags): a flag's value
 * must be joined with "="; quotes and backslashes inside a flag word are processed.
 */
export function extractBuilderFlags(line: string): [string, string[]] {
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  const isSpace = (c: string) => /\s/.test(c);
  for (let pos = 0; pos <= line.length; pos++) {
    let ch = pos < line.length ? line[pos] : '';
    if (phase === 'spaces') {
      if (pos === line.length) break;
      if (isSpace(ch)) continue;
      // Only words starting with "--" are flags; the first other word starts the arguments.
      if (ch !== '-' || pos + 1 === line.length || line[pos + 1] !== '-') return [line.slice(pos), words];
      phase = 'word';
    }
    if ((phase === 'word' || phase === 'quote') && pos === line.length) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (word === '--') return [line.slice(pos), words];
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
        continue;
      }
      if (ch === '\\') {
        if (pos + 1 === line.length) continue;
        pos++;
        ch = line[pos];
      }
      word += ch;
      continue;
    }
    // phase === 'quote'
    if (ch === quote) {
      phase = 'word';
      continue;
    }
    if (ch === '\\') {
      if (pos + 1 === line.length) {
        phase = 'word';
        continue;
      }
      pos++;
      ch = line[pos];
    }
    word += ch;
  }
  return ['', words];
}

/** Words separated by whitespace, quotes kept (they are removed later by variable expansion). */
export function parseWords(rest: string, escape: Escape): string[] {
  const words: string[] = [];
  let phase: 'spaces' | 'word' | 'quote' = 'spaces';
  let word = '';
  let quote = '';
  let blankOK = false;
  const chars = Array.from(rest);
  const isSpace = (c: string) => /\s/u.test(c);
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = pos < chars.length ? chars[pos] : '';
    if (phase === 'spaces') {
      if (pos === chars.length) break;
      if (isSpace(ch)) continue;
      phase = 'word';
    }
    if ((phase === 'word' || phase === 'quote') && pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === 'word') {
      if (isSpace(ch)) {
        phase = 'spaces';
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = 'quote';
      }
      if (ch === escape) {
        if (pos + 1 === chars.length) continue;
        word += ch;
        pos++;
        ch = chars[pos];
      }
      word += ch;
      continue;
    }
    if (ch === quote) phase = 'word';
    if (ch === escape && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = 'word';
        continue;
      }
      pos++;
      word += ch;
      ch = chars[pos];
    }
    word += ch;
  }
  return words;
}

function parseNameVal(rest: string, key: string, escape: Escape, node: Node): void {
  const words = parseWords(rest, escape);
  if (words.length === 0) return;
  if (!words[0].includes('=')) {
    // Legacy "ENV name value": everything after the first whitespace is the value.
    const m = /^(\S+?)[\t\v\f\r ]+([\s\S]*)$/.exec(rest);
    if (!m) fail(`${key} must have two arguments`);
    node.args = [m[1], m[2]];
    node.delims = [false];
    return;
  }
  node.delims = [];
  for (const w of words) {
    if (!w.includes('=')) fail(`Syntax error - can't find = in ${goQuoteSimple(w)}. Must be of the form: name=value`);
    const eq = w.indexOf('=');
    node.args.push(w.slice(0, eq), w.slice(eq + 1));
    node.delims.push(true);
  }
}

function goQuoteSimple(s: string): string {
  return JSON.stringify(s);
}

const notStringArray = 'when using JSON array syntax, arrays must be comprised of strings only';

/**
 * Parses the leading JSON array of `rest` like Go's json.Decoder: only the first value is read,
 * anything after it is ignored. Returns undefined when `rest` is not a JSON array.
 */
export function parseJSONPrefix(rest: string): string[] | undefined {
  const s = trimLeft(rest);
  if (!s.startsWith('[')) return undefined;
  for (let i = s.indexOf(']'); i >= 0; i = s.indexOf(']', i + 1)) {
    let v: unknown;
    try {
      v = JSON.parse(s.slice(0, i + 1));
    } catch {
      continue;
    }
    if (!Array.isArray(v)) return undefined;
    if (!v.every((x) => typeof x === 'string')) fail(notStringArray);
    return v as string[];
  }
  return undefined;
}

function parseMaybeJSON(rest: string, node: Node): void {
  if (rest === '') return;
  const j = parseJSONPrefix(rest);
  if (j) {
    node.args = j;
    node.json = true;
    return;
  }
  node.args = [rest];
}

function parseMaybeJSONToList(rest: string, node: Node): void {
  const j = parseJSONPrefix(rest);
  if (j) {
    node.args = j;
    node.json = true;
    return;
  }
  node.args = rest === '' ? [] : rest.split(reWhitespace);
}

function parseHealthConfig(rest: string, node: Node): void {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(rest);
  if (!m) return;
  const sub: Node = { ...node, args: [], json: false };
  parseMaybeJSON(m[2], sub);
  node.args = [m[1], ...sub.args];
  node.json = sub.json;
}

// ---- heredocs -------------------------------------------------------------------------------

const reHeredoc = /^(\d*)<<(-?)([^<]*)$/;

/** Splits a line into words on unquoted whitespace, keeping quotes and escapes as written. */
function rawWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote = '';
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      word += ch;
      if (ch === '\\' && quote === '"' && i + 1 < line.length) {
        word += line[++i];
      } else if (ch === quote) {
        quote = '';
      }
      continue;
    }
    if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    inWord = true;
    word += ch;
    if (ch === '\\' && i + 1 < line.length) word += line[++i];
    else if (ch === '"' || ch === "'") quote = ch;
  }
  if (inWord) words.push(word);
  return words;
}

/** Removes shell quoting from a heredoc delimiter word; undefined if it is not a single word. */
function unquoteWord(w: string): string | undefined {
  let out = '';
  let quote = '';
  for (let i = 0; i < w.length; i++) {
    const ch = w[i];
    if (quote) {
      if (ch === quote) quote = '';
      else if (ch === '\\' && quote === '"' && i + 1 < w.length && /["\\$`]/.test(w[i + 1])) out += w[++i];
      else out += ch;
      continue;
    }
    if (/\s/.test(ch)) return undefined;
    if (ch === '"' || ch === "'") quote = ch;
    else if (ch === '\\' && i + 1 < w.length) out += w[++i];
    else out += ch;
  }
  return out;
}

export function parseHeredoc(word: string): Heredoc | undefined {
  const m = reHeredoc.exec(word);
  if (!m || m[3].length === 0) return undefined;
  const name = unquoteWord(m[3]);
  if (name === undefined || name === '') return undefined;
  const quoted = /["']/.test(m[3]);
  return { name, content: '', chomp: m[2] === '-', expand: !quoted, fd: m[1] ? Number(m[1]) : 0 };
}

function heredocsFromLine(line: string): Heredoc[] {
  const out: Heredoc[] = [];
  for (const w of rawWords(line)) {
    const h = parseHeredoc(w);
    if (h) out.push(h);
  }
  return out;
}

/** `<<-` strips leading tabs from every line of the content. */
export function chompHeredocContent(s: string): string {
  return s.replace(/^\t+/gm, '');
}
