import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { makeFixture, type Fixture } from './helpers.js';

let f: Fixture;
beforeEach(() => {
  f = makeFixture();
});
afterEach(() => f.cleanup());

const read = (p: string) => fs.readFileSync(p, 'utf8');
const mode = (p: string) => fs.lstatSync(p).mode & 0o7777;
const owner = (p: string) => {
  const st = fs.lstatSync(p);
  return [st.uid, st.gid];
};

describe('COPY: where things land', () => {
  it('file to file: content, mode and mtime kept, owner reset to 0:0 from the context', async () => {
    const src = f.write('a.txt', 'A');
    fs.chownSync(src, 1234, 5678);
    fs.chmodSync(src, 0o640);
    fs.utimesSync(src, 1_000_000, 1_000_000);
    const s = await f.run({ sources: ['a.txt'], dest: '/out.txt' });
    expect(read(f.dst('out.txt'))).toBe('A');
    expect(mode(f.dst('out.txt'))).toBe(0o640);
    expect(owner(f.dst('out.txt'))).toEqual([0, 0]);
    expect(fs.statSync(f.dst('out.txt')).mtimeMs).toBe(1_000_000_000);
    expect(s).toMatchObject({ files: 1, bytes: 1, targets: ['/out.txt'] });
  });

  it('file to an existing directory written without a slash goes inside it', async () => {
    f.write('a.txt', 'A');
    fs.mkdirSync(f.dst('d'));
    await f.run({ sources: ['a.txt'], dest: '/d' });
    expect(read(f.dst('d/a.txt'))).toBe('A');
  });

  it('file to dir/ creates missing parents 0755 root-owned', async () => {
    f.write('a.txt', 'A');
    await f.run({ sources: ['a.txt'], dest: '/x/y/', destIsDir: true });
    expect(read(f.dst('x/y/a.txt'))).toBe('A');
    expect(mode(f.dst('x'))).toBe(0o755);
    expect(mode(f.dst('x/y'))).toBe(0o755);
  });

  it('file to a missing path without a slash is that file name, parents created', async () => {
    f.write('a.txt', 'A');
    await f.run({ sources: ['a.txt'], dest: '/new/name' });
    expect(read(f.dst('new/name'))).toBe('A');
  });

  it('a directory copies its contents, not itself; inner dirs keep their mode, the top target is 0755', async () => {
    f.write('dir/g', 'G');
    f.write('dir/sub/f', 'F');
    fs.chmodSync(path.join(f.ctx, 'dir'), 0o700);
    fs.chmodSync(path.join(f.ctx, 'dir/sub'), 0o750);
    fs.utimesSync(path.join(f.ctx, 'dir/sub'), 2_000_000, 2_000_000);
    await f.run({ sources: ['dir'], dest: '/dst' });
    expect(read(f.dst('dst/g'))).toBe('G');
    expect(read(f.dst('dst/sub/f'))).toBe('F');
    expect(fs.existsSync(f.dst('dst/dir'))).toBe(false);
    expect(mode(f.dst('dst'))).toBe(0o755);
    expect(mode(f.dst('dst/sub'))).toBe(0o750);
    expect(fs.statSync(f.dst('dst/sub')).mtimeMs).toBe(2_000_000_000);
  });

  it('"." copies the whole (visible) context', async () => {
    f.write('a');
    f.write('d/b');
    await f.run({ sources: ['.'], dest: '/app/', destIsDir: true });
    expect(fs.readdirSync(f.dst('app')).sort()).toEqual(['a', 'd']);
  });

  it('wildcards match per path element (Go filepath.Match syntax)', async () => {
    f.write('a.txt');
    f.write('b.txt');
    f.write('c.md');
    f.write('x1/in.txt');
    f.write('x2/in.txt');
    f.write('y/in.txt');
    await f.run({ sources: ['*.txt', 'x[0-9]/in.txt'], dest: '/w/', destIsDir: true });
    expect(fs.readdirSync(f.dst('w')).sort()).toEqual(['a.txt', 'b.txt', 'in.txt']);
    expect(read(f.dst('w/in.txt'))).toBe('x2/in.txt'); // later matches overwrite earlier ones
  });

  it('a wildcard with one match may name a file; with several, each is copied over the last (BuildKit, no trailing-slash rule)', async () => {
    f.write('only.jar', 'J');
    await f.run({ sources: ['*.jar'], dest: '/app.jar' });
    expect(read(f.dst('app.jar'))).toBe('J');
    f.write('two.jar', 'T');
    await f.run({ sources: ['*.jar'], dest: '/app2.jar' });
    expect(read(f.dst('app2.jar'))).toBe('T'); // only.jar, then two.jar over it
  });

  it('several sources to a path that is not a directory: copied there in turn, the last winning', async () => {
    f.write('a', 'A');
    f.write('b', 'B');
    f.write('d1/f1', '1');
    f.write('d2/f2', '2');
    await f.run({ sources: ['a', 'b'], dest: '/d' });
    expect(read(f.dst('d'))).toBe('B');
    await f.run({ sources: ['a', 'nomatch*'], dest: '/e' });
    expect(read(f.dst('e'))).toBe('A');
    await f.run({ sources: ['d1', 'd2'], dest: '/m' });
    expect(fs.readdirSync(f.dst('m')).sort()).toEqual(['f1', 'f2']);
  });

  it('an empty wildcard copies nothing (BuildKit allows it); a missing source or wildcard parent is "not found"', async () => {
    f.write('a');
    const s = await f.run({ sources: ['nomatch*', 'a'], dest: '/d/', destIsDir: true });
    expect(s.files).toBe(1);
    await expect(f.run({ sources: ['missing'], dest: '/d/', destIsDir: true })).rejects.toThrow(
      'Dockerfile:3: COPY missing: failed to compute cache key: "/missing": not found in the build context',
    );
    await expect(f.run({ sources: ['nodir/*.txt'], dest: '/d/', destIsDir: true })).rejects.toThrow(/"\/nodir": not found/);
  });

  it('only empty wildcards: nothing copied and, as BuildKit, no destination directory created', async () => {
    f.write('a');
    const s = await f.run({ sources: ['nomatch*', 'none?.txt'], dest: '/d/sub/', destIsDir: true });
    expect(s.files).toBe(0);
    expect(fs.existsSync(f.dst('d'))).toBe(false);
    await f.run({ sources: ['nomatch*'], dest: '/e', destIsDir: false });
    expect(fs.existsSync(f.dst('e'))).toBe(false);
  });

  it('a file where a directory exists is refused', async () => {
    f.write('a.txt');
    fs.mkdirSync(f.dst('d/a.txt'), { recursive: true });
    await expect(f.run({ sources: ['a.txt'], dest: '/d/', destIsDir: true })).rejects.toThrow(/cannot replace directory \/d\/a.txt with a file/);
  });

  it('heredoc sources are written as files (0644, or --chmod)', async () => {
    await f.run({ inline: [{ name: 'EOF', content: 'echo hi\n' }], dest: '/run.sh' });
    expect(read(f.dst('run.sh'))).toBe('echo hi\n');
    expect(mode(f.dst('run.sh'))).toBe(0o644);
    await f.run({
      inline: [
        { name: 'one', content: '1' },
        { name: 'two', content: '2' },
      ],
      dest: '/h/',
      destIsDir: true,
      chmod: '755',
    });
    expect(read(f.dst('h/two'))).toBe('2');
    expect(mode(f.dst('h/one'))).toBe(0o755);
  });
});

