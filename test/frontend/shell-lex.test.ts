// Cases ported from BuildKit's shell lexer tests (frontend/dockerfile/shell: envVarTest, wordsTest,
// lex_test.go); the inputs and expected outputs are BuildKit's observable behaviour, rewritten as tables.
import { describe, expect, it } from 'vitest';
import { processWord, processWords, ShellLexError, type EscapeChar, type VarLookup } from '../../src/frontend/shell-lex.js';

const ERR = Symbol('error');

function env(vars: Record<string, string>): VarLookup {
  return (name) => (Object.hasOwn(vars, name) ? vars[name] : undefined);
}

// ---- envVarTest: one word in, one word out ------------------------------------------------------------
const baseEnv = env({ PWD: '/home', SHELL: 'bash', KOREAN: '한국어', NULL: '' });

const wordCases: [string, string | typeof ERR][] = [
  ['hello', 'hello'],
  ["he'll'o", 'hello'],
  ["he'llo", ERR],
  ["he\\'llo", "he'llo"],
  ["he\\\\'llo", ERR],
  ['abc\\tdef', 'abctdef'],
  ['"abc\\tdef"', 'abc\\tdef'],
  ['"abc\\\\tdef"', 'abc\\tdef'],
  ["'abc\\tdef'", 'abc\\tdef'],
  ['hello\\', 'hello'],
  ['hello\\\\', 'hello\\'],
  ['"hello', ERR],
  ['"hello\\"', ERR],
  ['"hel\'lo"', "hel'lo"],
  ["'hello", ERR],
  ["'hello\\'", 'hello\\'],
  ["'hello\\there'", 'hello\\there'],
  ["'hello\\\\there'", 'hello\\\\there'],
  ['"\'\'"', "''"],
  ['$.', '$.'],
  ['$1', ''],
  ['he$1x', 'hex'],
  ['he$.x', 'he$.x'],
  ['he$pwd.', 'he.'], // names are case-sensitive (on Linux)
  ['he$PWD', 'he/home'],
  ['he\\$PWD', 'he$PWD'],
  ['he\\\\$PWD', 'he\\/home'],
  ['"he\\$PWD"', 'he$PWD'],
  ['"he\\\\$PWD"', 'he\\/home'],
  ['\\${}', '${}'],
  ['\\${}aaa', '${}aaa'],
  ['he\\${}', 'he${}'],
  ['he\\${}xx', 'he${}xx'],
  ['${}', ERR],
  ['${}aaa', ERR],
  ['he${}', ERR],
  ['he${}xx', ERR],
  ['he${hi}', 'he'],
  ['he${hi}xx', 'hexx'],
  ['he${PWD}', 'he/home'],
  ['he${.}', ERR],
  ['he${XXX:-000}xx', 'he000xx'],
  ['he${PWD:-000}xx', 'he/homexx'],
  ['he${XXX:-$PWD}xx', 'he/homexx'],
  ['he${XXX:-${PWD:-yyy}}xx', 'he/homexx'],
  ['he${XXX:-${YYY:-yyy}}xx', 'heyyyxx'],
  ['he${XXX:YYY}', ERR],
  ['he${XXX:+${PWD}}xx', 'hexx'],
  ['he${PWD:+${XXX}}xx', 'hexx'],
  ['he${PWD:+${SHELL}}xx', 'hebashxx'],
  ['he${XXX:+000}xx', 'hexx'],
  ['he${PWD:+000}xx', 'he000xx'],
  ["'he${XX}'", 'he${XX}'],
  ['"he${PWD}"', 'he/home'],
  ['"he\'$PWD\'"', "he'/home'"],
  ['"$PWD"', '/home'],
  ["'$PWD'", '$PWD'],
  ["'\\$PWD'", '\\$PWD'],
  ['\'"hello"\'', '"hello"'],
  ["'he\\$PWD'", 'he\\$PWD'],
  ['he${PWD', ERR],
  ['he${PWD:=000}xx', ERR],
  ['he${PWD:+${PWD}:}xx', 'he/home:xx'],
  ['he${XXX:-\\$PWD:}xx', 'he$PWD:xx'],
  ['he${XXX:-\\${PWD}z}xx', 'he${PWDz}xx'],
  ['안녕하세요', '안녕하세요'],
  ["안'녕'하세요", '안녕하세요'],
  ["안'녕하세요", ERR],
  ["안녕\\'하세요", "안녕'하세요"],
  ["안\\\\'녕하세요", ERR],
  ['안녕\\t하세요', '안녕t하세요'],
  ['"안녕\\t하세요"', '안녕\\t하세요'],
  ["'안녕\\t하세요", ERR],
  ['안녕하세요\\', '안녕하세요'],
  ['안녕하세요\\\\', '안녕하세요\\'],
  ['"안녕하세요', ERR],
  ['"안녕하세요\\"', ERR],
  ['"안녕\'하세요"', "안녕'하세요"],
  ["'안녕하세요\\'", '안녕하세요\\'],
  ['안녕$1x', '안녕x'],
  ['안녕$.x', '안녕$.x'],
  ['안녕$PWD', '안녕/home'],
  ['안녕\\\\$PWD', '안녕\\/home'],
  ['안녕${}', ERR],
  ['안녕${hi}xx', '안녕xx'],
  ['안녕${XXX:-${YYY:-yyy}}xx', '안녕yyyxx'],
  ['안녕${PWD:+${SHELL}}xx', '안녕bashxx'],
  ['$KOREAN', '한국어'],
  ['안녕$KOREAN', '안녕한국어'],
  ['${{aaa}', ERR],
  ['${aaa}}', '}'],
  ['${aaa', ERR],
  ['${{aaa:-bbb}', ERR],
  ['${aaa:-bbb}}', 'bbb}'],
  ['${aaa:-bbb', ERR],
  ['${aaa:-bbb}', 'bbb'],
  ['${aaa:-${bbb:-ccc}}', 'ccc'],
  ['${aaa:-bbb ${foo}', ERR],
  ['${aaa:-bbb {foo}', 'bbb {foo'],
  ['${:}', ERR],
  ['${:-bbb}', ERR],
  ['${:+bbb}', ERR],
  // set-but-empty vs unset: the colon forms treat empty as unset
  ['${NULL-x}', ''],
  ['${NULL:-x}', 'x'],
  ['${NULL+x}', 'x'],
  ['${NULL:+x}', ''],
  ['${NULL?x}', ''],
  ['${NULL:?x}', ERR],
  ['${XXX-x}', 'x'],
  ['${XXX+x}', ''],
  ['${XXX?x}', ERR],
  ['${PWD?x}', '/home'],
  ['${PWD=x}', ERR], // assignment forms are not supported
  ['${PWD:=x}', ERR],
  // quotes and expansions inside the word part
  ['${XXX:-"a  b"}', 'a  b'],
  ["${XXX:-'$PWD'}", '$PWD'],
  ['${XXX:-\\}}', '}'],
  ['"${XXX:-"in"}"', 'in'],
  ["${XXX:-'unterminated}", ERR],
  // special parameters and digits are names of their own
  ['$@x', 'x'],
  ['$$x', 'x'],
  ['$?', ''],
  ['${#}', ''],
  ['${#PWD}', ERR], // no length operator
  ['$10x', 'x'],
  ['${1}', ''],
  ['$', '$'],
  ['a$ b', 'a$ b'],
  ['$/x', '$/x'],
  ['$_x', ''],
  ['$PWD_x', ''],
  ['$PWD-x', '/home-x'],
  ['$KOREAN어', ''], // Unicode letters belong to names
  // a leading BOM is dropped like Go's scanner does
  ['\ufeff$PWD', '/home'],
];

