// The one wildcard-expansion walk (src/fileop/expand.ts) and its two users: COPY itself (fileop's
// copy over the disk) and the cache key's selection of what a COPY reads (cache/checksum-select over
// the context walk's entry list). For each pattern both must take exactly the same paths.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectEntries } from '../../src/cache/checksum.js';
import { walkContext, type ContextEntry } from '../../src/context/index.js';
import { ExpandError, expandSource, expandSourceWalk, type EntryKind, type ExpandView } from '../../src/fileop/expand.js';
import { copy } from '../../src/fileop/index.js';

/** An in-memory tree: paths -> kind, plus symlinks (path -> target, resolved one level here). */
function memView(tree: Record<string, EntryKind | { link: string }>): ExpandView & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    resolve(p) {
      asked.push(`resolve ${p}`);
      const hit = tree[p];
      return hit !== undefined && typeof hit === 'object' ? hit.link : p;
    },
    kind(rel) {
      asked.push(`kind ${rel}`);
      if (rel === '') return 'dir';
      const hit = tree[rel];
      return hit === undefined ? undefined : typeof hit === 'object' ? 'other' : hit;
    },
    readdir(rel) {
      asked.push(`readdir ${rel}`);
      const prefix = rel === '' ? '' : `${rel}/`;
      return Object.keys(tree)
        .filter((p) => p.startsWith(prefix) && !p.slice(prefix.length).includes('/'))
        .map((p) => p.slice(prefix.length))
        .sort();
    },
  };
}

describe('expandSourceWalk', () => {
  const tree = {
    a: 'dir',
    'a/x.js': 'other',
    'a/y.js': 'other',
    'a/.hidden.js': 'other',
    b: 'dir',
    'b/x.js': 'other',
    lnk: { link: 'a' },
    'star*.txt': 'other',
    'stars.txt': 'other',
  } as const;

  it('matches per element in name order, entering real directories only', () => {
    const view = memView(tree);
    expect(expandSource(view, '*/x.js', false).map((x) => x.named)).toEqual(['a/x.js', 'b/x.js']);
    // The link "lnk" matches "*" but is never read as a directory while matching.
    expect(view.asked).not.toContain('readdir lnk');
  });

  it('** is two stars within one element (Go filepath.Match), and * matches hidden names', () => {
    expect(expandSource(memView(tree), 'a/**', false).map((x) => x.named)).toEqual(['a/.hidden.js', 'a/x.js', 'a/y.js']);
    expect(expandSource(memView(tree), 'a/.*', false).map((x) => x.named)).toEqual(['a/.hidden.js']);
  });

  it('classes and escapes', () => {
    expect(expandSource(memView(tree), '[a-b]/[^y].js', false).map((x) => x.named)).toEqual(['a/x.js', 'b/x.js']);
    // Go negates a class with ^ only: [!y] is the class of "!" and "y".
    expect(expandSource(memView(tree), 'a/[!y].js', false).map((x) => x.named)).toEqual(['a/y.js']);
    expect(expandSource(memView(tree), 'star\\**', false).map((x) => x.named)).toEqual(['star*.txt']);
    expect(expandSource(memView(tree), 'sta[r]?.txt', false).map((x) => x.named)).toEqual(['star*.txt', 'stars.txt']);
  });

  it('follows each match and the fixed part, and names the reasons a source fails', () => {
    const [viaLink] = expandSource(memView(tree), 'lnk', false);
    expect(viaLink).toMatchObject({ named: 'lnk', resolved: 'a', excludeRel: '' });
    const err = (raw: string) => {
      try {
        expandSource(memView(tree), raw, false);
      } catch (e) {
        return e;
      }
      return undefined;
    };
    expect(err('nope')).toMatchObject({ reason: 'not-found', path: 'nope' });
    expect(err('nope/*')).toMatchObject({ reason: 'not-found', path: 'nope' });
    expect(err('stars.txt/*')).toMatchObject({ reason: 'not-a-directory', path: 'stars.txt' });
    expect(err('stars.txt/*')).toBeInstanceOf(ExpandError);
    expect(expandSource(memView(tree), '*.none', false)).toEqual([]);
  });

  it('asks its questions of whoever drives it, and does no I/O itself', () => {
    const gen = expandSourceWalk('a/*.js', false);
    const first = gen.next();
    expect(first.value).toEqual({ ask: 'resolve', path: 'a' });
  });
});