describe('COPY: hostile paths stay inside their roots', () => {
  it('"../../x" is cleaned inside the context', async () => {
    f.write('a.txt', 'inside');
    fs.writeFileSync(path.join(f.base, 'a.txt'), 'outside');
    await f.run({ sources: ['../../a.txt'], dest: '/z' });
    expect(read(f.dst('z'))).toBe('inside');
  });

  it('a context symlink to /etc is resolved inside the context, never on the host', async () => {
    fs.symlinkSync('/etc', path.join(f.ctx, 'etc-link'));
    await expect(f.run({ sources: ['etc-link/passwd'], dest: '/p' })).rejects.toThrow(/"\/etc-link\/passwd": not found/);
    await expect(f.run({ sources: ['etc-link/pass*'], dest: '/p' })).rejects.toThrow(/not found/);
    f.write('etc/passwd', 'context passwd');
    await f.run({ sources: ['etc-link/passwd'], dest: '/p' });
    expect(read(f.dst('p'))).toBe('context passwd');
    fs.symlinkSync('../../..', path.join(f.ctx, 'up'));
    await f.run({ sources: ['up/up/etc/passwd'], dest: '/q' });
    expect(read(f.dst('q'))).toBe('context passwd');
  });

  it('the destination resolves through rootfs symlinks without leaving the rootfs', async () => {
    // A unique name, so that a broken resolver leaves a recognisable file on the host that the test
    // detects and removes.
    const probe = `kiln-probe-${path.basename(f.base)}`;
    const hostProbes = [`/etc/${probe}`, `/${probe}`, path.join(path.dirname(f.base), probe)];
    try {
      f.write(probe, 'A');
      fs.symlinkSync('/', f.dst('out'));
      fs.symlinkSync('../../../..', f.dst('up'));
      await f.run({ sources: [probe], dest: '/out/etc/', destIsDir: true });
      expect(read(f.dst(`etc/${probe}`))).toBe('A');
      await f.run({ sources: [probe], dest: '/up/up/', destIsDir: true });
      expect(read(f.dst(probe))).toBe('A');
      for (const p of hostProbes) expect(fs.existsSync(p)).toBe(false);
    } finally {
      for (const p of hostProbes) fs.rmSync(p, { force: true });
    }
  });

  it('a symlink at the target file is replaced, not written through', async () => {
    f.write('a.txt', 'A');
    fs.writeFileSync(path.join(f.base, 'victim'), 'victim');
    fs.symlinkSync(path.join(f.base, 'victim'), f.dst('a.txt'));
    fs.mkdirSync(f.dst('d'));
    fs.symlinkSync(path.join(f.base, 'victim'), f.dst('d/a.txt'));
    await f.run({ sources: ['a.txt'], dest: '/d/', destIsDir: true });
    expect(read(path.join(f.base, 'victim'))).toBe('victim');
    expect(fs.lstatSync(f.dst('d/a.txt')).isFile()).toBe(true);
  });

  it('.dockerignore-excluded files are invisible to COPY', async () => {
    f.write('.dockerignore', 'secret.txt\nDockerfile\n');
    f.write('secret.txt', 'S');
    f.write('Dockerfile', 'FROM scratch');
    f.write('public.txt', 'P');
    await expect(f.run({ sources: ['secret.txt'], dest: '/s' })).rejects.toThrow(/"\/secret.txt": not found \(it is excluded by .dockerignore\)/);
    await expect(f.run({ sources: ['Dockerfile'], dest: '/s' })).rejects.toThrow(/not found/);
    await f.run({ sources: ['.'], dest: '/all/', destIsDir: true });
    expect(fs.readdirSync(f.dst('all')).sort()).toEqual(['.dockerignore', 'public.txt']);
    await f.run({ sources: ['*'], dest: '/star/', destIsDir: true });
    expect(fs.readdirSync(f.dst('star')).sort()).toEqual(['.dockerignore', 'public.txt']);
  });

  it('an ignored symlink cannot be used as a path to visible files', async () => {
    f.write('.dockerignore', 'link\n');
    f.write('real/x', 'X');
    fs.symlinkSync('real', path.join(f.ctx, 'link'));
    await expect(f.run({ sources: ['link/x'], dest: '/x' })).rejects.toThrow(/not found/);
  });
});