describe('processWord (envVarTest)', () => {
  for (const [input, want] of wordCases) {
    it(JSON.stringify(input), () => {
      if (want === ERR) {
        expect(() => processWord(input, baseEnv)).toThrow(ShellLexError);
      } else {
        expect(processWord(input, baseEnv).result).toBe(want);
      }
    });
  }
});

// ---- wordsTest: splitting into words -------------------------------------------------------------------
const wordsEnv = env({ hi: 'hi', space: 'abc  def', leading: '  ab c', trailing: 'ab c   ', empty: '' });

const wordsCases: [string, string[] | typeof ERR][] = [
  ['hello', ['hello']],
  ['hello${hi}bye', ['hellohibye']],
  ['hello${nothere}bye', ['hellobye']],
  ['hello${space}bye', ['helloabc', 'defbye']],
  ['hello"${space}"bye', ['helloabc  defbye']],
  ['hello "${space}"bye', ['hello', 'abc  defbye']],
  ['hello${leading}def', ['hello', 'ab', 'cdef']],
  ['hello"${leading}" def', ['hello  ab c', 'def']],
  ['hello"${leading}"', ['hello  ab c']],
  ['hello${leading}', ['hello', 'ab', 'c']],
  ['hello${trailing}', ['helloab', 'c']],
  ['hello${trailing}d', ['helloab', 'c', 'd']],
  ['hello"${trailing}"d', ['helloab c   d']],
  ['hel"lo${trailing}"', ['helloab c   ']],
  ['hello" there  "', ['hello there  ']],
  ['hello there     ', ['hello', 'there']],
  ['hello\\ there', ['hello there']],
  ['hello" there', ERR],
  ['hello\\" there', ['hello"', 'there']],
  ['hello"\\\\there"', ['hello\\there']],
  ['hello"\\there"', ['hello\\there']],
  ["hello'\\\\there'", ['hello\\\\there']],
  ["hello'\\there'", ['hello\\there']],
  ["hello'$there'", ['hello$there']],
  ['  a\tb\nc  ', ['a', 'b', 'c']],
  ['', []],
  ['   ', []],
  // BuildKit drops words that end up empty, quoted or not
  ['""', []],
  ["a '' b", ['a', 'b']],
  ['a "" b', ['a', 'b']],
  ['$empty', []],
  ['a${empty}b', ['ab']],
  // an unquoted expansion's default word is split too; a quoted one is not
  ['${nothere:-"x y"}', ['x', 'y']],
  ['"${nothere:-x y}"', ['x y']],
  ["'a b' c", ['a b', 'c']],
  ['x${hi:+a b}y', ['xa', 'by']],
];

