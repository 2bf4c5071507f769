import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readIgnorePatterns, walkContext } from '../../src/context/walk.js';
import type { FileStamp } from '../../src/context/stamp.js';

let ctx: string;

function write(rel: string, content = rel): void {
  const p = path.join(ctx, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
}

beforeEach(() => {
  ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ctx-'));
});
afterEach(() => fs.rmSync(ctx, { recursive: true, force: true }));

const paths = async (excludes?: string[]) => (await walkContext(ctx, excludes ? { excludes } : {})).map((e) => e.path);

describe('walkContext', () => {
  it('lists everything in walk order (byte order per directory, parents before children)', async () => {
    write('a/b');
    write('a-c');
    write('B');
    expect(await paths()).toEqual(['B', 'a', 'a/b', 'a-c']);
  });

  it('applies .dockerignore with exceptions; Dockerfile and .dockerignore are not special', async () => {
    write('Dockerfile', 'FROM scratch\n');
    write('.dockerignore', '*.md\n!README.md\nnode_modules\nsrc\n!src/keep\nDockerfile\n.dockerignore\n');
    write('a.txt');
    write('b.md');
    write('README.md');
    write('node_modules/x/y.js');
    write('src/keep/k.txt');
    write('src/drop.txt');
    write('src/other/o.txt');
    expect(await paths()).toEqual(['README.md', 'a.txt', 'src', 'src/keep', 'src/keep/k.txt']);
  });

  it('enters an excluded directory for glob exceptions and lists the parents of what comes back', async () => {
    write('dir/a/b.txt');
    write('dir/a/c.bin');
    write('dir/d.bin');
    expect(await paths(['dir', '!dir/**/*.txt'])).toEqual(['dir', 'dir/a', 'dir/a/b.txt']);
  });

  it('reports type, mode (setuid kept), owner, size, mtime, link target and hard links; never follows links', async () => {
    write('f', 'hello');
    fs.chownSync(path.join(ctx, 'f'), 1234, 5678); // before chmod: chown clears setuid
    fs.chmodSync(path.join(ctx, 'f'), 0o4755);
    fs.utimesSync(path.join(ctx, 'f'), 1_000_000, 1_000_000);
    fs.linkSync(path.join(ctx, 'f'), path.join(ctx, 'g'));
    fs.symlinkSync('/etc', path.join(ctx, 'etc-link'));
    write('real/x');
    fs.symlinkSync('real', path.join(ctx, 'dir-link'));
    const entries = await walkContext(ctx);
    expect(entries.map((e) => e.path)).toEqual(['dir-link', 'etc-link', 'f', 'g', 'real', 'real/x']);
    const f = entries.find((e) => e.path === 'f')!;
    expect(f).toMatchObject({ type: 'file', mode: 0o4755, uid: 1234, gid: 5678, size: 5, mtimeMs: 1_000_000_000 });
    expect(f.hardlinkTo).toBeUndefined();
    expect(entries.find((e) => e.path === 'g')).toMatchObject({ type: 'file', hardlinkTo: 'f' });
    expect(entries.find((e) => e.path === 'etc-link')).toMatchObject({ type: 'symlink', linkTarget: '/etc', size: 4 });
    expect(entries.find((e) => e.path === 'real')).toMatchObject({ type: 'dir' });
  });

  it('with fileStamps: the same entries, and what an upload needs of each listed file', async () => {
    write('f', 'hello');
    fs.utimesSync(path.join(ctx, 'f'), 1_000_000.25, 1_000_000.25);
    fs.linkSync(path.join(ctx, 'f'), path.join(ctx, 'g'));
    write('skip.log');
    write('dir/x');
    fs.symlinkSync('f', path.join(ctx, 'link'));
    const fileStamps = new Map<string, FileStamp>();
    const plain = await walkContext(ctx, { excludes: ['*.log'] });
    const withStamps = await walkContext(ctx, { excludes: ['*.log'], fileStamps });
    expect(withStamps).toEqual(plain);
    expect([...fileStamps.keys()].sort()).toEqual(['dir/x', 'f', 'g']);
    const st = fs.lstatSync(path.join(ctx, 'f'), { bigint: true });
    expect(fileStamps.get('f')).toEqual({
      mode: Number(st.mode & 0o7777n),
      size: 5,
      mtimeMs: 1_000_000_250,
      stamp: `${st.dev.toString(36)}:${st.ino.toString(36)}:${st.ctimeNs.toString(36)}`,
      inode: `${st.dev}:${st.ino}`, // two links
      isFile: true,
    });
    expect(fileStamps.get('dir/x')!.inode).toBeUndefined();
  });

  it('prefers <Dockerfile>.dockerignore next to the Dockerfile', async () => {
    write('.dockerignore', 'a\n');
    write('a');
    write('b');
    const df = path.join(ctx, 'build.Dockerfile');
    fs.writeFileSync(df, 'FROM scratch\n');
    fs.writeFileSync(`${df}.dockerignore`, 'b\n');
    expect(await readIgnorePatterns(ctx, df)).toEqual(['b']);
    expect(await readIgnorePatterns(ctx)).toEqual(['a']);
    expect((await walkContext(ctx, { dockerfile: df })).map((e) => e.path)).toContain('a');
  });

  it('names the path in its errors', async () => {
    await expect(walkContext(path.join(ctx, 'missing'))).rejects.toThrow(path.join(ctx, 'missing'));
    write('.dockerignore', '[\n');
    await expect(walkContext(ctx)).rejects.toThrow(/invalid .dockerignore pattern in .*kiln-ctx-.*syntax error/);
  });
});