describe('COPY: links, modes, owners', () => {
  it('symlinks inside a copied directory stay symlinks; a named symlink source is followed', async () => {
    f.write('dir/target', 'T');
    fs.symlinkSync('../elsewhere', path.join(f.ctx, 'dir/rel-link'));
    fs.symlinkSync('/etc/passwd', path.join(f.ctx, 'dir/abs-link'));
    fs.symlinkSync('dir/target', path.join(f.ctx, 'top-link'));
    await f.run({ sources: ['dir'], dest: '/s/', destIsDir: true });
    expect(fs.readlinkSync(f.dst('s/rel-link'))).toBe('../elsewhere');
    expect(fs.readlinkSync(f.dst('s/abs-link'))).toBe('/etc/passwd');
    await f.run({ sources: ['top-link'], dest: '/t/', destIsDir: true });
    expect(fs.lstatSync(f.dst('t/top-link')).isFile()).toBe(true);
    expect(read(f.dst('t/top-link'))).toBe('T');
  });

  it('hard links within one copy are preserved', async () => {
    const h1 = f.write('dir/h1', 'H');
    fs.linkSync(h1, path.join(f.ctx, 'dir/h2'));
    const s = await f.run({ sources: ['dir'], dest: '/h/', destIsDir: true });
    expect(fs.statSync(f.dst('h/h1')).ino).toBe(fs.statSync(f.dst('h/h2')).ino);
    expect(s).toMatchObject({ files: 1, hardlinks: 1 });
  });

  it('setuid, setgid and sticky bits are kept', async () => {
    fs.chmodSync(f.write('dir/suid'), 0o4755);
    fs.chmodSync(f.write('dir/sgid'), 0o2711);
    fs.mkdirSync(path.join(f.ctx, 'dir/tmp'));
    fs.chmodSync(path.join(f.ctx, 'dir/tmp'), 0o1777);
    await f.run({ sources: ['dir'], dest: '/m/', destIsDir: true });
    expect(mode(f.dst('m/suid'))).toBe(0o4755);
    expect(mode(f.dst('m/sgid'))).toBe(0o2711);
    expect(mode(f.dst('m/tmp'))).toBe(0o1777);
  });

  it('--chmod applies to every copied file and directory', async () => {
    f.write('dir/a');
    f.write('dir/sub/b');
    await f.run({ sources: ['dir'], dest: '/c/', destIsDir: true, chmod: '0640' });
    expect(mode(f.dst('c/a'))).toBe(0o640);
    expect(mode(f.dst('c/sub'))).toBe(0o640);
    expect(mode(f.dst('c/sub/b'))).toBe(0o640);
    await f.run({ sources: ['dir/a'], dest: '/s', chmod: '4755' });
    expect(mode(f.dst('s'))).toBe(0o4755);
    // Symbolic modes apply to each file's own mode, as current BuildKit does.
    await f.run({ sources: ['dir/a'], dest: '/x', chmod: 'u+x,go-r' });
    expect(mode(f.dst('x'))).toBe(((fs.statSync(path.join(f.ctx, 'dir/a')).mode & 0o7777) | 0o100) & ~0o044);
    await expect(f.run({ sources: ['dir/a'], dest: '/y', chmod: 'u+q' })).rejects.toThrow(/invalid chmod parameter/);
  });

  it.each([
    ['kilnuser', [4321, 4322]],
    ['kilnuser:kilnstaff', [4321, 50]],
    ['7', [7, 7]],
    ['7:8', [7, 8]],
    ['kilnuser:9', [4321, 9]],
  ] as const)('--chown=%s gives %j, looked up in the destination rootfs, also on created parents', async (spec, want) => {
    f.write('dir/a');
    await f.run({ sources: ['dir'], dest: '/o/p/', destIsDir: true, chown: spec });
    expect(owner(f.dst('o/p/a'))).toEqual(want);
    expect(owner(f.dst('o'))).toEqual(want);
    expect(owner(f.dst('o/p'))).toEqual(want);
  });

  // BuildKit: llb.WithUser splits at the first ':' and sends an empty part as id 0; readUser leaves
  // the ids as they were for a name the image's files do not have (no error).
  it.each([
    [':kilnstaff', [0, 50]],
    [':9', [0, 9]],
    ['kilnuser:', [4321, 0]],
    ['7:', [7, 0]],
    [':', [0, 0]],
    ['nosuchuser', [0, 0]],
    [':nosuchgroup', [0, 0]],
    ['kilnuser:nosuchgroup', [4321, 4322]],
    ['nosuchuser:kilnstaff', [0, 50]],
    ['+7:+8', [7, 8]],
    ['007:0050', [7, 50]],
    ['root:kilnstaff', [0, 50]],
    ['kilnuser:root', [4321, 0]],
    ['kilnuser:kilnstaff:x', [4321, 4322]],
    ['2147483647', [2147483647, 2147483647]],
    ['2147483648', [0, 0]],
  ] as const)('--chown=%s gives %j as BuildKit resolves it', async (spec, want) => {
    f.write('a');
    await f.run({ sources: ['a'], dest: '/a', chown: spec });
    expect(owner(f.dst('a'))).toEqual(want);
  });

  it('--chown= (empty, e.g. an unset ARG) is no --chown; a negative id is refused', async () => {
    f.write('a');
    await f.run({ sources: ['a'], dest: '/a', chown: '' });
    expect(owner(f.dst('a'))).toEqual([0, 0]);
    await expect(f.run({ sources: ['a'], dest: '/b', chown: '-1' })).rejects.toThrow(/--chown=-1: invalid --chown=-1: negative id -1/);
  });

  it('--chown names come from the first matching passwd/group line; a missing /etc/passwd means 0:0', async () => {
    f.write('a');
    fs.appendFileSync(path.join(f.rootfs, 'etc/passwd'), 'dup:x:11:12::/:/bin/sh\ndup:x:13:14::/:/bin/sh\n');
    fs.appendFileSync(path.join(f.rootfs, 'etc/group'), '# dupg:x:1:\ndupg:x:21:\ndupg:x:22:\n');
    await f.run({ sources: ['a'], dest: '/a', chown: 'dup:dupg' });
    expect(owner(f.dst('a'))).toEqual([11, 21]);
    fs.rmSync(path.join(f.rootfs, 'etc/passwd'));
    await f.run({ sources: ['a'], dest: '/b', chown: 'kilnuser' });
    expect(owner(f.dst('b'))).toEqual([0, 0]);
  });

  it('from a stage rootfs ownership is preserved', async () => {
    const stage = path.join(f.base, 'stage');
    const p = f.write('usr/bin/tool', 'T', stage);
    fs.chownSync(p, 1234, 5678);
    fs.chmodSync(p, 0o4750);
    await f.run({ sources: ['/usr/bin/tool'], dest: '/bin/', destIsDir: true }, { kind: 'rootfs', dir: stage });
    expect(owner(f.dst('bin/tool'))).toEqual([1234, 5678]);
    expect(mode(f.dst('bin/tool'))).toBe(0o4750);
  });
});

