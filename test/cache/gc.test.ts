import { describe, expect, it } from 'vitest';
import { cacheSize, parseDuration, parsePruneFilters, parseSize, planPrune, summarize, type CacheRecord } from '../../src/cache/gc.js';

const NOW = new Date('2024-06-01T12:00:00Z');
const hoursAgo = (h: number) => new Date(NOW.getTime() - h * 3_600_000).toISOString();

function rec(id: string, fields: Partial<CacheRecord> = {}): CacheRecord {
  return {
    id,
    type: 'regular',
    description: id,
    size: 100,
    parents: [],
    shared: false,
    inUse: false,
    reclaimable: true,
    mutable: false,
    usageCount: 0,
    createdAt: hoursAgo(1),
    ...fields,
  };
}

const ids = (rs: CacheRecord[]) => rs.map((r) => r.id);

describe('planPrune', () => {
  // base (internal) <- a <- b <- c ; base <- x (shared with an image) ; a cache mount; metadata; an image
  const table = (): CacheRecord[] => [
    rec('layer-base', { type: 'internal', createdAt: hoursAgo(100) }),
    rec('a', { parents: ['layer-base'], createdAt: hoursAgo(50) }),
    rec('b', { parents: ['a'], createdAt: hoursAgo(40) }),
    rec('c', { parents: ['b'], createdAt: hoursAgo(30), lastUsedAt: hoursAgo(2) }),
    rec('x', { parents: ['layer-base'], shared: true, createdAt: hoursAgo(60) }),
    rec('mount', { type: 'exec.cachemount', createdAt: hoursAgo(10) }),
    rec('metadata', { type: 'metadata', reclaimable: false, size: 5 }),
    rec('image-1', { type: 'image', reclaimable: false, size: 1000 }),
  ];

  it('by default removes dangling build cache, children before parents, and keeps internal and shared records', () => {
    expect(ids(planPrune(table(), { all: false, keepStorage: 0 }, NOW))).toEqual(['mount', 'c', 'b', 'a']);
  });

  it('--all also removes internal and shared records, the base only after everything on it', () => {
    const order = ids(planPrune(table(), { all: true, keepStorage: 0 }, NOW));
    expect(order.sort()).toEqual(['a', 'b', 'c', 'layer-base', 'mount', 'x']);
    const plan = ids(planPrune(table(), { all: true, keepStorage: 0 }, NOW));
    expect(plan.indexOf('layer-base')).toBeGreaterThan(Math.max(plan.indexOf('a'), plan.indexOf('x')));
    expect(plan.indexOf('a')).toBeGreaterThan(plan.indexOf('b'));
  });

  it('never removes what is in use, nor anything it stands on', () => {
    const t = table().map((r) => (r.id === 'c' ? { ...r, inUse: true } : r));
    expect(ids(planPrune(t, { all: true, keepStorage: 0 }, NOW))).toEqual(['x', 'mount']);
  });

  it('until= keeps records used recently, and a parent counts as used when its child was', () => {
    // c was reused 2h ago, so b and a (under it) are as recent; the cache mount is 10h old.
    expect(ids(planPrune(table(), { all: false, keepStorage: 0, unusedForMs: 5 * 3_600_000 }, NOW))).toEqual(['mount']);
    expect(ids(planPrune(table(), { all: false, keepStorage: 0, unusedForMs: 1 * 3_600_000 }, NOW))).toEqual(['mount', 'c', 'b', 'a']);
    expect(ids(planPrune(table(), { all: true, keepStorage: 0, unusedForMs: 20 * 3_600_000 }, NOW))).toEqual(['x']);
  });

  it('--keep-storage removes least recently used first and stops at the limit', () => {
    // cache size = 6 records * 100 + metadata 5 = 605 (the image does not count)
    expect(cacheSize(table())).toBe(605);
    expect(ids(planPrune(table(), { all: true, keepStorage: 450 }, NOW))).toEqual(['x', 'mount']);
    expect(ids(planPrune(table(), { all: true, keepStorage: 405 }, NOW))).toEqual(['x', 'mount']);
    expect(ids(planPrune(table(), { all: true, keepStorage: 404 }, NOW))).toEqual(['x', 'mount', 'c']);
    expect(ids(planPrune(table(), { all: true, keepStorage: 10_000 }, NOW))).toEqual([]);
  });

  it('summarises as buildx du: shared, private, reclaimable, total', () => {
    const t = table().map((r) => (r.id === 'c' ? { ...r, inUse: true } : r));
    expect(summarize(t)).toEqual({ shared: 100, private: 1505, reclaimable: 500, total: 1605 });
  });
});

