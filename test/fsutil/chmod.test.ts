import { describe, expect, it } from 'vitest';
import { parseChmod } from '../../src/fsutil/chmod.js';

describe('parseChmod', () => {
  const cases: [spec: string, mode: number, isDir: boolean, want: number][] = [
    ['755', 0o644, false, 0o755],
    ['0644', 0o777, true, 0o644],
    ['4755', 0o644, false, 0o4755],
    ['u+x', 0o644, false, 0o744],
    ['+x', 0o644, false, 0o755],
    ['a+x', 0o600, false, 0o711],
    ['go-w', 0o666, false, 0o644],
    ['u=rwx,g=rx,o=', 0o644, false, 0o750],
    ['a+X', 0o644, false, 0o644],
    ['a+X', 0o644, true, 0o755],
    ['a+X', 0o744, false, 0o755],
    ['u+s', 0o755, false, 0o4755],
    ['g+s', 0o755, true, 0o2755],
    ['+t', 0o777, true, 0o1777],
    ['g=u', 0o740, false, 0o770],
    ['u+x-w', 0o644, false, 0o544],
    ['o=r,u-r', 0o640, false, 0o244],
  ];
  it.each(cases)('%s on %o (dir=%s) -> %o', (spec, mode, isDir, want) => {
    expect(parseChmod(spec)(mode, isDir)).toBe(want);
  });

  it.each(['8', '07778', '99999', '12345'])('refuses non-octal number %s as BuildKit does', (spec) => {
    expect(() => parseChmod(spec)).toThrow(`invalid chmod parameter: '${spec}'. it should be octal string and between 0 and 07777`);
  });

  it.each(['u+q', 'z+x', 'u', '', 'u+x,', 'rwx'])('refuses bad symbolic mode %j', (spec) => {
    expect(() => parseChmod(spec)).toThrow(/invalid chmod parameter/);
  });
});
