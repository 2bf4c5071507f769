import { describe, expect, it } from 'vitest';
import { median, ratio, summarize } from '../../bench/stats.js';

describe('median', () => {
  it.each([
    [[], undefined],
    [[3], 3],
    [[3, 1, 2], 2],
    [[4, 1, 3, 2], 2.5],
    [[5, 5, 1], 5],
    [[0.3, 0.1], 0.2],
  ])('median(%j) = %j', (xs, want) => {
    expect(median(xs)).toBe(want);
  });

  it('does not reorder its argument', () => {
    const xs = [3, 1, 2];
    median(xs);
    expect(xs).toEqual([3, 1, 2]);
  });
});

describe('summarize', () => {
  it('gives count, median, min and max', () => {
    expect(summarize([2.5, 1.25, 9, 3])).toEqual({ n: 4, median: 2.75, min: 1.25, max: 9 });
  });

  it('is undefined without samples', () => {
    expect(summarize([])).toBeUndefined();
  });

  it('refuses non-finite samples', () => {
    expect(() => summarize([1, Number.NaN, 2])).toThrow(/non-finite/);
  });
});

describe('ratio', () => {
  const s = (m: number) => ({ n: 3, median: m, min: m, max: m });
  it('divides medians', () => {
    expect(ratio(s(3), s(1.5))).toBe(2);
    expect(ratio(s(1), s(4))).toBe(0.25);
  });
  it('is undefined when a side is missing or zero', () => {
    expect(ratio(undefined, s(1))).toBeUndefined();
    expect(ratio(s(1), undefined)).toBeUndefined();
    expect(ratio(s(1), s(0))).toBeUndefined();
  });
});
