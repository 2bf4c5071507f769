// Sticky routing over a fleet of daemons (`KILN_HOST=unix:///a.sock,unix:///b.sock`, or `--addr`
// repeated), as buildx's kubernetes driver does with loadbalance=sticky: a context always goes to
// the same daemon, where its kept copy and its cache are warm.
//
// Rendezvous (highest random weight) hashing: each address gets a score from a hash of the context
// identity and the address, and the highest score wins. The choice depends only on the identity
// and the set of addresses (not their order), and removing an address moves only the contexts that
// chose it; adding one moves to it only the contexts it now wins, about 1/n of them.
// Pure: no clock, no randomness, no I/O.

import { createHash } from 'node:crypto';

/** The score of `address` for `identity`: the first 48 bits of sha256(identity NUL address). */
export function stickyScore(identity: string, address: string): number {
  return createHash('sha256').update(`${identity}\0${address}`).digest().readUIntBE(0, 6);
}

/** The index in `addresses` of the one `identity` goes to (ties, which need a hash collision, go to the smaller address). */
export function stickyIndex(identity: string, addresses: readonly string[]): number {
  if (addresses.length === 0) throw new Error('sticky routing needs at least one address');
  let best = 0;
  let bestScore = -1;
  for (let i = 0; i < addresses.length; i++) {
    const score = stickyScore(identity, addresses[i]!);
    if (score > bestScore || (score === bestScore && addresses[i]! < addresses[best]!)) {
      best = i;
      bestScore = score;
    }
  }
  return best;
}

/** The address `identity` goes to. */
export function stickyAddress(identity: string, addresses: readonly string[]): string {
  return addresses[stickyIndex(identity, addresses)]!;
}

/** `KILN_HOST`'s value as a list: addresses separated by commas, blanks and duplicates dropped, order kept. */
export function splitAddresses(value: string): string[] {
  return [
    ...new Set(
      value
        .split(',')
        .map((a) => a.trim())
        .filter((a) => a !== ''),
    ),
  ];
}
