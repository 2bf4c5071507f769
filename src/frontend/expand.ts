// Variable expansion inside heredoc file contents (COPY <<EOF with an unquoted delimiter).
// BuildKit expands these with its lexer in a "raw" mode that leaves quotes alone; the shell-lex
// contract has no such mode, so this module does the small subset that heredoc bodies need, with
// shell heredoc rules for backslashes: \$ \` \\ lose the backslash, any other backslash stays.

export interface RawExpandResult {
  result: string;
  unmatched: Set<string>;
}

export function expandHeredocContent(text: string, lookup: (name: string) => string | undefined): RawExpandResult {
  const unmatched = new Set<string>();
  let out = '';
  let i = 0;
  const get = (name: string) => {
    const v = lookup(name);
    if (v === undefined) unmatched.add(name);
    return v;
  };
  while (i < text.length) {
    const ch = text[i];
    if (ch === '\\' && i + 1 < text.length && '$`\\'.includes(text[i + 1])) {
      out += text[i + 1];
      i += 2;
      continue;
    }
    if (ch !== '$') {
      out += ch;
      i++;
      continue;
    }
    const simple = /^\$([A-Za-z_][A-Za-z0-9_]*)/.exec(text.slice(i));
    if (simple) {
      out += get(simple[1]) ?? '';
      i += simple[0].length;
      continue;
    }
    const braced = /^\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^}]*))?\}/.exec(text.slice(i));
    if (braced) {
      const [whole, name, op, word] = braced;
      const v = op ? lookup(name) : get(name);
      if (!op) out += v ?? '';
      else if (op === ':-') out += v !== undefined && v !== '' ? v : word;
      else if (op === '-') out += v !== undefined ? v : word;
      else if (op === ':+') out += v !== undefined && v !== '' ? word : '';
      else out += v !== undefined ? word : '';
      i += whole.length;
      continue;
    }
    out += ch;
    i++;
  }
  return { result: out, unmatched };
}