describe('COPY --exclude and --parents', () => {
  it('--exclude patterns apply below a named directory, and to wildcard matches', async () => {
    f.write('dir/a.md');
    f.write('dir/a.txt');
    f.write('dir/sub/b.md');
    await f.run({ sources: ['dir'], dest: '/e1/', destIsDir: true, exclude: ['*.md'] });
    expect(fs.existsSync(f.dst('e1/a.md'))).toBe(false);
    expect(fs.existsSync(f.dst('e1/a.txt'))).toBe(true);
    expect(fs.existsSync(f.dst('e1/sub/b.md'))).toBe(true);
    await f.run({ sources: ['dir'], dest: '/e2/', destIsDir: true, exclude: ['**/*.md'] });
    expect(fs.existsSync(f.dst('e2/sub/b.md'))).toBe(false);
    f.write('homer.txt');
    f.write('homer.md');
    await f.run({ sources: ['hom*'], dest: '/e3/', destIsDir: true, exclude: ['*.txt'] });
    expect(fs.readdirSync(f.dst('e3'))).toEqual(['homer.md']);
  });

  it('--parents keeps the source parents (from the /./ pivot when there is one)', async () => {
    f.write('x/a.txt', 'A');
    f.write('y/b/c.txt', 'C');
    f.write('p/q/r/s.txt', 'S');
    fs.chmodSync(path.join(f.ctx, 'y/b'), 0o750);
    await f.run({ sources: ['x/a.txt', 'y/b/c.txt', 'p/./q/r'], dest: '/p/', destIsDir: true, parents: true });
    expect(read(f.dst('p/x/a.txt'))).toBe('A');
    expect(read(f.dst('p/y/b/c.txt'))).toBe('C');
    expect(mode(f.dst('p/y/b'))).toBe(0o750);
    expect(read(f.dst('p/q/r/s.txt'))).toBe('S');
    expect(fs.existsSync(f.dst('p/p'))).toBe(false);
    await f.run({ sources: ['*/a.txt'], dest: '/w/', destIsDir: true, parents: true });
    expect(read(f.dst('w/x/a.txt'))).toBe('A');
  });
});

