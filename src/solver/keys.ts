// Cache keys: a digest of a step's definition and its inputs' keys. Nothing positional (line numbers,
// the text as written, history text) and nothing secret enters a key.

import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so equal definitions hash equally whatever order built them. */
export function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function cacheKey(parentKey: string, definition: unknown): string {
  return createHash('sha256').update(parentKey).update('\n').update(stableStringify(definition)).digest('hex');
}

/** Removes the fields that describe where a step was written rather than what it does. */
export function definitionOf<T extends { location: unknown; original: string; createdBy: string; fromOnBuild?: boolean }>(step: T) {
  const { location: _l, original: _o, createdBy: _c, fromOnBuild: _f, ...def } = step;
  return def;
}
