// Content keys under a context token: reused for the same token and selection, computed for a new
// token (a changed tree) or without one, and bounded in memory.

import { describe, expect, it } from 'vitest';
import { contextKey, contextKeyCounters, resetContextKeyCounters } from '../../src/solver/context-keys.js';

describe('contextKey', () => {
  it('computes once per token and selection; no token computes every time', async () => {
    resetContextKeyCounters();
    let n = 0;
    const compute = async (perPath: Record<string, string> | undefined) => {
      n++;
      if (perPath) perPath['a.txt'] = `digest-${n}`;
      return `key-${n}`;
    };
    const files: Record<string, string> = {};
    expect(await contextKey('t1', 'sel', compute, files)).toBe('key-1');
    expect(files).toEqual({ 'a.txt': 'digest-1' });
    const again: Record<string, string> = {};
    expect(await contextKey('t1', 'sel', compute, again)).toBe('key-1');
    expect(again).toEqual({ 'a.txt': 'digest-1' }); // the per-path digests come with the key
    expect(await contextKey('t1', 'other', compute)).toBe('key-2');
    expect(await contextKey('t2', 'sel', compute)).toBe('key-3'); // a changed tree: a new token
    expect(await contextKey(undefined, 'sel', compute)).toBe('key-4');
    expect(await contextKey(undefined, 'sel', compute)).toBe('key-5');
    expect(contextKeyCounters()).toEqual({ computed: 5, reused: 1 });
    // Remembered without per-path digests, asked with them: computed again to have them.
    expect(await contextKey('t1', 'other', compute, {})).toBe('key-6');
  });

  it('forgets the least recently used keys when their per-path digests grow large', async () => {
    const big = async (perPath: Record<string, string> | undefined) => {
      for (let i = 0; i < 60_000; i++) perPath![`f${i}`] = 'x';
      return 'big';
    };
    for (const t of ['b1', 'b2', 'b3', 'b4']) await contextKey(t, 'sel', big, {});
    resetContextKeyCounters();
    // 4 x 60,000 paths is over the bound: the oldest went, the newest stayed.
    await contextKey('b4', 'sel', big, {});
    expect(contextKeyCounters()).toEqual({ computed: 0, reused: 1 });
    await contextKey('b1', 'sel', big, {});
    expect(contextKeyCounters()).toEqual({ computed: 1, reused: 1 });
  });
});
