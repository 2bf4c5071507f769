// Written-down expectations about an image, for what a side-by-side comparison cannot judge alone:
// kiln-only features (no Docker reference) and facts a case wants pinned (the output of `id`).
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { canonicalCreatedBy, describeEntry } from './compare.js';
import type { EntryType } from './rootfs.js';
import type { ImageSummary, NormalizedConfig } from './summary.js';

export interface ExpectedFile {
  type?: EntryType;
  mode?: string; // "0644"
  uid?: number;
  gid?: number;
  /** Exact content (UTF-8). */
  content?: string;
  /** A regular expression the content (UTF-8) must match. */
  contentMatches?: string;
  link?: string;
  hardlinks?: string[];
  dev?: string;
}

export interface Expectation {
  /** Each field named is compared exactly with the normalised config; use null for "unset". */
  config?: { [K in keyof NormalizedConfig]?: NormalizedConfig[K] | null };
  files?: Record<string, ExpectedFile>;
  absent?: string[];
  /** created_by of the last history entries, in order. */
  historyTail?: string[];
}

/** The paths whose contents `summarize` must keep for this expectation. */
export function contentPaths(exp: Expectation | undefined): string[] {
  return Object.entries(exp?.files ?? {})
    .filter(([, f]) => f.content !== undefined || f.contentMatches !== undefined)
    .map(([p]) => p);
}

export function checkExpectation(summary: ImageSummary, exp: Expectation): string[] {
  const read = (p: string): Buffer | undefined => (summary.contents[p] !== undefined ? Buffer.from(summary.contents[p], 'base64') : undefined);
  const problems: string[] = [];
  for (const [k, want] of Object.entries(exp.config ?? {}) as [keyof NormalizedConfig, unknown][]) {
    const got = summary.config[k];
    const w = want === null ? undefined : want;
    if (!isDeepStrictEqual(got, w)) problems.push(`config ${k}: want ${JSON.stringify(w)}, got ${JSON.stringify(got)}`);
  }
  const byPath = new Map(summary.rootfs.map((e) => [e.path, e]));
  for (const [p, want] of Object.entries(exp.files ?? {})) {
    const e = byPath.get(p);
    if (!e) {
      problems.push(`${p}: missing (want ${JSON.stringify(want)})`);
      continue;
    }
    for (const f of ['type', 'mode', 'uid', 'gid', 'link', 'hardlinks', 'dev'] as const) {
      if (want[f] !== undefined && !isDeepStrictEqual(e[f], want[f])) {
        problems.push(`${p}: ${f} want ${JSON.stringify(want[f])}, got ${JSON.stringify(e[f])} (${describeEntry(e)})`);
      }
    }
    if (want.content !== undefined || want.contentMatches !== undefined) {
      const body = e.type === 'file' ? read(p) : undefined;
      if (body === undefined) {
        problems.push(`${p}: want content but it is a ${e.type}`);
        continue;
      }
      if (createHash('sha256').update(body).digest('hex') !== e.sha256) problems.push(`${p}: content reader disagrees with the manifest`);
      const text = body.toString('utf8');
      if (want.content !== undefined && text !== want.content) {
        problems.push(`${p}: content want ${JSON.stringify(want.content)}, got ${JSON.stringify(text)}`);
      }
      if (want.contentMatches !== undefined && !new RegExp(want.contentMatches).test(text)) {
        problems.push(`${p}: content ${JSON.stringify(text)} does not match /${want.contentMatches}/`);
      }
    }
  }
  for (const p of exp.absent ?? []) {
    if (byPath.has(p)) problems.push(`${p}: should not exist, is ${describeEntry(byPath.get(p)!)}`);
  }
  if (exp.historyTail) {
    const tail = summary.history.slice(-exp.historyTail.length).map((h) => canonicalCreatedBy(h.createdBy));
    const want = exp.historyTail.map(canonicalCreatedBy);
    if (!isDeepStrictEqual(tail, want)) problems.push(`history tail: want ${JSON.stringify(want)}, got ${JSON.stringify(tail)}`);
  }
  return problems;
}
