// Variable substitution in Dockerfile words, following BuildKit's shell lexer (frontend/dockerfile/shell).
// STUB: the signatures below are the contract; the implementation is being written.

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

export class ShellLexError extends Error {}

/** Expands one word (quotes removed, escapes processed), as ENV/LABEL/COPY/WORKDIR... do. */
export function processWord(_word: string, _lookup: VarLookup, _escape: EscapeChar = '\\'): WordResult {
  throw new Error('not implemented');
}

/** Expands and splits into words on unquoted whitespace (used where one argument may become several). */
export function processWords(_word: string, _lookup: VarLookup, _escape: EscapeChar = '\\'): { words: string[]; matched: Set<string>; unmatched: Set<string> } {
  throw new Error('not implemented');
}
