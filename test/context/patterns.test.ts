import { describe, expect, it } from 'vitest';
import { cleanPath, goMatch } from '../../src/context/gopath.js';
import { IgnorePatternError, PatternMatcher, parseIgnoreFile } from '../../src/context/patterns.js';

describe('parseIgnoreFile (ignorefile.ReadAll)', () => {
  it('drops comments, blank lines and a BOM, cleans, strips a leading slash (also after !)', () => {
    const text = '\uFEFFtest1\n/test2\n/a/file/here\n\nlastfile\n# comment\n  # not a comment  \n! /inverted/abs/path\n!\n! \n./x/../y/\r\n';
    expect(parseIgnoreFile(text)).toEqual(['test1', 'test2', 'a/file/here', 'lastfile', '# not a comment', '!inverted/abs/path', '!', '!', 'y']);
  });
});

describe('PatternMatcher (patternmatcher.MatchesOrParentMatches)', () => {
  // [patterns, path, excluded]
  const cases: [string[], string, boolean][] = [
    [['**'], 'file', true],
    [['**'], 'a/b/c', true],
    [['*'], 'fileutils.go', true],
    [['*'], 'a/b', true], // parent "a" matches
    [['*.go'], 'fileutils.go', true],
    [['*.go'], 'a/b.go', false],
    [['**/*.go'], 'a/b/c.go', true],
    [['**/*.go'], 'c.go', true],
    [['**/foo'], 'foo', true],
    [['**/foo'], 'a/foo', true],
    [['**/foo'], 'a/foo/bar', true],
    [['**/foo'], 'afoo', false],
    [['docs'], 'docs/README.md', true],
    [['docs'], 'docsx', false],
    [['foo/**'], 'foo', false],
    [['foo/**'], 'foo/x/y', true],
    [['a**'], 'abc/def', true], // a trailing ** is a string prefix test
    [['a/**/b'], 'a/b', true],
    [['a/**/b'], 'a/x/y/b', true],
    [['a/**/b'], 'a/x/yb', false],
    [['*/temp*'], 'somedir/temporary.txt', true],
    [['*/temp*'], 'temp', false],
    [['*/*/temp*'], 'somedir/subdir/temporary.txt', true],
    [['temp?'], 'tempa', true],
    [['temp?'], 'temp', false],
    [['[a-c]at'], 'bat', true],
    [['[a-c]at'], 'dat', false],
    [['[^a]at'], 'bat', true],
    [['[^a]at'], 'aat', false],
    [['{a,b}'], 'a', false], // braces are literal
    [['{a,b}'], '{a,b}', true],
    [['.*'], '.git', true], // dotfiles are not special
    [['*'], '.env', true],
    [['\\*'], '*', true],
    [['\\*'], 'a', false],
    [['a.b'], 'aXb', false], // regexp metacharacters are literal
    [['/foo'], 'foo', false], // New() does not strip "/" (parseIgnoreFile does)
    [['./foo'], 'foo', true],
    [['a/../b'], 'b', true],
    [['*.md', '!README.md'], 'README.md', false],
    [['*.md', '!README.md'], 'x.md', true],
    [['*.md', '!README*.md', 'README-secret.md'], 'README-secret.md', true],
    [['*.md', '!README*.md', 'README-secret.md'], 'README.md', false],
    [['*.md', 'README-secret.md', '!README*.md'], 'README-secret.md', false],
    [['dir', '!dir/keep'], 'dir/keep', false],
    [['dir', '!dir/keep'], 'dir/keep/sub/x', false],
    [['dir', '!dir/keep'], 'dir/other', true],
    [['!x'], 'x', false],
  ];
  it.each(cases)('%j excludes %s: %s', (patterns, p, want) => {
    expect(new PatternMatcher(patterns).matches(p)).toBe(want);
  });

  it('passes results to children as fsutil does (a parent match covers everything below)', () => {
    const m = new PatternMatcher(['a', '!a/b']);
    const a = m.match('a');
    expect(a.matched).toBe(true);
    const ab = m.match('a/b', a.info);
    expect(ab.matched).toBe(false);
    expect(m.match('a/b/c', ab.info).matched).toBe(false);
    expect(m.match('a/c', a.info).matched).toBe(true);
  });

  it('knows when an excluded directory must still be walked', () => {
    expect(new PatternMatcher(['src']).mayIncludeBelow('src')).toBe(false);
    expect(new PatternMatcher(['src', '!src/keep']).mayIncludeBelow('src')).toBe(true);
    expect(new PatternMatcher(['src', '!other/keep']).mayIncludeBelow('src')).toBe(false);
    expect(new PatternMatcher(['src', '!**/*.txt']).mayIncludeBelow('src')).toBe(true);
  });

  it('rejects bad syntax', () => {
    expect(() => new PatternMatcher(['!'])).toThrow(IgnorePatternError);
    expect(() => new PatternMatcher(['['])).toThrow(/syntax error in pattern/);
    expect(() => new PatternMatcher(['abc\\'])).toThrow(/trailing backslash/);
  });
});

describe('Go path helpers', () => {
  it.each([
    ['', '.'],
    ['a//b/./c/..', 'a/b'],
    ['/../a', '/a'],
    ['../a', '../a'],
    ['a/../..', '..'],
    ['/', '/'],
  ])('cleanPath(%j) = %j', (p, want) => expect(cleanPath(p)).toBe(want));

  it.each([
    ['*.txt', 'a.txt', true],
    ['*.txt', '.txt', true],
    ['?', 'ab', false],
    ['[a-z]x', 'qx', true],
    ['[^a-z]x', 'qx', false],
    ['\\*', '*', true],
    ['\\*', 'x', false],
    ['a[', 'a[', 'bad'],
    ['[]a]', ']', 'bad'],
  ] as const)('goMatch(%j, %j) = %j', (pat, name, want) => {
    if (want === 'bad') expect(() => goMatch(pat, name)).toThrow(/syntax error/);
    else expect(goMatch(pat, name)).toBe(want);
  });
});
