// Content keys of context selections, reused while the context's owner vouches that its files did
// not change (ContextSource.contentToken: a daemon's kept copy between uploads). A warm build
// through the daemon then keys its COPY steps without stat'ing the thousands of files they read;
// any upload that changes the tree gives it a new token, so a changed file is keyed afresh.
// Without a token (a user's directory in embedded mode) every key is computed, as before.

/** Counters for tests: keys computed from the files, and keys reused under a token. */
export interface ContextKeyCounters {
  computed: number;
  reused: number;
}

let counters: ContextKeyCounters = { computed: 0, reused: 0 };

export function contextKeyCounters(): ContextKeyCounters {
  return { ...counters };
}

export function resetContextKeyCounters(): void {
  counters = { computed: 0, reused: 0 };
}

/**
 * What is remembered at most, in paths: each key counts 1 plus its per-path digests (a COPY . of
 * 10,000 files keeps 10,000 of them, about a megabyte), so a daemon serving many large contexts
 * keeps the most recently used keys within a few tens of megabytes.
 */
const MAX_WEIGHT = 200_000;
interface Remembered {
  key: string;
  perPath?: Record<string, string>;
  weight: number;
}
const keys = new Map<string, Remembered>();
let weight = 0;

function remember(id: string, r: Remembered): void {
  forget(id);
  keys.set(id, r);
  weight += r.weight;
  for (const oldest of keys.keys()) {
    if (weight <= MAX_WEIGHT || oldest === id) break;
    forget(oldest);
  }
}

function forget(id: string): void {
  const r = keys.get(id);
  if (r === undefined) return;
  keys.delete(id);
  weight -= r.weight;
}

/**
 * The key of `selection` (any text naming what is selected and how) over the context `token`
 * names: remembered from an earlier call with the same token and selection, else `compute`d. Given
 * `perPath`, it is filled with the per-path digests too (compute fills the object it is given).
 */
export async function contextKey(
  token: string | undefined,
  selection: string,
  compute: (perPath: Record<string, string> | undefined) => Promise<string>,
  perPath?: Record<string, string>,
): Promise<string> {
  if (token === undefined) {
    counters.computed++;
    return compute(perPath);
  }
  const id = `${token}\0${selection}`;
  const hit = keys.get(id);
  if (hit && (perPath === undefined || hit.perPath !== undefined)) {
    counters.reused++;
    // Most recently used last: the oldest goes first when the map is full.
    remember(id, hit);
    if (perPath) Object.assign(perPath, hit.perPath);
    return hit.key;
  }
  counters.computed++;
  const own = perPath ? {} : undefined;
  const key = await compute(own);
  remember(id, own ? { key, perPath: own, weight: 1 + Object.keys(own).length } : { key, weight: 1 });
  if (perPath) Object.assign(perPath, own);
  return key;
}
