import { describe, expect, it } from 'vitest';
import { DEFAULT_SEED, parseArgs, UsageError } from '../../bench/args.js';

describe('parseArgs', () => {
  it('defaults: every workload and builder, 1 warm-up + 3 runs', () => {
    expect(parseArgs([])).toEqual({
      quick: false,
      keep: false,
      help: false,
      workloads: ['hello', 'bigctx', 'parallel', 'manyfiles', 'bigfile', 'concurrent'],
      builders: ['kiln', 'kiln-daemon', 'buildkit', 'buildah'],
      warmups: 1,
      runs: 3,
      out: 'bench-results.json',
      seed: DEFAULT_SEED,
    });
  });

  it('--quick: one run, no warm-up, unless counts are given', () => {
    expect(parseArgs(['--quick'])).toMatchObject({ quick: true, warmups: 0, runs: 1 });
    expect(parseArgs(['--quick', '--runs', '2'])).toMatchObject({ warmups: 0, runs: 2 });
  });

  it('--only keeps the canonical order and drops duplicates', () => {
    expect(parseArgs(['--only', 'bigfile,hello,hello']).workloads).toEqual(['hello', 'bigfile']);
    expect(parseArgs(['--only=bigctx']).workloads).toEqual(['bigctx']);
  });

  it('takes --out, --seed, --builders, --keep in both spellings', () => {
    expect(parseArgs(['--out', 'x.json', '--seed=7', '--builders', 'buildah,kiln', '--keep'])).toMatchObject({
      out: 'x.json',
      seed: 7,
      builders: ['kiln', 'buildah'],
      keep: true,
    });
  });

  it.each([
    [['--only', 'nope'], /unknown "nope"/],
    [['--only'], /needs a value/],
    [['--only', ','], /empty list/],
    [['--runs', '0'], />= 1/],
    [['--warmups', '-1'], />= 0/],
    [['--runs', '1.5'], /whole number/],
    [['--builders', 'docker'], /unknown "docker"/],
    [['--out='], /empty path/],
    [['--fast'], /unknown argument/],
  ])('%j is a usage error', (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(UsageError);
    expect(() => parseArgs(argv)).toThrow(message);
  });
});
