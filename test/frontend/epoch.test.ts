// SOURCE_DATE_EPOCH in the frontend: where the build's epoch comes from, what a bad value says, and
// that RUN sees it only through an ARG (BuildKit: "exposed to inner processes by defining ARG
// SOURCE_DATE_EPOCH inside the stage").
import { describe, expect, it } from 'vitest';
import { epochDate, EpochValueError, parseSourceDateEpoch } from '../../src/frontend/index.js';
import { build, expectError, one } from './helpers.js';

describe('parseSourceDateEpoch', () => {
  it.each([
    ['0', 0],
    ['1700000000', 1700000000],
    ['+12', 12],
    ['-5', -5],
    ['007', 7],
    ['', undefined],
  ])('%j -> %j', (v, want) => {
    expect(parseSourceDateEpoch(v)).toBe(want);
  });
  it.each(['abc', '1.5', '1e9', ' 12', '12 ', '0x10', '2024-01-01', '99999999999999999999'])('refuses %j, saying why', (v) => {
    expect(() => parseSourceDateEpoch(v)).toThrow(EpochValueError);
    expect(() => parseSourceDateEpoch(v)).toThrow(`invalid SOURCE_DATE_EPOCH ${JSON.stringify(v)}`);
  });
  it('dates as Go writes a whole second in UTC', () => {
    expect(epochDate(1500000000)).toBe('2017-07-14T02:40:00Z');
    expect(epochDate(0)).toBe('1970-01-01T00:00:00Z');
  });
});

describe('the build graph carries the epoch', () => {
  const df = 'FROM a\nRUN x\n';
  it('from the build arg', () => {
    expect(build(df, { buildArgs: { SOURCE_DATE_EPOCH: '1500000000' } }).sourceDateEpoch).toBe(1500000000);
  });
  it('none without it, and none when it is empty (unset, as in BuildKit)', () => {
    expect(build(df).sourceDateEpoch).toBeUndefined();
    expect(build(df, { buildArgs: { SOURCE_DATE_EPOCH: '' } }).sourceDateEpoch).toBeUndefined();
    expect('sourceDateEpoch' in build(df)).toBe(false); // the graph of a build without one is unchanged
  });
  it('from a global ARG default (Dockerfile 1.24), which the build arg overrides or unsets', () => {
    const withDefault = 'ARG SOURCE_DATE_EPOCH=1400000000\nFROM a\nRUN x\n';
    expect(build(withDefault).sourceDateEpoch).toBe(1400000000);
    expect(build(withDefault, { buildArgs: { SOURCE_DATE_EPOCH: '1500000000' } }).sourceDateEpoch).toBe(1500000000);
    expect(build(withDefault, { buildArgs: { SOURCE_DATE_EPOCH: '' } }).sourceDateEpoch).toBeUndefined();
    // A stage's ARG default is not the build's epoch: only global (meta) args are.
    expect(build('FROM a\nARG SOURCE_DATE_EPOCH=1400000000\nRUN x\n').sourceDateEpoch).toBeUndefined();
  });
  it('a bad build arg is an error naming the build arg and the environment variable', () => {
    let caught: unknown;
    try {
      build(df, { buildArgs: { SOURCE_DATE_EPOCH: 'yesterday' } });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(EpochValueError);
    expect((caught as Error).message).toBe(
      'invalid SOURCE_DATE_EPOCH "yesterday": want a whole number of seconds since 1970-01-01 00:00:00 UTC (from --build-arg SOURCE_DATE_EPOCH or the SOURCE_DATE_EPOCH environment variable)',
    );
  });
  it('a bad Dockerfile default is an error at its line', () => {
    expectError('# syntax=docker/dockerfile:1\nARG SOURCE_DATE_EPOCH=yesterday\nFROM a\n', 2, ['invalid SOURCE_DATE_EPOCH "yesterday"']);
  });
  it('is not an unused build arg', () => {
    expect(build(df, { buildArgs: { SOURCE_DATE_EPOCH: '1', OTHER: 'x' } }).unusedBuildArgs).toEqual(['OTHER']);
  });
  it('reaches RUN only through an ARG, like any build arg', () => {
    const args = { buildArgs: { SOURCE_DATE_EPOCH: '1500000000' } };
    expect(one('FROM a\nRUN x\n', 'run', args).buildArgs).toEqual([]);
    expect(one('FROM a\nARG SOURCE_DATE_EPOCH\nRUN x\n', 'run', args).buildArgs).toEqual([['SOURCE_DATE_EPOCH', '1500000000']]);
  });
});