describe('sizes and durations', () => {
  it('parses sizes as docker --keep-storage does (binary multiples)', () => {
    expect(parseSize('10GB')).toBe(10 * 1024 ** 3);
    expect(parseSize('512MB')).toBe(512 * 1024 ** 2);
    expect(parseSize('512m')).toBe(512 * 1024 ** 2);
    expect(parseSize('1.5g')).toBe(1.5 * 1024 ** 3);
    expect(parseSize('2048')).toBe(2048);
    expect(parseSize('1GiB')).toBe(1024 ** 3);
    expect(parseSize('3 kb')).toBe(3072);
    expect(() => parseSize('ten gigs')).toThrow(/invalid size/);
    expect(() => parseSize('-1GB')).toThrow(/invalid size/);
  });

  it('parses Go durations', () => {
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('0')).toBe(0);
    expect(() => parseDuration('1d')).toThrow(/invalid duration/);
    expect(() => parseDuration('24')).toThrow(/invalid duration/);
    expect(() => parseDuration('h')).toThrow(/invalid duration/);
  });

  it('takes until= (and unused-for=) filters and refuses others', () => {
    expect(parsePruneFilters(['until=24h'])).toEqual({ unusedForMs: 86_400_000 });
    expect(parsePruneFilters(['unused-for=1m'])).toEqual({ unusedForMs: 60_000 });
    expect(parsePruneFilters([])).toEqual({});
    expect(() => parsePruneFilters(['type=regular'])).toThrow(/only until/);
    expect(() => parsePruneFilters(['until='])).toThrow(/needs a duration/);
  });
});

describe('the daemon policy keys (daemon.json)', () => {
  const withConfig = async (doc: unknown) => {
    const { loadConfig } = await import('../../src/server/config.js');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-gc-config-'));
    try {
      fs.writeFileSync(path.join(dir, 'daemon.json'), JSON.stringify(doc));
      return loadConfig({ KILN_CONFIG: path.join(dir, 'daemon.json') });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };

  it('turns collection on with gc-keep-storage, off by default or with gc-enabled: false', async () => {
    expect((await withConfig({})).gc).toEqual({ enabled: false, keepStorage: 0 });
    expect((await withConfig({ 'gc-keep-storage': '10GB' })).gc).toEqual({ enabled: true, keepStorage: 10 * 1024 ** 3 });
    expect((await withConfig({ 'gc-keep-storage': 5_000_000 })).gc).toEqual({ enabled: true, keepStorage: 5_000_000 });
    expect((await withConfig({ 'gc-keep-storage': '10GB', 'gc-enabled': false })).gc).toEqual({ enabled: false, keepStorage: 10 * 1024 ** 3 });
    // Docker's own daemon.json form is read too.
    expect((await withConfig({ builder: { gc: { enabled: true, defaultKeepStorage: '512MB' } } })).gc).toEqual({ enabled: true, keepStorage: 512 * 1024 ** 2 });
  });

  it('says which key is wrong', async () => {
    await expect(withConfig({ 'gc-keep-storage': 'lots' })).rejects.toThrow(/"gc-keep-storage".*invalid size/);
    await expect(withConfig({ 'gc-enabled': 'yes' })).rejects.toThrow(/"gc-enabled" must be true or false/);
    await expect(withConfig({ 'gc-keep-storage': [1] })).rejects.toThrow(/"gc-keep-storage" must be a size/);
  });
});
