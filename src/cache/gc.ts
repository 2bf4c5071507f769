// Garbage collection, the pure half: what a cache record is, which records a prune removes and in
// which order, the totals `kiln du` prints, and the size and duration syntax of the flags and the
// daemon config. Nothing here touches the disk, so the policy is tested with plain tables; the
// solver's gc.ts finds the records on a root and carries a plan out.
//
// The semantics follow `docker builder prune` / BuildKit's cache manager:
// - without --all, only "dangling" build cache goes: records that are neither internal (unpacked
//   base images, pulled image metadata) nor shared with a named image;
// - --all takes every record that is not in use;
// - until=D keeps records used within the last D;
// - --keep-storage N removes least recently used records first and stops once the build cache is
//   no bigger than N.
// A record that something running holds, or that a kept record depends on (a snapshot's parent),
// is never removed.

/**
 * What a record is. `regular` is build cache (step snapshots and their layers), `internal` what
 * builds fetch or unpack on their own (base image layers and manifests), `exec.cachemount` RUN
 * --mount=type=cache directories; `image` (content of named images), `metadata` and `tmp` are
 * counted so the totals add up to the disk used, but are never build cache to prune.
 */
/** BuildKit's record types; `source.local` is a build context a daemon keeps for incremental uploads. */
export type RecordType = 'regular' | 'internal' | 'exec.cachemount' | 'image' | 'metadata' | 'tmp' | 'source.local';

export interface CacheRecord {
  id: string;
  type: RecordType;
  description: string;
  /** Bytes allocated on disk, each inode counted in exactly one record. */
  size: number;
  /** Records this one needs (a snapshot's parent): they are removed only after it. */
  parents: string[];
  /** Storage shared with a named image: pruning it loses cache, the image keeps its layers. */
  shared: boolean;
  /** Held by a running build (or needed by something that is). */
  inUse: boolean;
  /** Whether a prune may remove it at all. */
  reclaimable: boolean;
  /** Writable (an active snapshot): its size may change. */
  mutable: boolean;
  createdAt?: string;
  lastUsedAt?: string;
  usageCount: number;
}

export interface PruneFilter {
  /** Also internal and image-shared records (docker's --all). */
  all: boolean;
  /** Stop once the build cache is at most this many bytes; 0: no limit, remove every candidate. */
  keepStorage: number;
  /** Only records unused for at least this many milliseconds (docker's until=). */
  unusedForMs?: number;
}

export interface UsageTotals {
  shared: number;
  private: number;
  reclaimable: number;
  total: number;
}

/** The sums `kiln du` prints under the table, as buildx du adds them up. */
export function summarize(records: readonly CacheRecord[]): UsageTotals {
  const t: UsageTotals = { shared: 0, private: 0, reclaimable: 0, total: 0 };
  for (const r of records) {
    if (r.shared) t.shared += r.size;
    else t.private += r.size;
    if (r.reclaimable && !r.inUse) t.reclaimable += r.size;
    t.total += r.size;
  }
  return t;
}

/** The size --keep-storage and the daemon's limit compare with: everything but named images' content. */
export function cacheSize(records: readonly CacheRecord[]): number {
  return records.reduce((n, r) => (r.type === 'image' ? n : n + r.size), 0);
}

/** When a record was last used (made, if never reused). */
export function lastUsed(r: CacheRecord): number {
  const t = Date.parse(r.lastUsedAt ?? r.createdAt ?? '');
  return Number.isNaN(t) ? 0 : t;
}

/**
 * The records to remove, in an order that is safe to carry out one by one: a record comes after
 * every record that depends on it (children before parents), least recently used first among those
 * that are free to go.
 */
