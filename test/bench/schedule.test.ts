import { describe, expect, it } from 'vitest';
import { schedule } from '../../bench/schedule.js';

describe('schedule', () => {
  it('alternates builders within each round, warm-ups first', () => {
    const s = schedule(['A', 'B', 'C'], 1, 3);
    expect(s.map((x) => x.builder).join('')).toBe('ABCABCABCABC');
    expect(s.map((x) => x.round)).toEqual([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    expect(s.filter((x) => x.warmup).map((x) => x.round)).toEqual([0, 0, 0]);
    expect(s.filter((x) => !x.warmup)).toHaveLength(9);
  });

  it('quick: one counted run each, no warm-up', () => {
    expect(schedule(['k', 'd'], 0, 1)).toEqual([
      { round: 0, builder: 'k', warmup: false },
      { round: 0, builder: 'd', warmup: false },
    ]);
  });

  it('refuses nonsense counts', () => {
    expect(() => schedule(['A'], -1, 3)).toThrow(/warm-up/);
    expect(() => schedule(['A'], 0, 0)).toThrow(/run count/);
    expect(() => schedule(['A'], 0.5, 1)).toThrow(/warm-up/);
  });
});
