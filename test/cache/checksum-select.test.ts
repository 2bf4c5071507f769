// Which context entries a COPY reads: tables over a real context (with .dockerignore, symlinks,
// hard links), each checked against what fileop's copy() really copies from the same context.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectEntries, type Selection } from '../../src/cache/checksum.js';
import { walkContext, type ContextEntry } from '../../src/context/index.js';
import { copy } from '../../src/fileop/index.js';

let ctx: string;
let entries: ContextEntry[];
let scratch: string;

const FILES = [
  'a.txt',
  'b.txt',
  'c.md',
  'src/x.js',
  'src/y.js',
  'src/README',
  'src/sub/z.js',
  'src/sub/deep/w.js',
  'docs/guide.md',
  'secret.key',
  'ignored/i.txt',
  'keep/k.txt',
  'keep/drop.txt',
  'hard1',
  'sp ace/[x].txt',
];

beforeAll(async () => {
  ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-select-ctx-'));
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-select-out-'));
  for (const f of FILES) {
    fs.mkdirSync(path.join(ctx, path.dirname(f)), { recursive: true });
    fs.writeFileSync(path.join(ctx, f), `${f}\n`); // unique content: what was copied can be told apart
  }
  fs.writeFileSync(path.join(ctx, '.dockerignore'), 'secret*\nignored/\nkeep/drop.txt\n');
  fs.linkSync(path.join(ctx, 'hard1'), path.join(ctx, 'hard2'));
  fs.symlinkSync('src', path.join(ctx, 'link-to-src'));
  fs.symlinkSync('a.txt', path.join(ctx, 'link-a'));
  fs.symlinkSync('/c.md', path.join(ctx, 'abs-c')); // absolute: restarts at the context root
  fs.symlinkSync('../../../../docs/guide.md', path.join(ctx, 'src/sub/up-guide')); // ".." stops at the root
  fs.symlinkSync('../../docs', path.join(ctx, 'src/sub/uplink')); // inside a copied tree: copied as a link
  fs.mkdirSync(path.join(ctx, 'bad'));
  fs.symlinkSync('../secret.key', path.join(ctx, 'bad/to-ignored')); // points at an ignored file
  entries = await walkContext(ctx);
});

afterAll(() => {
  fs.rmSync(ctx, { recursive: true, force: true });
  fs.rmSync(scratch, { recursive: true, force: true });
});

const paths = (s: Selection) => s.entries.map((e) => e.path);

/** Contents of regular files and targets of symlinks below `dir`, as sorted sets (two items may
 * land on the same target, as `*` does with `src` and a link to it). */
function inventory(root: string): { files: string[]; links: string[] } {
  const files: string[] = [];
  const links: string[] = [];
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d)) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isSymbolicLink()) links.push(fs.readlinkSync(p));
      else if (st.isFile()) files.push(fs.readFileSync(p, 'utf8'));
    }
  };
  walk(root);
  return { files: [...new Set(files)].sort(), links: [...new Set(links)].sort() };
}

/** What the selection says the copy reads, in the same form. */
function selectedInventory(s: Selection): { files: string[]; links: string[] } {
  const files: string[] = [];
  const links: string[] = [];
  for (const it of s.items) {
    for (const e of it.entries) {
      const st = fs.lstatSync(path.join(ctx, e.path));
      if (st.isSymbolicLink()) links.push(fs.readlinkSync(path.join(ctx, e.path)));
      else if (st.isFile()) files.push(fs.readFileSync(path.join(ctx, e.path), 'utf8'));
    }
  }
  return { files: [...new Set(files)].sort(), links: [...new Set(links)].sort() };
}

let n = 0;
async function copied(sources: string[], opts: { parents?: boolean; exclude?: string[] } = {}) {
  const destRoot = path.join(scratch, String(n++));
  fs.mkdirSync(destRoot);
  await copy({
    spec: { instruction: 'COPY', sources, dest: '/out/', destIsDir: true, parents: opts.parents ?? false, exclude: opts.exclude ?? [] },
    source: { kind: 'context', dir: ctx, entries },
    destRoot,
  });
  return inventory(path.join(destRoot, 'out'));
}