describe('COPY: special files, xattrs, an existing tree', () => {
  // A v2 file capability: CAP_NET_RAW (bit 13) permitted and effective.
  const CAP_NET_RAW = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

  it('xattrs are copied onto files and directories, file capabilities surviving the chown', async () => {
    const stage = path.join(f.base, 'stage');
    const tool = f.write('app/bin/ping', 'P', stage);
    fs.chownSync(tool, 1000, 1000);
    setAttributeSync(tool, 'security.capability', CAP_NET_RAW);
    setAttributeSync(tool, 'user.note', 'n1');
    setAttributeSync(path.join(stage, 'app/bin'), 'user.dir', 'd1');
    const mtime = new Date('2020-01-02T03:04:05Z');
    fs.utimesSync(tool, mtime, mtime);
    await f.run({ sources: ['/app'], dest: '/opt/', destIsDir: true }, { kind: 'rootfs', dir: stage });
    expect(getAttributeSync(f.dst('opt/bin/ping'), 'security.capability')).toEqual(CAP_NET_RAW);
    expect(getAttributeSync(f.dst('opt/bin/ping'), 'user.note')?.toString()).toBe('n1');
    expect(getAttributeSync(f.dst('opt/bin'), 'user.dir')?.toString()).toBe('d1');
    expect(owner(f.dst('opt/bin/ping'))).toEqual([1000, 1000]);
    expect(fs.lstatSync(f.dst('opt/bin/ping')).mtime.toISOString()).toBe(mtime.toISOString());
    // --chown: the capability is still there after the owner changes.
    await f.run({ sources: ['/app/bin/ping'], dest: '/c/', destIsDir: true, chown: '7:8' }, { kind: 'rootfs', dir: stage });
    expect(owner(f.dst('c/ping'))).toEqual([7, 8]);
    expect(getAttributeSync(f.dst('c/ping'), 'security.capability')).toEqual(CAP_NET_RAW);
  });

  it('FIFOs and device nodes are recreated with their metadata; a socket is refused', async () => {
    const stage = path.join(f.base, 'stage');
    fs.mkdirSync(path.join(stage, 'dev'), { recursive: true });
    execFileSync('mkfifo', [path.join(stage, 'dev/pipe')]);
    execFileSync('mknod', [path.join(stage, 'dev/null2'), 'c', '1', '3']);
    fs.chmodSync(path.join(stage, 'dev/pipe'), 0o640);
    fs.writeFileSync(f.dst('pipe-in-the-way'), 'x');
    await f.run({ sources: ['/dev'], dest: '/d/', destIsDir: true }, { kind: 'rootfs', dir: stage });
    expect(fs.lstatSync(f.dst('d/pipe')).isFIFO()).toBe(true);
    expect(mode(f.dst('d/pipe'))).toBe(0o640);
    const dev = fs.lstatSync(f.dst('d/null2'));
    expect(dev.isCharacterDevice()).toBe(true);
    expect(dev.rdev).toBe(fs.lstatSync(path.join(stage, 'dev/null2')).rdev);
  });

  it('merging into an existing tree: files and links in the way are replaced, never written through; a link where a directory goes is refused', async () => {
    f.write('d/a.txt', 'A');
    f.write('d/sub/b.txt', 'B');
    fs.symlinkSync('a.txt', path.join(f.ctx, 'd/l'));
    const victim = path.join(f.base, 'victim');
    fs.mkdirSync(victim);
    fs.writeFileSync(path.join(victim, 'a.txt'), 'victim');
    fs.mkdirSync(f.dst('t/sub'), { recursive: true });
    fs.chmodSync(f.dst('t'), 0o711);
    fs.symlinkSync(path.join(victim, 'a.txt'), f.dst('t/a.txt')); // a link where a file goes
    fs.writeFileSync(f.dst('t/l'), 'a file where a link goes');
    fs.writeFileSync(f.dst('t/sub/old'), 'kept');
    await f.run({ sources: ['d'], dest: '/t' });
    expect(read(path.join(victim, 'a.txt'))).toBe('victim');
    expect(read(f.dst('t/a.txt'))).toBe('A');
    expect(fs.readlinkSync(f.dst('t/l'))).toBe('a.txt');
    expect(read(f.dst('t/sub/b.txt'))).toBe('B');
    expect(read(f.dst('t/sub/old'))).toBe('kept');
    expect(mode(f.dst('t'))).toBe(0o711); // the top target keeps its own metadata

    fs.rmSync(f.dst('t/sub'), { recursive: true });
    fs.symlinkSync(victim, f.dst('t/sub')); // a link where a directory goes
    await expect(f.run({ sources: ['d'], dest: '/t' })).rejects.toThrow(/cannot copy to non-directory: \/t\/sub/);
    expect(fs.readdirSync(victim)).toEqual(['a.txt']);
    fs.rmSync(f.dst('t/sub'));
    fs.rmSync(f.dst('t/a.txt'));
    fs.mkdirSync(f.dst('t/a.txt')); // ...and a directory where a file goes
    await expect(f.run({ sources: ['d'], dest: '/t' })).rejects.toThrow(/cannot replace directory \/t\/a.txt with a file/);
  });

  it('hard links: the first path in name order is the copy, later ones link to it', async () => {
    const first = f.write('h/a', 'H');
    fs.linkSync(first, path.join(f.ctx, 'h/b'));
    fs.linkSync(first, path.join(f.ctx, 'h/c'));
    const s = await f.run({ sources: ['h'], dest: '/h/', destIsDir: true });
    expect(s).toMatchObject({ files: 1, hardlinks: 2 });
    expect(s.written.filter((w) => w.type === 'file').map((w) => w.src)).toEqual(['h/a', 'h/b', 'h/c']);
    expect(new Set(['a', 'b', 'c'].map((n) => fs.statSync(f.dst(`h/${n}`)).ino)).size).toBe(1);
  });

  it('a large copy lets the event loop run while it works', async () => {
    for (let i = 0; i < 3000; i++) f.write(`many/d${i % 30}/f${i}`, String(i));
    // Turns of the event loop while the tree is being copied (its first directory is there).
    let during = 0;
    let done = false;
    const tick = () => {
      if (done) return;
      if (fs.existsSync(f.dst('m/d0'))) during++;
      setImmediate(tick);
    };
    setImmediate(tick);
    const s = await f.run({ sources: ['many'], dest: '/m/', destIsDir: true });
    done = true;
    expect(s.files).toBe(3000);
    // 3,000 file creations take far longer than one slice: the loop ran between slices.
    expect(during).toBeGreaterThan(0);
  });
});