describe('the copy and the cache key select the same paths', () => {
  let ctx: string;
  let scratch: string;
  let entries: ContextEntry[];

  beforeAll(async () => {
    ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-expand-ctx-'));
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-expand-out-'));
    const files = [
      'a.txt',
      'b.md',
      '.env',
      'src/x.js',
      'src/y.ts',
      'src/.hidden',
      'src/sub/z.js',
      'src/sub/deep/w.js',
      'lib/q.js',
      'star*.txt',
      'stars.txt',
      '[br].txt',
      'secret/s.txt',
      'src/skip.log',
    ];
    for (const f of files) {
      fs.mkdirSync(path.join(ctx, path.dirname(f)), { recursive: true });
      fs.writeFileSync(path.join(ctx, f), f);
    }
    fs.symlinkSync('src', path.join(ctx, 'srclink')); // a symlinked directory
    fs.symlinkSync('../lib', path.join(ctx, 'src/liblink'));
    fs.mkdirSync(path.join(ctx, 'bad'));
    fs.symlinkSync('../secret/s.txt', path.join(ctx, 'bad/to-secret')); // to a hidden (ignored) file
    fs.writeFileSync(path.join(ctx, '.dockerignore'), 'secret\n**/*.log\n');
    entries = await walkContext(ctx);
  });

  afterAll(() => {
    fs.rmSync(ctx, { recursive: true, force: true });
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  let n = 0;
  const cases: { sources: string[]; exclude?: string[]; parents?: boolean; none?: boolean }[] = [
    { sources: ['.'] },
    { sources: ['*'] },
    { sources: ['**'] },
    { sources: ['src/**'] },
    { sources: ['*/*.js'] },
    { sources: ['src/*/*.js'] },
    { sources: ['.*'] },
    { sources: ['src/.*'] },
    { sources: ['[a-b].*'] },
    { sources: ['[[]br].txt'] },
    { sources: ['star\\**'] },
    { sources: ['sta?s.txt'] },
    { sources: ['srclink/*'] },
    { sources: ['srclink'] },
    { sources: ['src/liblink/*'] },
    { sources: ['*link'] },
    { sources: ['*.log', 'src/*.log'], none: true }, // hidden by .dockerignore: wildcards match nothing
    { sources: ['.'], exclude: ['*.js'] },
    { sources: ['.'], exclude: ['**/*.js', '!src/sub/**'] },
    { sources: ['src/*'], exclude: ['sub'] },
    { sources: ['*'], exclude: ['src', '.*'] },
    { sources: ['src/./sub/*.js', 'src/./*'], parents: true },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.sources)}${c.exclude ? ` --exclude=${JSON.stringify(c.exclude)}` : ''}${c.parents ? ' --parents' : ''}`, async () => {
      const sel = selectEntries(entries, c.sources, { ...(c.exclude ? { exclude: c.exclude } : {}), ...(c.parents ? { parents: true } : {}) });
      expect(sel.items.filter((i) => i.error !== undefined)).toEqual([]);
      const destRoot = path.join(scratch, String(n++));
      fs.mkdirSync(destRoot);
      const summary = await copy({
        spec: {
          instruction: 'COPY',
          sources: c.sources,
          dest: '/out/',
          destIsDir: true,
          parents: c.parents ?? false,
          exclude: c.exclude ?? [],
        },
        source: { kind: 'context', dir: ctx, entries },
        destRoot,
      });
      const selected = [...new Set(sel.items.flatMap((i) => i.entries.map((e) => e.path)))].sort();
      const written = [...new Set(summary.written.map((w) => w.src))].sort();
      expect(written).toEqual(selected);
      // ...and item by item: the same items (as matched) land where their names say.
      expect(summary.targets.length).toBe(sel.items.length);
      expect(selected.length > 0).toBe(!c.none);
      expect(selected.some((p) => p.startsWith('secret') || p.endsWith('.log'))).toBe(false);
    });
  }

  it('both refuse what .dockerignore hides, even through a link', async () => {
    for (const sources of [['secret/s.txt'], ['bad/to-secret'], ['bad/*'], ['secret/*']]) {
      expect(selectEntries(entries, sources).items[0]?.error, JSON.stringify(sources)).toMatch(/not found/);
      const destRoot = path.join(scratch, String(n++));
      fs.mkdirSync(destRoot);
      await expect(
        copy({ spec: { instruction: 'COPY', sources, dest: '/out/', destIsDir: true }, source: { kind: 'context', dir: ctx, entries }, destRoot }),
      ).rejects.toThrow(/not found/);
    }
  });
});
