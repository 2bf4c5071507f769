// The rules of the house (README's Layout), checked on the source rather than remembered: no module
// imports itself back through others, the rooms (src/<room>/) form a one-way order with cli, client,
// server and solver on top, and the frontend stays pure: text in, graph out, no file system,
// network or processes in anything it loads.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '..', 'src');

interface Module {
  file: string;
  room: string;
  /** Relative imports that exist at run time (type-only imports vanish in the build). */
  imports: string[];
  /** Every module specifier, node built-ins and packages included. */
  specifiers: string[];
}

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const IMPORT = /^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?'([^']+)'/gm;

function load(): Module[] {
  return sources(SRC).map((file) => {
    const text = fs.readFileSync(file, 'utf8');
    const imports: string[] = [];
    const specifiers: string[] = [];
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[2]!;
      specifiers.push(spec);
      if (m[1] || !spec.startsWith('.')) continue;
      imports.push(path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts'));
    }
    return { file, room: path.relative(SRC, file).split(path.sep)[0]!, imports, specifiers };
  });
}

const rel = (f: string) => path.relative(SRC, f);

describe('architecture', () => {
  const modules = load();
  const byFile = new Map(modules.map((m) => [m.file, m]));

  it('finds the sources and every relative import resolves to one', () => {
    expect(modules.length).toBeGreaterThan(100);
    const missing = modules.flatMap((m) => m.imports.filter((t) => !byFile.has(t)).map((t) => `${rel(m.file)} -> ${rel(t)}`));
    expect(missing).toEqual([]);
  });

  it('has no import cycle between modules', () => {
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const cycles: string[] = [];
    const visit = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const t of byFile.get(f)?.imports ?? []) {
        if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t].map(rel).join(' -> '));
        else if (!state.has(t)) visit(t);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const m of modules) if (!state.has(m.file)) visit(m.file);
    expect(cycles).toEqual([]);
  });

  it('has no cycle between rooms: the arrows go one way', () => {
    const edges = new Map<string, Set<string>>();
    for (const m of modules) {
      for (const t of m.imports) {
        const to = byFile.get(t)?.room;
        if (to && to !== m.room) edges.set(m.room, (edges.get(m.room) ?? new Set()).add(to));
      }
    }
    const reaches = (from: string, to: string, seen = new Set<string>()): boolean => {
      if (from === to) return true;
      if (seen.has(from)) return false;
      seen.add(from);
      return [...(edges.get(from) ?? [])].some((n) => reaches(n, to, seen));
    };
    const back = [...edges].flatMap(([a, bs]) => [...bs].filter((b) => reaches(b, a)).map((b) => `${a} <-> ${b}`));
    expect(back).toEqual([]);
    // The top of the house calls down, never the reverse.
    const order = ['cli', 'client', 'server', 'solver'];
    for (const [i, room] of order.entries()) {
      for (const above of order.slice(0, i)) expect(reaches(room, above), `${room} must not reach ${above}`).toBe(false);
    }
    for (const low of ['frontend', 'cache', 'snapshotter', 'executor', 'image', 'context', 'oci', 'fsutil', 'util', 'workers']) {
      for (const top of order) expect(reaches(low, top), `${low} must not reach ${top}`).toBe(false);
    }
  });

  it('keeps the frontend pure: nothing it loads touches the file system, network, processes or workers', () => {
    const impure = /^(node:)?(fs|fs\/promises|child_process|net|http|https|http2|dgram|dns|worker_threads|cluster|os)$/;
    // Everything the frontend loads, through any room (it may use pure helpers elsewhere).
    const loaded = new Set<string>();
    const visit = (f: string) => {
      if (loaded.has(f)) return;
      loaded.add(f);
      for (const t of byFile.get(f)?.imports ?? []) visit(t);
    };
    for (const m of modules) if (m.room === 'frontend') visit(m.file);
    const found = [...loaded].flatMap((f) =>
      byFile
        .get(f)!
        .specifiers.filter((s) => impure.test(s))
        .map((s) => `${rel(f)} imports ${s}`),
    );
    expect(found).toEqual([]);
  });
});