const SRC_TREE = [
  'src',
  'src/README',
  'src/sub',
  'src/sub/deep',
  'src/sub/deep/w.js',
  'src/sub/up-guide',
  'src/sub/uplink',
  'src/sub/z.js',
  'src/x.js',
  'src/y.js',
];

describe('selectEntries: exactly what the copy reads', () => {
  const cases: { name: string; sources: string[]; opts?: { parents?: boolean; exclude?: string[] }; want: string[] }[] = [
    { name: 'one file', sources: ['a.txt'], want: ['a.txt'] },
    { name: 'a path with .. and ./ is cleaned inside the context', sources: ['../../src/./x.js'], want: ['src/x.js'] },
    { name: 'a wildcard: only what it matches', sources: ['*.txt'], want: ['a.txt', 'b.txt'] },
    { name: 'wildcards per element', sources: ['src/*/*.js'], want: ['src/sub/z.js'] },
    { name: 'a class and ?', sources: ['[ab].tx?'], want: ['a.txt', 'b.txt'] },
    { name: 'a class matching a bracket in a name', sources: ['sp ace/[[]x].txt'], want: ['sp ace/[x].txt'] },
    { name: 'a directory: its whole subtree, links inside kept as links', sources: ['src'], want: SRC_TREE },
    { name: 'a symlink to a file: its target', sources: ['link-a'], want: ['a.txt'] },
    { name: 'an absolute symlink restarts at the context root', sources: ['abs-c'], want: ['c.md'] },
    { name: 'a symlinked directory in the path', sources: ['link-to-src/x.js'], want: ['src/x.js'] },
    { name: 'a symlink to a directory: the directory', sources: ['link-to-src'], want: SRC_TREE },
    { name: 'a link climbing out of the context stays inside', sources: ['src/sub/up-guide'], want: ['docs/guide.md'] },
    { name: 'a wildcard matching links follows each', sources: ['link-*'], want: ['a.txt', ...SRC_TREE] },
    { name: 'hard links', sources: ['hard*'], want: ['hard1', 'hard2'] },
    { name: 'the whole context, without what .dockerignore hides', sources: ['.'], want: ['<all>'] },
    { name: '* at the root: every name, links at the top followed', sources: ['*'], want: ['<all but top links>'] },
    { name: 'a directory with some files ignored', sources: ['keep'], want: ['keep', 'keep/k.txt'] },
    {
      name: '--exclude below a directory (relative to it)',
      sources: ['src'],
      opts: { exclude: ['*.js'] },
      want: SRC_TREE.filter((p) => !/^src\/[xy]\.js$/.test(p)),
    },
    { name: '--exclude with **', sources: ['src'], opts: { exclude: ['**/*.js'] }, want: SRC_TREE.filter((p) => !p.endsWith('.js')) },
    {
      name: '--exclude a directory, with an exception below it',
      sources: ['src'],
      opts: { exclude: ['sub', '!sub/z.js'] },
      want: ['src', 'src/README', 'src/sub', 'src/sub/z.js', 'src/x.js', 'src/y.js'],
    },
    { name: '--exclude on wildcard matches', sources: ['*.txt', '*.md'], opts: { exclude: ['b.*'] }, want: ['a.txt', 'c.md'] },
    { name: '--exclude does not apply to a named source', sources: ['a.txt'], opts: { exclude: ['a.txt'] }, want: ['a.txt'] },
    { name: '--parents: the kept parents count', sources: ['src/sub/z.js'], opts: { parents: true }, want: ['src', 'src/sub', 'src/sub/z.js'] },
    { name: '--parents with a pivot', sources: ['src/./sub/deep/w.js'], opts: { parents: true }, want: ['src/sub', 'src/sub/deep', 'src/sub/deep/w.js'] },
    { name: '--parents with a wildcard', sources: ['src/*.js'], opts: { parents: true }, want: ['src', 'src/x.js', 'src/y.js'] },
  ];

  for (const c of cases) {
    it(`${c.name}: ${JSON.stringify(c.sources)}${c.opts ? ' ' + JSON.stringify(c.opts) : ''}`, async () => {
      const all = entries.map((e) => e.path);
      const want =
        c.want[0] === '<all>' ? all : c.want[0] === '<all but top links>' ? all.filter((p) => !['abs-c', 'link-a', 'link-to-src'].includes(p)) : c.want;
      const sel = selectEntries(entries, c.sources, c.opts);
      expect(sel.items.every((i) => i.error === undefined)).toBe(true);
      expect(paths(sel).sort()).toEqual([...want].sort());
      // The copy itself agrees: the same file contents and link targets land in the destination.
      expect(selectedInventory(sel)).toEqual(await copied(c.sources, c.opts));
    });
  }

  it('never selects what .dockerignore hides, even through a link', () => {
    const all = paths(selectEntries(entries, ['.']));
    expect(all).not.toContain('secret.key');
    expect(all.some((p) => p.startsWith('ignored'))).toBe(false);
    expect(all).not.toContain('keep/drop.txt');
    const viaLink = selectEntries(entries, ['bad/to-ignored']);
    expect(viaLink.entries).toEqual([]);
    expect(viaLink.items[0]!.error).toMatch(/not found/);
    expect(selectEntries(entries, ['secret.key']).items[0]!.error).toMatch(/not found/);
  });

  it('where the copy fails, the selection has an error item', async () => {
    for (const sources of [['secret.key'], ['nope/*.txt'], ['a.txt/*'], ['sp ace/\\[x\\].txt'], ['bad/*']]) {
      const sel = selectEntries(entries, sources);
      expect(
        sel.items.some((i) => i.error !== undefined),
        JSON.stringify(sources),
      ).toBe(true);
      await expect(copied(sources), JSON.stringify(sources)).rejects.toThrow();
    }
  });

  it('an unmatched wildcard selects nothing; a missing or non-directory base is an error item', () => {
    expect(selectEntries(entries, ['*.none'])).toMatchObject({ items: [], entries: [] });
    expect(selectEntries(entries, ['nope/*.txt']).items[0]!.error).toMatch(/not found/);
    expect(selectEntries(entries, ['a.txt/*']).items[0]!.error).toMatch(/not a directory/);
    expect(selectEntries(entries, ['[']).items[0]!.error).toMatch(/syntax error in pattern/);
  });

  it('records names as matched (the copy names files by them) and what --parents keeps', () => {
    const sel = selectEntries(entries, ['link-a', 'src/./sub/z.js'], { parents: true });
    expect(sel.items.map((i) => [i.named, i.keep, i.parentDirs])).toEqual([
      ['link-a', 'link-a', []],
      ['src/sub/z.js', 'sub/z.js', ['src/sub']],
    ]);
    expect(sel.items[0]!.entries).toEqual([{ path: 'a.txt', rel: '', meta: true }]);
  });

  it('selects the same from the same entries in another order (a list not from the walk)', () => {
    const shuffled = [...entries].reverse();
    for (const sources of [['.'], ['src'], ['src/*.js', 's*/sub/*'], ['link-to-src/sub']]) {
      const walked = selectEntries(entries, sources);
      const other = selectEntries(shuffled, sources);
      expect(other.items, JSON.stringify(sources)).toEqual(walked.items);
      // Every selected entry, in the order of the list given.
      expect(paths(other), JSON.stringify(sources)).toEqual(paths(walked).reverse());
    }
    // COPY . reads all of them.
    expect(paths(selectEntries(entries, ['.']))).toEqual(entries.map((e) => e.path));
  });

  it('marks the top directory of a directory item as not carrying its metadata', () => {
    const sel = selectEntries(entries, ['keep']);
    expect(sel.items[0]!.entries).toEqual([
      { path: 'keep', rel: '', meta: false },
      { path: 'keep/k.txt', rel: 'k.txt', meta: true },
    ]);
  });
});
