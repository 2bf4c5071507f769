// Dockerfile syntax: directives, continuations, comments, escapes, CRLF, BOM, heredocs.
import { describe, expect, it } from 'vitest';
import { build, one, steps } from './helpers.js';
import { extractBuilderFlags, parseDockerfile, parseJSONPrefix, parseWords } from '../../src/frontend/parser.js';

const runArgs = (text: string) => one(text, 'run').args;

describe('parser directives', () => {
  it('records # syntax= and defaults the escape to backslash', () => {
    const g = build('# syntax=docker/dockerfile:1.7\nFROM a\n');
    expect(g.syntax).toBe('docker/dockerfile:1.7');
    expect(g.escape).toBe('\\');
  });
  it('accepts spaces and any case in the directive name', () => {
    expect(build('#  SYNTAX = example/fe \nFROM a\n').syntax).toBe('example/fe');
  });
  it('stops looking for directives after a comment, blank line or instruction', () => {
    expect(build('# hello\n# syntax=x\nFROM a\n').syntax).toBeUndefined();
    expect(build('\n# syntax=x\nFROM a\n').syntax).toBeUndefined();
    expect(build('FROM a\n# escape=`\nRUN echo \\\n  b\n').escape).toBe('\\');
  });
  it('an unknown directive ends the directive block', () => {
    expect(build('# foo=bar\n# syntax=x\nFROM a\n').syntax).toBeUndefined();
  });
  it('escape=` makes the backtick the continuation and escape character', () => {
    const t = '# escape=`\nFROM a\nRUN echo `\n  hello C:\\path\n';
    const g = build(t);
    expect(g.escape).toBe('`');
    expect(runArgs(t)).toEqual(['/bin/sh', '-c', 'echo   hello C:\\path']);
  });
  it('with escape=` a trailing backslash is literal', () => {
    expect(steps('# escape=`\nFROM a\nRUN dir c:\\\nRUN x\n').filter((s) => s.kind === 'run')).toHaveLength(2);
  });
});

describe('line continuations and comments', () => {
  const cases: [string, string, string][] = [
    ['joins lines, keeping the continuation lines as written', 'FROM a\nRUN echo a \\\n  b\n', 'echo a   b'],
    ['drops comment lines inside a continuation', 'FROM a\nRUN echo a \\\n# a comment\n  b\n', 'echo a   b'],
    ['drops indented comment lines inside a continuation', 'FROM a\nRUN echo a \\\n    # a comment\n  b\n', 'echo a   b'],
    ['drops empty continuation lines', 'FROM a\nRUN echo a \\\n\n  b\n', 'echo a   b'],
    ['tolerates spaces after the backslash', 'FROM a\nRUN echo a \\   \n  b\n', 'echo a   b'],
    ['a # inside the line is not a comment', 'FROM a\nRUN echo a # b\n', 'echo a # b'],
    ['leading whitespace before the instruction is ignored', 'FROM a\n    RUN echo a\n', 'echo a'],
    ['CRLF line endings', 'FROM a\r\nRUN echo a \\\r\n  b\r\n', 'echo a   b'],
    ['a UTF-8 BOM', '\ufeffFROM a\nRUN echo a\n', 'echo a'],
    ['a backslash alone on a line continues', 'FROM a\nRUN echo a \\\n\\\n b\n', 'echo a  b'],
  ];
  for (const [name, text, cmd] of cases) {
    it(name, () => {
      expect(runArgs(text)).toEqual(['/bin/sh', '-c', cmd]);
    });
  }
  it('an escaped escape at end of line is not a continuation', () => {
    const s = steps('FROM a\nRUN echo hi \\\\\nRUN echo two\n').filter((x) => x.kind === 'run');
    expect(s).toHaveLength(2);
  });
  it('instruction names are case-insensitive', () => {
    expect(runArgs('from a\nrun echo x\n')).toEqual(['/bin/sh', '-c', 'echo x']);
    expect(runArgs('FROM a\nRun echo x\n')).toEqual(['/bin/sh', '-c', 'echo x']);
  });
  it('locations are 1-based and cover continuation lines', () => {
    const r = one('# c\nFROM a\n\nRUN echo \\\n  a \\\n  b\nUSER x\n', 'run');
    expect(r.location).toEqual({ file: 'Dockerfile', line: 4, endLine: 6 });
    expect(r.original).toBe('RUN echo   a   b');
  });
});

describe('heredocs', () => {
  it('records the content, chomp and quoting of each heredoc', () => {
    const { nodes } = parseDockerfile('FROM a\nRUN <<-"EOT" cat <<B\n\tone\n\tEOT\ntwo\nB\n');
    const run = nodes[1];
    expect(run.heredocs).toEqual([
      { name: 'EOT', content: '\tone\n', chomp: true, expand: false, fd: 0 },
      { name: 'B', content: 'two\n', chomp: false, expand: true, fd: 0 },
    ]);
    expect(run.endLine).toBe(6);
  });
  it('heredoc lines are not instructions', () => {
    const s = steps('FROM a\nRUN <<EOF\nFROM b\nBOGUS\nEOF\nUSER x\n');
    expect(s.map((x) => x.kind)).toEqual(['run', 'user']);
  });
  it('JSON-form instructions have no heredocs', () => {
    expect(() => build('FROM a\nRUN ["cat", "<<EOF"]\nEOF\n')).toThrow(/unknown instruction: EOF/);
  });
  it('a quoted <<EOF is not a heredoc', () => {
    expect(runArgs('FROM a\nRUN echo "<<EOF"\n')).toEqual(['/bin/sh', '-c', 'echo "<<EOF"']);
  });
});

describe('word and flag splitting', () => {
  it('extracts builder flags with quotes and stops at the first non-flag', () => {
    expect(extractBuilderFlags('--from=a --chown="x y" src dst')).toEqual(['src dst', ['--from=a', '--chown=x y']]);
    expect(extractBuilderFlags('--mount=type=cache,target=/x echo hi')).toEqual(['echo hi', ['--mount=type=cache,target=/x']]);
    expect(extractBuilderFlags('--link -- --not-a-flag /x')).toEqual([' --not-a-flag /x', ['--link']]);
  });
  it('splits words keeping quotes', () => {
    expect(parseWords('a="x y" b=\'z\'  c', '\\')).toEqual(['a="x y"', "b='z'", 'c']);
  });
  it('reads only the first JSON value, like Go json.Decoder', () => {
    expect(parseJSONPrefix(' ["a", "b c"] trailing')).toEqual(['a', 'b c']);
    expect(parseJSONPrefix('["a" "b"]')).toBeUndefined();
    expect(parseJSONPrefix('echo [x]')).toBeUndefined();
  });
});
