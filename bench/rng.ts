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
/** 6 random bits -> a character; the 16 indexes past the alphabet give spaces (text has many). */
const CHARS = Uint8Array.from({ length: 64 }, (_, i) => (i < ALPHABET.length ? ALPHABET.charCodeAt(i) : 0x20));

/** SIZE bytes of source-like printable text from RNG (four characters per draw). */
export function textBytes(rng: Rng, size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    const r = rng();
    buf[i] = CHARS[r & 0x3f]!;
    buf[i + 1] = CHARS[(r >>> 8) & 0x3f]!;
    buf[i + 2] = CHARS[(r >>> 16) & 0x3f]!;
    buf[i + 3] = CHARS[(r >>> 24) & 0x3f]!;
  }
  if (i < size) {
    const r = rng();
    for (let k = 0; i < size; i++, k++) buf[i] = CHARS[(r >>> (8 * k)) & 0x3f]!;
  }
  return buf;
}
