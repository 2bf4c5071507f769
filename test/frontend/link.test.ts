// COPY --link / ADD --link in the frontend: when the step keeps BuildKit's linked form, and the
// --chown values it refuses (a linked copy has no /etc/passwd to look names up in).
import { describe, expect, it } from 'vitest';
import { expectError, one } from './helpers.js';

describe('COPY --link', () => {
  it('is linked for COPY and ADD, with or without a numeric --chown', () => {
    expect(one('FROM a\nCOPY --link x /y\n', 'copy').link).toBe(true);
    expect(one('FROM a\nADD --link x.tar /y/\n', 'copy').link).toBe(true);
    expect(one('FROM a\nADD --link https://example.com/f /y/\n', 'copy').link).toBe(true);
    expect(one('FROM a\nCOPY --link=false x /y\n', 'copy').link).toBe(false);
    expect(one('FROM a\nCOPY x /y\n', 'copy').link).toBe(false);
    for (const chown of ['1000', '1000:1000', 'root', 'root:0', '0:root', ':5', '5:', '+7', '2147483647']) {
      expect(one(`FROM a\nCOPY --link --chown=${chown} x /y\n`, 'copy'), chown).toMatchObject({ link: true, chown });
    }
  });

  it('is a plain COPY when --chmod is given, as BuildKit drops --link then', () => {
    expect(one('FROM a\nCOPY --link --chmod=0755 x /y\n', 'copy').link).toBe(false);
    expect(one('FROM a\nCOPY --link --chmod=u+x x /y\n', 'copy').link).toBe(false);
    // ... and then a --chown name is looked up in the stage as usual.
    expect(one('FROM a\nCOPY --link --chmod=644 --chown=app:staff x /y\n', 'copy')).toMatchObject({ link: false, chown: 'app:staff' });
  });

  it('refuses a --chown user or group name, naming the line and the name', () => {
    expectError('FROM a\nCOPY --link --chown=app x /y\n', 2, ['COPY --link with --chown=app', '"app"', 'numeric']);
    expectError('FROM a\nCOPY --link --chown=1000:staff x /y\n', 2, ['"staff"', 'UID[:GID]']);
    expectError('FROM a\n\nADD --link --chown=app:1 x /y\n', 3, ['ADD --link', '"app"']);
    // After expansion: the value as the step would use it.
    expectError('FROM a\nARG U=web\nCOPY --link --chown=$U x /y\n', 3, ['--chown=web']);
    // Past a 32-bit id BuildKit's ParseInt fails and the value is a name.
    expectError('FROM a\nCOPY --link --chown=2147483648 x /y\n', 2, ['"2147483648"']);
  });

  it('keeps the WORKDIR-relative destination of the stage', () => {
    expect(one('FROM a\nWORKDIR /app\nCOPY --link x sub/\n', 'copy')).toMatchObject({ link: true, dest: '/app/sub', destIsDir: true });
  });
});
