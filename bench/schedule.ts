// The order of runs: builders alternate within every round (A B C A B C ...), so a slow minute on
// the shared machine spreads over all of them instead of landing on one.

export interface Slot<B> {
  /** 0-based round; rounds below `warmups` are not counted. */
  round: number;
  builder: B;
  warmup: boolean;
}

export function schedule<B>(builders: readonly B[], warmups: number, runs: number): Slot<B>[] {
  if (!Number.isInteger(warmups) || warmups < 0) throw new Error(`warm-up count must be a whole number >= 0, not ${warmups}`);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`run count must be a whole number >= 1, not ${runs}`);
  const out: Slot<B>[] = [];
  for (let round = 0; round < warmups + runs; round++) {
    for (const builder of builders) out.push({ round, builder, warmup: round < warmups });
  }
  return out;
}
