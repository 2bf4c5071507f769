import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isInside, mkdirAllInRoot, resolveInRoot, resolveInRootSync } from '../../src/fsutil/rootpath.js';

let base: string;
let root: string;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-rootpath-'));
  root = path.join(base, 'rootfs');
  fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(root, 'usr/lib'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  // A file outside the rootfs, that no resolution may reach.
  fs.writeFileSync(path.join(base, 'host-secret'), 'host');
  fs.symlinkSync('/', path.join(root, 'to-root'));
  fs.symlinkSync('../../..', path.join(root, 'up'));
  fs.symlinkSync('/etc', path.join(root, 'abs-etc'));
  fs.symlinkSync('usr/lib', path.join(root, 'lib'));
  fs.symlinkSync('../host-secret', path.join(root, 'secret-link'));
  fs.symlinkSync('loop2', path.join(root, 'loop1'));
  fs.symlinkSync('loop1', path.join(root, 'loop2'));
});

afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

describe('resolveInRoot', () => {
  const cases: [string, string][] = [
    ['/etc/passwd', 'etc/passwd'],
    ['etc/passwd', 'etc/passwd'],
    ['/../../etc/passwd', 'etc/passwd'],
    ['/to-root/etc/passwd', 'etc/passwd'],
    ['/up/etc/passwd', 'etc/passwd'],
    ['/up/up/up/host-secret', 'host-secret'],
    ['/abs-etc/passwd', 'etc/passwd'],
    ['/lib/x', 'usr/lib/x'],
    ['/secret-link', 'host-secret'],
    ['/missing/dir/file', 'missing/dir/file'],
    ['/proc/self/fd/3', 'proc/self/fd/3'],
    ['/', ''],
    ['', ''],
  ];
  it.each(cases)('%s -> <root>/%s', async (input, want) => {
    expect(await resolveInRoot(root, input)).toBe(path.join(root, want));
    expect(resolveInRootSync(root, input)).toBe(path.join(root, want));
  });

  it('does not follow a final symlink when asked not to', async () => {
    expect(await resolveInRoot(root, '/abs-etc', { followFinal: false })).toBe(path.join(root, 'abs-etc'));
    // ...but still follows links in the parents
    expect(await resolveInRoot(root, '/lib/../lib', { followFinal: false })).toBe(path.join(root, 'usr/lib'));
  });

  it('gives up on symlink loops instead of spinning', async () => {
    await expect(resolveInRoot(root, '/loop1/x')).rejects.toThrow(/too many levels of symbolic links/);
    expect(() => resolveInRootSync(root, '/loop1')).toThrow(/too many levels/);
  });

  it('rejects NUL bytes', async () => {
    await expect(resolveInRoot(root, '/etc/\0passwd')).rejects.toThrow(/NUL/);
  });

  it('keeps every result inside the root', async () => {
    for (const p of ['/up', '/to-root/..', '/secret-link/..', '../..', '/abs-etc/../../..']) {
      expect(isInside(root, await resolveInRoot(root, p))).toBe(true);
    }
  });
});

describe('mkdirAllInRoot', () => {
  it('creates nested directories with the given mode and owner', async () => {
    const made = await mkdirAllInRoot(root, '/a/b/c', 0o750, { uid: 1000, gid: 1000 });
    expect(made).toBe(path.join(root, 'a/b/c'));
    const st = fs.statSync(made);
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o750);
    expect([st.uid, st.gid]).toEqual([1000, 1000]);
  });

  it('creates through symlinks inside the root, never on the host', async () => {
    const made = await mkdirAllInRoot(root, '/up/up/escaped/dir');
    expect(made).toBe(path.join(root, 'escaped/dir'));
    expect(fs.existsSync(path.join(base, 'escaped'))).toBe(false);
    const viaAbs = await mkdirAllInRoot(root, '/to-root/tmp/x');
    expect(viaAbs).toBe(path.join(root, 'tmp/x'));
  });

  it('follows a dangling symlink and makes its missing parents too, inside the root', async () => {
    fs.symlinkSync('/missing/deeper/dir', path.join(root, 'dangling'));
    fs.symlinkSync('../../../../gone', path.join(root, 'dangling-up'));
    const made = await mkdirAllInRoot(root, '/dangling/x', 0o750, { uid: 1000, gid: 1000 });
    expect(made).toBe(path.join(root, 'missing/deeper/dir/x'));
    for (const p of ['missing', 'missing/deeper', 'missing/deeper/dir']) {
      const st = fs.statSync(path.join(root, p));
      expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o750, 1000, 1000]);
    }
    expect(await mkdirAllInRoot(root, '/dangling-up/y')).toBe(path.join(root, 'gone/y'));
    expect(fs.existsSync(path.join(base, 'gone'))).toBe(false);
  });

  it('fails clearly when a component is a file', async () => {
    await expect(mkdirAllInRoot(root, '/etc/passwd/x')).rejects.toThrow(/etc\/passwd exists and is not a directory/);
  });
});
