// ADD sources naming git repositories: which are (BuildKit's ParseGitRef), their parts, and the
// Dockerfile errors for refs, subdirectories and --checksum.
import { describe, expect, it } from 'vitest';
import { cleanSubdir, invalidGitRef, parseGitRef } from '../../src/frontend/git-ref.js';
import { build, expectError } from './helpers.js';

describe('parseGitRef', () => {
  it.each([
    ['https://host/o/r.git', { remote: 'https://host/o/r.git', scheme: 'https', ref: '', subdir: '' }],
    ['https://u:tok@host/o/r.git#v1.2:docs/site', { remote: 'https://u:tok@host/o/r.git', scheme: 'https', ref: 'v1.2', subdir: 'docs/site' }],
    ['http://127.0.0.1:8080/.git#main', { remote: 'http://127.0.0.1:8080/.git', scheme: 'http', ref: 'main', subdir: '' }],
    ['git://host/r#refs/heads/x', { remote: 'git://host/r', scheme: 'git', ref: 'refs/heads/x', subdir: '' }],
    ['ssh://git@host:22/r.git#:sub', { remote: 'ssh://git@host:22/r.git', scheme: 'ssh', ref: '', subdir: 'sub' }],
    ['git@github.com:o/r.git#main', { remote: 'git@github.com:o/r.git', scheme: 'ssh', ref: 'main', subdir: '' }],
    ['deploy_user@host.example:r#abc', { remote: 'deploy_user@host.example:r', scheme: 'ssh', ref: 'abc', subdir: '' }],
    // BuildKit's URL queries (Dockerfile 1.18); the query is not part of the remote.
    ['https://h/r.git?branch=dev&subdir=docs', { remote: 'https://h/r.git', scheme: 'https', ref: 'refs/heads/dev', subdir: 'docs' }],
    ['https://h/r.git?tag=v1&checksum=abc123', { remote: 'https://h/r.git', scheme: 'https', ref: 'refs/tags/v1', subdir: '', checksum: 'abc123' }],
    ['https://h/r.git?ref=pull/42/head', { remote: 'https://h/r.git', scheme: 'https', ref: 'pull/42/head', subdir: '' }],
    ['https://h/r.git?tag=v1#refs/tags/v1', { remote: 'https://h/r.git', scheme: 'https', ref: 'refs/tags/v1', subdir: '' }],
    ['https://h/r.git?commit=abc#v1', { remote: 'https://h/r.git', scheme: 'https', ref: 'v1', subdir: '', checksum: 'abc' }],
  ])('%s is a git source', (src, want) => {
    expect(parseGitRef(src)).toEqual(want);
  });

  it.each([
    'https://host/file.tar.gz',
    'https://host/r.git/x',
    'https://host/x?r.git',
    'github.com/o/r',
    './r.git',
    'file:///srv/r.git',
    'ext::sh -c x',
    'r.git',
    '/abs/r.git',
    '-oProxyCommand=x@h:r',
    'u@-oProxyCommand=x:r',
    'ssh://-oProxyCommand=x/r',
    'ssh://-u@h/r',
  ])('%s is not', (src) => {
    expect(parseGitRef(src)).toBeUndefined();
  });

  it.each([
    ['https://h/r.git?tag=v1#refs/heads/main', 'ref conflicts'],
    ['https://h/r.git?tag=v1&branch=v1', 'ref conflicts'],
    ['https://h/r.git?subdir=a#main:b', 'subdir conflicts'],
    ['https://h/r.git?token=x', 'unsupported git URL query parameter "token"'],
  ])('%s: %s', (src, why) => {
    expect(parseGitRef(src)?.invalid).toContain(why);
  });

  it('refuses refs git would read as options or that are not ref names', () => {
    expect(invalidGitRef('--upload-pack=touch /tmp/x')).toMatch(/cannot start with "-"/);
    expect(invalidGitRef('a b')).toBeDefined();
    expect(invalidGitRef('a..b')).toBeDefined();
    expect(invalidGitRef('x.lock')).toBeDefined();
    for (const ok of ['main', 'v1.2.3', 'refs/tags/v1', 'feature/x', 'a'.repeat(40)]) expect(invalidGitRef(ok)).toBeUndefined();
  });

  it('subdirectories are cleaned and cannot leave the repository', () => {
    expect(cleanSubdir('/a//b/./c/')).toBe('a/b/c');
    expect(cleanSubdir('a/../b')).toBe('b');
    expect(() => cleanSubdir('../etc')).toThrow(/leaves the repository/);
    expect(() => cleanSubdir('a/../../x')).toThrow(/leaves the repository/);
  });
});

describe('ADD of git sources in the frontend', () => {
  it('keeps the URL as written and takes a hex --checksum (commit prefix)', () => {
    const g = build('FROM a\nADD --checksum=0123abcd https://h/r.git#main:sub /src\n');
    expect(g.stages[0]!.steps[0]).toMatchObject({ urls: ['https://h/r.git#main:sub'], checksum: '0123abcd' });
  });
  it.each([
    ['a ref starting with -', 'FROM a\nRUN true\nADD https://h/r.git#--upload-pack=x /s\n', 3, ['invalid git ref', 'cannot start with "-"']],
    ['a subdir out of the repository', 'FROM a\nADD git@h:r.git#main:../../etc /s\n', 2, ['leaves the repository']],
    ['a non-hex checksum', 'FROM a\nADD --checksum=sha256:' + '0'.repeat(64) + ' https://h/r.git /s\n', 2, ['invalid checksum', 'expected hex commit hash']],
    ['a checksum with two sources', 'FROM a\nADD --checksum=abc https://h/r.git https://h/s.git /s/\n', 2, ['multiple sources']],
    ['conflicting refs in the URL', 'FROM a\nADD https://h/r.git?branch=x#y /s\n', 2, ['ref conflicts']],
    ['a non-hex checksum in the URL', 'FROM a\nADD https://h/r.git?checksum=zz /s\n', 2, ['invalid checksum zz']],
    ['credentials in the message', 'FROM a\nADD https://u:tok3n@h/r.git#-x /s\n', 2, ['https://u:xxxxx@h/r.git#-x']],
  ])('%s is an error on its line', (_name, text, line, parts) => {
    expect(expectError(text, line, parts).message).not.toContain('tok3n');
  });
});
