// Content checksums of what a COPY selects from the build context. A cache key is built from these,
// never from mtimes: touching a file does not miss the cache, changing a byte, a mode, an owner or a
// name does.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as path from 'node:path';
import type { ContextEntry } from '../context/walk.js';
import { cleanPath, hasWildcards } from '../context/gopath.js';

/**
 * The part of a source pattern before its first wildcard element: every entry a pattern can select
 * lies at or below it. "src/*.js" -> "src", "app" -> "app", "*" -> "".
 */
export function staticPrefix(pattern: string): string {
  const parts = cleanPath('/' + pattern).split('/').filter(Boolean);
  const fixed: string[] = [];
  for (const p of parts) {
    if (hasWildcards(p)) break;
    fixed.push(p);
  }
  return fixed.join('/');
}

/**
 * Selects the entries a COPY of `sources` can read. Deliberately generous (everything under each
 * pattern's static prefix, plus the parents whose metadata a copy of a directory keeps): a wider
 * selection can only cost a cache miss, a narrower one would reuse a stale result. A selected symlink
 * can point anywhere in the context, so then the whole context counts.
 */
export function selectEntries(entries: readonly ContextEntry[], sources: readonly string[]): ContextEntry[] {
  const prefixes = sources.map(staticPrefix);
  if (prefixes.includes('')) return [...entries];
  const picked = entries.filter((e) => prefixes.some((p) => e.path === p || e.path.startsWith(p + '/')));
  if (picked.some((e) => e.type === 'symlink')) return [...entries];
  return picked;
}

/** sha256 over path, type, mode, size, link target and content of the selected entries. */
export async function checksumEntries(contextDir: string, entries: readonly ContextEntry[]): Promise<string> {
  const h = createHash('sha256');
  for (const e of entries) {
    // Owners are left out: COPY from the context resets them to 0:0 (or --chown), so they cannot change the result.
    h.update(`${e.path}\0${e.type}\0${e.mode.toString(8)}\0${e.size}\0${e.linkTarget ?? ''}\0${e.hardlinkTo ?? ''}\0${e.devMajor ?? ''},${e.devMinor ?? ''}\0`);
    if (e.type === 'file' && !e.hardlinkTo) h.update(await fileDigest(path.join(contextDir, e.path)));
    h.update('\n');
  }
  return h.digest('hex');
}

function fileDigest(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}