describe('processWords (wordsTest)', () => {
  for (const [input, want] of wordsCases) {
    it(JSON.stringify(input), () => {
      if (want === ERR) {
        expect(() => processWords(input, wordsEnv)).toThrow(ShellLexError);
      } else {
        expect(processWords(input, wordsEnv).words).toEqual(want);
      }
    });
  }

  it('keeps spaces between words in processWord', () => {
    expect(processWord('hello${space}bye x', wordsEnv).result).toBe('helloabc  defbye x');
  });
});

// ---- matches, patterns, replacement (lex_test.go TestProcessWithMatches) --------------------------------
interface MatchCase {
  input: string;
  envs: Record<string, string>;
  want: string | typeof ERR;
  matched?: string[];
  unmatched?: string[];
}

const matchCases: MatchCase[] = [
  { input: 'x', envs: { DUMMY: 'dummy' }, want: 'x' },
  { input: 'x ${UNUSED}', envs: { DUMMY: 'dummy' }, want: 'x ', unmatched: ['UNUSED'] },
  { input: 'x ${FOO}', envs: { FOO: 'y' }, want: 'x y', matched: ['FOO'] },
  { input: '${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}', envs: { FOO: 'xxx', BAR: '' }, want: 'xxx  ccc', matched: ['FOO', 'BAR'], unmatched: ['BAZ'] },
  { input: '${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}', envs: { FOO: 'xxx', BAR: '' }, want: 'xxx bbb ccc', matched: ['FOO', 'BAR'], unmatched: ['BAZ'] },
  { input: '${FOO:-}', envs: { FOO: 'xxx', BAR: '' }, want: 'xxx', matched: ['FOO'] },
  { input: '${FOO:-}', envs: {}, want: '', unmatched: ['FOO'] },
  { input: '${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}', envs: { FOO: 'xxx', BAR: '' }, want: 'aaa bbb ', matched: ['FOO', 'BAR'], unmatched: ['BAZ'] },
  { input: '${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}', envs: { FOO: 'xxx', BAR: '' }, want: 'aaa  ', matched: ['FOO', 'BAR'], unmatched: ['BAZ'] },
  { input: '${FOO?aaa}', envs: { FOO: 'xxx', BAR: '' }, want: 'xxx', matched: ['FOO'] },
  { input: '${BAR?bbb}', envs: { FOO: 'xxx', BAR: '' }, want: '', matched: ['BAR'] },
  { input: '${BAZ?ccc}', envs: { FOO: 'xxx', BAR: '' }, want: ERR },
  { input: '${FOO:?aaa}', envs: { FOO: 'xxx', BAR: '' }, want: 'xxx', matched: ['FOO'] },
  { input: '${BAR:?bbb}', envs: { FOO: 'xxx', BAR: '' }, want: ERR },
  { input: '${BAZ:?ccc}', envs: { FOO: 'xxx', BAR: '' }, want: ERR },
  { input: '${BAZ:?}', envs: { FOO: 'xxx', BAR: '' }, want: ERR },
  { input: '${FOO=aaa}', envs: { FOO: 'xxx', BAR: '' }, want: ERR },
  { input: '${FOO=:aaa}', envs: { FOO: 'xxx', BAR: '' }, want: ERR },
  { input: '${FOO=}', envs: {}, want: ERR },
  // special characters of regular expressions are literal in patterns; } must be escaped
  { input: '${FOO#()[]{\\}^$.\\*\\?|\\\\}', envs: { FOO: '()[]{}^$.*?|\\x' }, want: 'x', matched: ['FOO'] },
  { input: '${FOO%%\\**}', envs: { FOO: 'xx**' }, want: 'xx', matched: ['FOO'] },
  { input: '${FOO#*x*y}', envs: { FOO: 'xxyy' }, want: 'y', matched: ['FOO'] },
  { input: '${FOO#*}', envs: { FOO: 'xxyy' }, want: 'xxyy', matched: ['FOO'] },
  { input: '${FOO#$BAR}', envs: { FOO: 'xxyy', BAR: 'x' }, want: 'xyy', matched: ['FOO', 'BAR'] },
  { input: '${FOO#$BAR}', envs: { FOO: 'xxyy', BAR: '' }, want: 'xxyy', matched: ['FOO', 'BAR'] },
  { input: '${FOO#}', envs: { FOO: 'xxyy' }, want: 'xxyy', matched: ['FOO'] },
  { input: '${FOO##*x}', envs: { FOO: 'xxyy' }, want: 'yy', matched: ['FOO'] },
  { input: '${FOO##}', envs: { FOO: 'xxyy' }, want: 'xxyy', matched: ['FOO'] },
  { input: '${FOO#?\\?}', envs: { FOO: '???y' }, want: '?y', matched: ['FOO'] },
  { input: '${ABC:-.}${FOO%x}${ABC:-.}', envs: { FOO: 'xxyy' }, want: '.xxyy.', matched: ['FOO'], unmatched: ['ABC'] },
  { input: '${FOO%%\\**\\*}', envs: { FOO: 'a***yy*' }, want: 'a', matched: ['FOO'] },
  { input: '${FOO%}', envs: { FOO: 'xxyy' }, want: 'xxyy', matched: ['FOO'] },
  { input: '${FOO%%$BAR}', envs: { FOO: 'xxyy', BAR: '' }, want: 'xxyy', matched: ['FOO', 'BAR'] },
  {
    input: '${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}',
    envs: { FOO: '/foo*/*/*.txt', NEEDLE: '\\*/' },
    want: '/foo.*/*.txt - /foo..*.txt',
    matched: ['FOO', 'NEEDLE'],
  },
  {
    input: '${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}',
    envs: { FOO: '/tmp/tmp/bar.txt', NEEDLE: '/tmp' },
    want: '/tmp/bar.txt - /bar.txt',
    matched: ['FOO', 'NEEDLE'],
  },
  {
    input: '${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}',
    envs: { FOO: '/a/foo/b/c.txt', NEEDLE: '/?/', REPLACEMENT: '/' },
    want: '/foo/b/c.txt - /foo/c.txt',
    matched: ['FOO', 'NEEDLE', 'REPLACEMENT'],
  },
  {
    input: '${FOO/$NEEDLE/$REPLACEMENT}',
    envs: { FOO: 'http://google.de', NEEDLE: 'http://', REPLACEMENT: 'https://' },
    want: 'https://google.de',
    matched: ['FOO', 'NEEDLE', 'REPLACEMENT'],
  },
  { input: '${FOO//\\//\\/}', envs: { FOO: '/tmp/foo.txt' }, want: '\\/tmp\\/foo.txt', matched: ['FOO'] },
  { input: '${FOO/$BAR/ww}', envs: { FOO: 'xxyy', BAR: '' }, want: 'wwxxyy', matched: ['FOO', 'BAR'] },
  { input: '${FOO//ww}', envs: { FOO: 'xxyy' }, want: ERR },
  { input: '${FOO//}', envs: { FOO: 'xxyy' }, want: ERR },
  { input: '${FOO///}', envs: { FOO: 'xxyy' }, want: 'xxyy', matched: ['FOO'] },
  { input: '${FOO///}', envs: {}, want: '', unmatched: ['FOO'] },
  // TestProcessWithMatchesPlatform
  {
    input: 'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz',
    envs: { VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm', TARGETVARIANT: 'v7' },
    want: 'something-v1.2.3.linux-arm-v7.tar.gz',
    matched: ['VERSION', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'],
  },
  {
    input: 'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz',
    envs: { VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm64', TARGETVARIANT: '' },
    want: 'something-v1.2.3.linux-arm64.tar.gz',
    matched: ['VERSION', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT'],
  },
  {
    input: 'something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz',
    envs: { VERSION: 'v1.2.3', TARGETOS: 'linux', TARGETARCH: 'arm64' },
    want: 'something-v1.2.3.linux-arm64.tar.gz',
    matched: ['VERSION', 'TARGETOS', 'TARGETARCH'],
    unmatched: ['TARGETVARIANT'],
  },
  // more pattern behaviour (shortest vs longest, suffix side, unset value, the colon form)
  { input: '${F%.*}', envs: { F: 'a.tar.gz' }, want: 'a.tar', matched: ['F'] },
  { input: '${F%%.*}', envs: { F: 'a.tar.gz' }, want: 'a', matched: ['F'] },
  { input: '${F#*.}', envs: { F: 'a.tar.gz' }, want: 'tar.gz', matched: ['F'] },
  { input: '${F##*.}', envs: { F: 'a.tar.gz' }, want: 'gz', matched: ['F'] },
  { input: '${F:##*.}', envs: { F: 'a.tar.gz' }, want: 'gz', matched: ['F'] },
  { input: '${F%?}', envs: { F: '👽🚀🖖' }, want: '👽🚀', matched: ['F'] },
  { input: '${F#?}', envs: { F: '👽🚀🖖' }, want: '🚀🖖', matched: ['F'] },
  { input: '${F#nomatch}', envs: { F: 'abc' }, want: 'abc', matched: ['F'] },
  { input: '${F#x}', envs: {}, want: '', unmatched: ['F'] },
  { input: '${F#\\x}', envs: { F: 'abc' }, want: ERR }, // \x is not a valid pattern escape
  { input: '${F#"a\\$"}', envs: { F: 'abc' }, want: ERR }, // escapes survive quotes in patterns
  { input: "${F#'a*'}", envs: { F: 'abc' }, want: 'bc', matched: ['F'] }, // quoting does not make * literal
  { input: "${F##'a*'}", envs: { F: 'abc' }, want: '', matched: ['F'] },
  { input: '${F/b*/X}', envs: { F: 'abcb' }, want: 'aX', matched: ['F'] }, // replacement matches are greedy
  { input: '${F/?/X}', envs: { F: 'abc' }, want: 'Xbc', matched: ['F'] },
  { input: '${F//?/X}', envs: { F: 'abc' }, want: 'XXX', matched: ['F'] },
  { input: '${F//*/X}', envs: { F: 'abc' }, want: 'X', matched: ['F'] }, // Go skips the empty match after "abc"
  { input: "${F//b/'$$'}", envs: { F: 'abc' }, want: 'a$c', matched: ['F'] }, // replace-all uses Go's $-template
  { input: "${F/b/'$$'}", envs: { F: 'abc' }, want: 'a$$c', matched: ['F'] }, // ...single replace does not
  { input: '${F/b/$$}', envs: { F: 'abc' }, want: 'ac', matched: ['F'], unmatched: ['$'] }, // unquoted $$ is the special parameter
  { input: "${F//b/'[$0]'}", envs: { F: 'abc' }, want: 'a[b]c', matched: ['F'] },
  { input: "${F//b/'$x'}", envs: { F: 'abc' }, want: 'ac', matched: ['F'] },
  { input: "${F//b/'$.'}", envs: { F: 'abc' }, want: 'a$.c', matched: ['F'] },
  { input: '${F/a/b', envs: { F: 'abc' }, want: ERR },
  { input: '${F/a', envs: { F: 'abc' }, want: ERR },
  { input: 'a\nb${F//?/-}', envs: { F: 'x\ny' }, want: 'a\nb-\n-', matched: ['F'] }, // ? does not match a newline, as in Go
];

describe('matched / unmatched and patterns (TestProcessWithMatches)', () => {
  for (const c of matchCases) {
    it(`${c.input} ${JSON.stringify(c.envs)}`, () => {
      if (c.want === ERR) {
        expect(() => processWord(c.input, env(c.envs))).toThrow(ShellLexError);
        return;
      }
      const r = processWord(c.input, env(c.envs));
      expect(r.result).toBe(c.want);
      expect([...r.matched].sort()).toEqual([...(c.matched ?? [])].sort());
      expect([...r.unmatched].sort()).toEqual([...(c.unmatched ?? [])].sort());
    });
  }

  it('records unmatched names even when expansion then fails', () => {
    // processWords shares the same tracking
    const r = processWords('$A ${B:-$C} "$D"', env({ A: '1', D: 'x y' }));
    expect(r.words).toEqual(['1', 'x y']);
    expect([...r.matched].sort()).toEqual(['A', 'D']);
    expect([...r.unmatched].sort()).toEqual(['B', 'C']);
  });

  it('does not look up names inside single quotes or after an escape', () => {
    const r = processWord('\'$A\' \\$B "\\$C"', env({}));
    expect(r.result).toBe('$A $B $C');
    expect(r.unmatched.size).toBe(0);
  });
});

// ---- mandatory variables (TestShellParserMandatoryEnvVars) ---------------------------------------------
describe('${VAR:?msg} and ${VAR?msg}', () => {
  const setEnvs = env({ VAR: 'plain', ARG: 'x' });
  const emptyEnvs = env({ VAR: '', ARG: 'x' });
  const unsetEnvs = env({ ARG: 'x' });
  const noEmpty = '${VAR:?message here$ARG}';
  const noUnset = '${VAR?message here$ARG}';

  it('disallows empty', () => {
    expect(processWord(noEmpty, setEnvs).result).toBe('plain');
    expect(() => processWord(noEmpty, emptyEnvs)).toThrow('VAR: message herex');
    expect(() => processWord(noEmpty, unsetEnvs)).toThrow('VAR: message herex');
  });

  it('disallows unset', () => {
    expect(processWord(noUnset, setEnvs).result).toBe('plain');
    expect(processWord(noUnset, emptyEnvs).result).toBe('');
    expect(() => processWord(noUnset, unsetEnvs)).toThrow('VAR: message herex');
  });

  it('has default messages', () => {
    expect(() => processWord('${VAR?}', unsetEnvs)).toThrow('VAR: is not allowed to be unset');
    expect(() => processWord('${VAR:?}', emptyEnvs)).toThrow('VAR: is not allowed to be empty');
  });
});

// ---- escape=` ------------------------------------------------------------------------------------------
const backtickCases: [string, string | typeof ERR][] = [
  ['C:\\path\\to', 'C:\\path\\to'], // backslash is an ordinary character
  ['he`$PWD', 'he$PWD'],
  ['he\\$PWD', 'he\\/home'],
  ['he``$PWD', 'he`/home'],
  ['hello`', 'hello'],
  ["he`'llo", "he'llo"],
  ['"a`"b"', 'a"b'],
  ['"a`$PWD"', 'a$PWD'],
  ['"a``b"', 'a`b'],
  ['"a`tb"', 'a`tb'], // inside double quotes ` only escapes " $ and `
  ['"a\\"b"', ERR], // \" does not escape the quote: the word ends after b, then an unmatched quote
  ['"C:\\dir\\"', 'C:\\dir\\'],
  ['${XXX:-`}}', '}'],
  ['${XXX:-a`$PWD}', 'a$PWD'],
  ["'`'", '`'],
];

describe('escape=`', () => {
  for (const [input, want] of backtickCases) {
    it(JSON.stringify(input), () => {
      if (want === ERR) expect(() => processWord(input, baseEnv, '`')).toThrow(ShellLexError);
      else expect(processWord(input, baseEnv, '`').result).toBe(want);
    });
  }

  it('splits words with backtick escapes', () => {
    expect(processWords('a` b c\\ d', baseEnv, '`').words).toEqual(['a b', 'c\\', 'd']);
  });
});

// ---- error messages ------------------------------------------------------------------------------------
describe('errors', () => {
  const cases: [string, EscapeChar, string][] = [
    ['he${PWD', '\\', "syntax error: missing '}'"],
    ['${', '\\', "syntax error: missing '}'"],
    ['${}', '\\', 'syntax error: bad substitution'],
    ['${:-x}', '\\', 'syntax error: bad substitution'],
    ['${{x}', '\\', 'syntax error: bad substitution'],
    ['${X:-abc', '\\', "syntax error: missing '}'"],
    ['${X/abc', '\\', "syntax error: missing '/' in ${}"],
    ['${X=y}', '\\', 'unsupported modifier (=) in substitution'],
    ['${X:=y}', '\\', 'unsupported modifier (:=) in substitution'],
    ['${.}', '\\', 'unsupported modifier (.) in substitution'],
    ["'abc", '\\', 'unexpected end of statement while looking for matching single-quote'],
    ['"abc', '\\', 'unexpected end of statement while looking for matching double-quote'],
    ['${X#\\q}', '\\', "invalid pattern (\\q) in substitution: invalid escape '\\q'"],
  ];
  for (const [input, esc, detail] of cases) {
    it(JSON.stringify(input), () => {
      let err: unknown;
      try {
        processWord(input, env({ X: 'v' }), esc);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ShellLexError);
      const e = err as ShellLexError;
      expect(e.detail).toBe(detail);
      expect(e.word).toBe(input);
      expect(e.message).toBe(`failed to process ${JSON.stringify(input)}: ${detail}`);
    });
  }
});

// ---- BuildKit's other lexer modes ----------------------------------------------------------------------
describe('options', () => {
  const e = env({ A: 'a', E: '' });
  it('skipUnsetEnv leaves unset references as written', () => {
    const o = { skipUnsetEnv: true };
    expect(processWord('$A $B ${B} ${B:-x} ${E:-x} ${B/a/b}', e, '\\', o).result).toBe('a $B ${B} ${B:-x} x ${B/a/b}');
  });
  it('rawQuotes keeps the quotes', () => {
    expect(processWord(`'$A' "$A"`, e, '\\', { rawQuotes: true }).result).toBe(`'$A' "a"`);
  });
  it('skipProcessQuotes treats quotes as text', () => {
    expect(processWord(`'$A' "x`, e, '\\', { skipProcessQuotes: true }).result).toBe(`'a' "x`);
  });
  it('rawEscapes keeps escape characters', () => {
    expect(processWord('\\$A \\n', e, '\\', { rawEscapes: true }).result).toBe('\\$A \\n');
  });
});

describe('plain words take the fast path with the same result', () => {
  it('returns the word unchanged and splits on Unicode whitespace', () => {
    expect(processWord('/usr/local/bin', baseEnv).result).toBe('/usr/local/bin');
    expect(processWords('a\u00a0b\u3000c d', baseEnv).words).toEqual(['a', 'b', 'c', 'd']);
    expect(processWords('a\u00a0b\u3000c $PWD', baseEnv).words).toEqual(['a', 'b', 'c', '/home']);
  });
});
