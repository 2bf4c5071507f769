// COPY/ADD --chmod values: an octal mode, or a chmod(1)-style symbolic one ("u+x", "go-w,a+X",
// "u=rwx,g=rx"), which current BuildKit accepts and applies to each copied file's own mode.
// Pure: the frontend uses it to validate, the file operation to apply.

export class ChmodError extends Error {}

/** Maps a file's mode to the mode it gets. */
export type ChmodFn = (mode: number, isDir: boolean) => number;

const NON_OCTAL = (spec: string) => `invalid chmod parameter: '${spec}'. it should be octal string and between 0 and 07777`;

const WHO_BITS: Record<string, number> = { u: 0o4700, g: 0o2070, o: 0o1007 };
const PERM_BITS: Record<string, number> = { r: 0o444, w: 0o222, x: 0o111, s: 0o6000, t: 0o1000 };

interface Clause {
  who: number; // mask of the classes the clause touches
  ops: { op: '+' | '-' | '='; perms: string }[];
}

export function parseChmod(spec: string): ChmodFn {
  if (/^[0-9]+$/.test(spec)) {
    const mode = /^[0-7]+$/.test(spec) ? parseInt(spec, 8) : NaN;
    if (!(mode >= 0 && mode <= 0o7777)) throw new ChmodError(NON_OCTAL(spec));
    return () => mode;
  }
  const clauses = spec.split(',').map((c) => parseClause(c, spec));
  return (mode, isDir) => {
    let m = mode & 0o7777;
    for (const { who, ops } of clauses) {
      for (const { op, perms } of ops) {
        let bits = 0;
        for (const p of perms) {
          if (p === 'X') {
            if (isDir || (m & 0o111) !== 0) bits |= 0o111;
          } else if (p === 'u' || p === 'g' || p === 'o') {
            // Copy another class's permission bits ("g=u").
            const shift = p === 'u' ? 6 : p === 'g' ? 3 : 0;
            const rwx = (m >> shift) & 0o7;
            bits |= (rwx << 6) | (rwx << 3) | rwx;
          } else {
            bits |= PERM_BITS[p]!;
          }
        }
        bits &= who;
        if (op === '+') m |= bits;
        else if (op === '-') m &= ~bits;
        else m = (m & ~who) | bits;
      }
    }
    return m & 0o7777;
  };
}

function parseClause(clause: string, spec: string): Clause {
  const m = /^([ugoa]*)((?:[-+=][rwxXst]*|[-+=][ugo])+)$/.exec(clause);
  if (!m) throw new ChmodError(`invalid chmod parameter: '${spec}': "${clause}" is not an octal or symbolic mode`);
  const whoText = m[1] === '' || m[1]!.includes('a') ? 'ugo' : m[1]!;
  let who = 0;
  for (const w of whoText) who |= WHO_BITS[w]!;
  const ops: Clause['ops'] = [];
  for (const part of m[2]!.matchAll(/([-+=])([rwxXstugo]*)/g)) ops.push({ op: part[1] as '+' | '-' | '=', perms: part[2]! });
  return { who, ops };
}
