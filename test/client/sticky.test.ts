// Sticky routing over a fleet of daemons: rendezvous hashing of a context identity over addresses.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { splitAddresses, stickyAddress, stickyIndex } from '../../src/client/sticky.js';

const ids = Array.from({ length: 3000 }, (_, i) => createHash('sha256').update(`ctx-${i}`).digest('hex').slice(0, 32));
const fleet = (n: number) => Array.from({ length: n }, (_, i) => `unix:///run/kiln/d${i}.sock`);
const counts = (addrs: string[]) => {
  const c = new Map(addrs.map((a) => [a, 0]));
  for (const id of ids) c.set(stickyAddress(id, addrs), c.get(stickyAddress(id, addrs))! + 1);
  return [...c.values()];
};

describe('sticky routing', () => {
  it('is stable: the same identity and addresses give the same address, in any order', () => {
    const addrs = fleet(5);
    const reversed = [...addrs].reverse();
    for (const id of ids.slice(0, 200)) {
      const a = stickyAddress(id, addrs);
      expect(stickyAddress(id, addrs)).toBe(a);
      expect(stickyAddress(id, reversed)).toBe(a);
    }
    // Fixed values, so a change of the hash (which would move every client's contexts) is noticed.
    expect(stickyAddress('0123456789abcdef0123456789abcdef', fleet(3))).toBe('unix:///run/kiln/d2.sock');
    expect(stickyAddress('fedcba9876543210fedcba9876543210', fleet(3))).toBe('unix:///run/kiln/d1.sock');
    expect(stickyIndex('x', ['only'])).toBe(0);
    expect(() => stickyIndex('x', [])).toThrow(/at least one address/);
  });

  it('spreads contexts evenly', () => {
    for (const n of [2, 3, 7]) {
      const expected = ids.length / n;
      for (const c of counts(fleet(n))) expect(Math.abs(c - expected) / expected).toBeLessThan(0.15);
    }
  });

  it('removing an address moves only its contexts; adding one moves only what it wins', () => {
    const before = fleet(5);
    const removed = before[2]!;
    const after = before.filter((a) => a !== removed);
    let moved = 0;
    for (const id of ids) {
      const was = stickyAddress(id, before);
      const now = stickyAddress(id, after);
      if (was !== removed) expect(now).toBe(was);
      else moved++;
    }
    expect(moved / ids.length).toBeGreaterThan(0.15);
    expect(moved / ids.length).toBeLessThan(0.25);

    const grown = [...before, 'tcp://new:1234'];
    for (const id of ids) {
      const now = stickyAddress(id, grown);
      if (now !== 'tcp://new:1234') expect(now).toBe(stickyAddress(id, before));
    }
    const toNew = ids.filter((id) => stickyAddress(id, grown) === 'tcp://new:1234').length;
    expect(Math.abs(toNew / ids.length - 1 / 6)).toBeLessThan(0.04);
  });

  it('KILN_HOST lists: commas, blanks and duplicates', () => {
    expect(splitAddresses('unix:///a.sock,unix:///b.sock')).toEqual(['unix:///a.sock', 'unix:///b.sock']);
    expect(splitAddresses(' unix:///a.sock , ,unix:///a.sock,tcp://h:1')).toEqual(['unix:///a.sock', 'tcp://h:1']);
    expect(splitAddresses('')).toEqual([]);
  });
});
