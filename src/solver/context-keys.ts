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

/** Keys remembered at most (one per token and selection; each a short string and maybe its per-path digests). */
const MAX_KEYS = 256;
const keys = new Map<string, { key: string; perPath?: Record<string, string> }>();

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
    keys.delete(id);
    keys.set(id, hit);
    if (perPath) Object.assign(perPath, hit.perPath);
    return hit.key;
  }
  counters.computed++;
  const own = perPath ? {} : undefined;
  const key = await compute(own);
  keys.delete(id);
  keys.set(id, own ? { key, perPath: own } : { key });
  while (keys.size > MAX_KEYS) keys.delete(keys.keys().next().value!);
  if (perPath) Object.assign(perPath, own);
  return key;
}
