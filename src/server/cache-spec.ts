// Cache import and export entries in buildx's CSV form ("type=registry,ref=REF,mode=max"), read by
// `kiln build --cache-from/--cache-to` and by the daemon's `cache-from`/`cache-to` keys of
// daemon.json with the same rules. Pure: no file system, no network; loaded by the remote client,
// so it imports nothing heavy.

import * as path from 'node:path';
import { formatReference, parseReference } from '../image/reference.js';
import type { CacheFrom, CacheTo } from '../solver/cache-io.js';

/** A malformed entry; `reason` says what is wrong, without the value or where it came from. */
export class CacheSpecError extends Error {
  constructor(
    readonly value: string,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'CacheSpecError';
  }
}

/** Splits one CSV record (RFC 4180 quoting: "a,b" keeps its comma, "" is a quote). */
export function splitCsv(record: string): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  let i = 0;
  while (i < record.length) {
    const c = record[i]!;
    if (quoted) {
      if (c === '"' && record[i + 1] === '"') {
        cur += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      fields.push(cur);
      cur = '';
    } else {
      cur += c;
    }
    i++;
  }
  if (quoted) throw new Error('unterminated quote');
  fields.push(cur);
  return fields;
}

/** BuildKit cache attributes kiln accepts and has no use for, so buildx command lines keep working. */
const IGNORED_CACHE_ATTRS = new Set(['compression', 'compression-level', 'force-compression', 'oci-mediatypes', 'image-manifest', 'ignore-error']);

function cacheAttrs(value: string, allowed: string[]): Record<string, string> {
  const attrs: Record<string, string> = {};
  let fields: string[];
  try {
    fields = splitCsv(value);
  } catch (err) {
    throw new CacheSpecError(value, (err as Error).message);
  }
  for (const field of fields) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw new CacheSpecError(value, `"${field}" is not KEY=VALUE`);
    const k = field.slice(0, eq).trim();
    if (IGNORED_CACHE_ATTRS.has(k)) continue;
    if (!allowed.includes(k)) throw new CacheSpecError(value, `unknown attribute "${k}"`);
    attrs[k] = field.slice(eq + 1);
  }
  return attrs;
}

/** A registry reference, normalised ("cache" -> "docker.io/library/cache:latest"); no digest. */
function cacheRef(value: string, ref: string): string {
  let parsed;
  try {
    parsed = parseReference(ref);
  } catch (err) {
    throw new CacheSpecError(value, (err as Error).message);
  }
  if (parsed.digest) throw new CacheSpecError(value, 'a tag cannot contain a digest');
  return formatReference(parsed);
}

/** `type=local,src=DIR` | `type=registry,ref=REF` | `REF`. A local `src` is made absolute. */
export function parseCacheFrom(value: string): CacheFrom {
  if (!value.includes('=')) return { type: 'registry', ref: cacheRef(value, value) };
  const a = cacheAttrs(value, ['type', 'src', 'ref']);
  if (a.type === 'local' && a.src) return { type: 'local', src: path.resolve(a.src) };
  if (a.type === 'registry' && a.ref) return { type: 'registry', ref: cacheRef(value, a.ref) };
  throw new CacheSpecError(value, 'want type=local,src=DIR or type=registry,ref=REF');
}

/** `type=local,dest=DIR` | `type=registry,ref=REF` (with `mode=min|max`) | `type=inline`. */
export function parseCacheTo(value: string): CacheTo {
  const a = cacheAttrs(value, ['type', 'dest', 'ref', 'mode']);
  const mode = a.mode ?? 'min';
  if (mode !== 'min' && mode !== 'max') throw new CacheSpecError(value, 'mode must be min or max');
  if (a.type === 'inline') return { type: 'inline' };
  if (a.type === 'local' && a.dest) return { type: 'local', dest: path.resolve(a.dest), mode };
  if (a.type === 'registry' && a.ref) return { type: 'registry', ref: cacheRef(value, a.ref), mode };
  throw new CacheSpecError(value, 'want type=local,dest=DIR, type=registry,ref=REF or type=inline');
}
