// Bounded concurrency for async work over a list: at most `limit` calls of `fn` in flight, results
// in input order, the first rejection rejecting the whole (the calls already started run on). Used
// where a list can be long (stats of a whole context, a manifest's blobs) and one promise per item
// at once would flood libuv's threads or a registry.

export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}
