// Summaries of a handful of timings. With 3 to 5 samples on a shared machine, the median and the
// range say more than a mean and a standard deviation would.

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
}

/** The median (mean of the two middle values for an even count); undefined for no samples. */
export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function summarize(xs: readonly number[]): Summary | undefined {
  const m = median(xs);
  if (m === undefined) return undefined;
  if (xs.some((x) => !Number.isFinite(x))) throw new Error(`summarize: non-finite sample in ${JSON.stringify(xs)}`);
  return { n: xs.length, median: m, min: Math.min(...xs), max: Math.max(...xs) };
}

/** a/b of two medians; undefined when either is missing or b is 0. */
export function ratio(a: Summary | undefined, b: Summary | undefined): number | undefined {
  if (!a || !b || b.median === 0) return undefined;
  return a.median / b.median;
}
