// Go formatting and parsing helpers. BuildKit writes image history with Go's fmt verbs
// (`CMD %q`, `VOLUME %v`, `HEALTHCHECK %q` of a struct) and parses durations with
// time.ParseDuration; kiln reproduces both so history and errors read the same.

const printable = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]$/u;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}

function escapeRune(ch: string, quote: string): string {
  const cp = ch.codePointAt(0)!;
  if (ch === quote || ch === '\\') return '\\' + ch;
  if (printable.test(ch)) return ch;
  switch (ch) {
    case '\x07':
      return '\\a';
    case '\b':
      return '\\b';
    case '\f':
      return '\\f';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    case '\v':
      return '\\v';
  }
  if (cp < 0x80) return '\\x' + hex(cp, 2);
  if (cp < 0x10000) return '\\u' + hex(cp, 4);
  return '\\U' + hex(cp, 8);
}

/** Go's strconv.Quote. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) out += escapeRune(ch, '"');
  return out + '"';
}

/** Go's strconv.QuoteRune (what %q prints for an int). */
export function goQuoteRune(n: number): string {
  return "'" + escapeRune(String.fromCodePoint(n), "'") + "'";
}

/** fmt.Sprintf("%q", []string{...}) */
export function goQuoteSlice(a: string[]): string {
  return '[' + a.map(goQuote).join(' ') + ']';
}

/** fmt.Sprintf("%v", []string{...}) */
export function goSlice(a: string[]): string {
  return '[' + a.join(' ') + ']';
}

const NS = 1;
const US = 1e3;
const MS = 1e6;
const S = 1e9;
const M = 60 * S;
const H = 60 * M;

/** Go's time.Duration.String() for a duration in nanoseconds. */
export function formatDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let u = Math.abs(ns);
  let out: string;
  if (u < S) {
    if (u < US) out = `${u}ns`;
    else if (u < MS) out = fracString(u, 3) + 'µs';
    else out = fracString(u, 6) + 'ms';
  } else {
    const secs = fracString(u % M, 9) + 's';
    u = Math.floor(u / M);
    if (u > 0) {
      const mins = `${u % 60}m`;
      u = Math.floor(u / 60);
      out = (u > 0 ? `${u}h` : '') + mins + secs;
    } else {
      out = secs;
    }
  }
  return neg ? '-' + out : out;
}

/** v / 10^prec printed with trailing zeros of the fraction removed. */
function fracString(v: number, prec: number): string {
  const div = 10 ** prec;
  const whole = Math.floor(v / div);
  const frac = String(v % div)
    .padStart(prec, '0')
    .replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : `${whole}`;
}

const units: Record<string, number> = { ns: NS, us: US, µs: US, μs: US, ms: MS, s: S, m: M, h: H };

/** Go's time.ParseDuration; returns nanoseconds or throws with Go's message. */
export function parseDuration(s: string): number {
  const orig = s;
  const bad = () => new Error(`time: invalid duration ${goQuote(orig)}`);
  let neg = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw bad();
  let total = 0;
  while (s !== '') {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(s)!;
    if (m[0] === '' || (m[1] === '' && (m[2] === undefined || m[2] === ''))) throw bad();
    s = s.slice(m[0].length);
    const u = /^[^0-9.]+/.exec(s);
    if (!u) throw new Error(`time: missing unit in duration ${goQuote(orig)}`);
    const unit = units[u[0]];
    if (unit === undefined) throw new Error(`time: unknown unit ${goQuote(u[0])} in duration ${goQuote(orig)}`);
    s = s.slice(u[0].length);
    const whole = m[1] === '' ? 0 : Number(m[1]);
    const frac = m[2] ? Number('0.' + m[2]) : 0;
    total += whole * unit + Math.round(frac * unit);
  }
  if (total > Number.MAX_SAFE_INTEGER) throw bad();
  return neg ? -total : total;
}

/** Parses an unsigned integer in `base` like Go's strconv.ParseUint (no sign, no prefix, no "_"). */
export function parseUint(s: string, base: 8 | 10, bits: number): number | undefined {
  const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(s)) return undefined;
  const v = parseInt(s, base);
  if (v >= 2 ** bits) return undefined;
  return v;
}