export function planPrune(records: readonly CacheRecord[], filter: PruneFilter, now: Date): CacheRecord[] {
  const byId = new Map(records.map((r) => [r.id, r]));
  const children = new Map<string, CacheRecord[]>();
  for (const r of records) {
    for (const p of r.parents) {
      if (!children.has(p)) children.set(p, []);
      children.get(p)!.push(r);
    }
  }

  // A parent counts as used whenever a child was: a build reusing a step reads through its chain.
  const effective = new Map<string, number>();
  const effectiveOf = (r: CacheRecord, seen = new Set<string>()): number => {
    const known = effective.get(r.id);
    if (known !== undefined) return known;
    if (seen.has(r.id)) return lastUsed(r); // a cycle is corrupt metadata: do not loop on it
    seen.add(r.id);
    let t = lastUsed(r);
    for (const c of children.get(r.id) ?? []) t = Math.max(t, effectiveOf(c, seen));
    effective.set(r.id, t);
    return t;
  };

  const cutoff = filter.unusedForMs === undefined ? Infinity : now.getTime() - filter.unusedForMs;
  const candidates = new Set(
    records
      .filter((r) => r.reclaimable && !r.inUse && r.type !== 'image' && r.type !== 'metadata' && r.type !== 'tmp')
      .filter((r) => filter.all || (r.type !== 'internal' && !r.shared))
      .filter((r) => effectiveOf(r) <= cutoff)
      .map((r) => r.id),
  );
  // A record whose dependant stays must stay too; repeat until nothing changes.
  for (let changed = true; changed; ) {
    changed = false;
    for (const id of candidates) {
      if ((children.get(id) ?? []).some((c) => !candidates.has(c.id))) {
        candidates.delete(id);
        changed = true;
      }
    }
  }

  let size = cacheSize(records);
  const removed = new Set<string>();
  const order: CacheRecord[] = [];
  for (;;) {
    if (filter.keepStorage > 0 && size <= filter.keepStorage) break;
    let next: CacheRecord | undefined;
    for (const id of candidates) {
      if (removed.has(id)) continue;
      const r = byId.get(id)!;
      if ((children.get(id) ?? []).some((c) => !removed.has(c.id))) continue; // not a leaf yet
      if (!next || effectiveOf(r) < effectiveOf(next) || (effectiveOf(r) === effectiveOf(next) && r.id < next.id)) next = r;
    }
    if (!next) break;
    removed.add(next.id);
    order.push(next);
    size -= next.size;
  }
  return order;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * A size as docker's --keep-storage and daemon.json take it (go-units' RAMInBytes): binary
 * multiples, so "10GB" is 10 GiB; "512m", "1.5g", "2048" (bytes) and "1GiB" are accepted too.
 */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?$/i.exec(text.trim());
  if (!m) throw new Error(`invalid size: ${JSON.stringify(text)} (expected e.g. 512MB, 10GB, 1.5g)`);
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid size: ${JSON.stringify(text)} is too large`);
  return bytes;
}

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, μs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go duration as docker's until= filter takes it ("24h", "1h30m", "90s", "1.5h"), in milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let ms = 0;
  let end = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    ms += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    end = re.lastIndex;
  }
  if (end === 0 || end !== s.length) {
    throw new Error(`invalid duration: ${JSON.stringify(text)} (valid units are "ns", "us" (or "µs"), "ms", "s", "m", "h", e.g. 24h)`);
  }
  return ms;
}

/**
 * docker builder prune's --filter values: until=DURATION (and its older name unused-for). Other
 * keys are refused rather than ignored, so a typo does not prune more than asked.
 */
export function parsePruneFilters(filters: readonly string[]): { unusedForMs?: number } {
  const out: { unusedForMs?: number } = {};
  for (const f of filters) {
    const eq = f.indexOf('=');
    const key = eq < 0 ? f : f.slice(0, eq);
    const value = eq < 0 ? '' : f.slice(eq + 1);
    if (key !== 'until' && key !== 'unused-for') throw new Error(`invalid filter ${JSON.stringify(f)}: only until=DURATION is supported`);
    if (value === '') throw new Error(`invalid filter ${JSON.stringify(f)}: until needs a duration, e.g. until=24h`);
    out.unusedForMs = parseDuration(value);
  }
  return out;
}
