// A small seeded pseudo-random generator (mulberry32): the workloads must be the same bytes on every
// run and every machine, so results compare across commits. Not for anything secret.

export type Rng = () => number;

/** Returns a function yielding uniformly distributed 32-bit unsigned integers from SEED. */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** An integer in [min, max], both included. */
export function intBetween(rng: Rng, min: number, max: number): number {
  return min + (rng() % (max - min + 1));
}

/** Derives an independent seed from a base seed and a label (FNV-1a over the label, mixed in). */
export function subSeed(seed: number, label: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789 _-=+(){};.\n';

/** SIZE bytes of source-like printable text from RNG. */
export function textBytes(rng: Rng, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) {
    const r = rng();
    buf[i] = ALPHABET.charCodeAt(r & 0x3f) || 0x20;
    if (i + 1 < size) buf[i + 1] = ALPHABET.charCodeAt((r >>> 8) & 0x3f) || 0x20;
    if (i + 2 < size) buf[i + 2] = ALPHABET.charCodeAt((r >>> 16) & 0x3f) || 0x20;
    if (i + 3 < size) buf[i + 3] = ALPHABET.charCodeAt((r >>> 24) & 0x3f) || 0x20;
  }
  return buf;
}
