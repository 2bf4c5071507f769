// `kiln du`: the root's disk usage by record, as `docker buildx du` shows a builder's: a table (ID,
// RECLAIMABLE, SIZE, LAST ACCESSED) or, with --verbose, one block per record, then the totals.
// The records cover everything under the root (named images' content, metadata and temporary files
// too), so Total is what the root takes on disk.

import * as path from 'node:path';
import { humanSize as humanSizeWithPrecision } from '../client/units.js';
import { parseArgs } from 'node:util';
import type { CacheRecord, DiskUsage } from '../client/client.js';
import { connect } from '../client/connect.js';
import { formatTable, humanDuration } from './images.js';
import type { OutStream } from './progress/types.js';

export const DU_HELP = `Usage: kiln du [OPTIONS]

Show the disk usage of kiln's root: build cache, base image layers, cache mounts,
named images' content and metadata.

Options:
      --verbose         One block per record (parent, dates, usage count, type)
      --root DIR        kiln's state directory (default: $KILN_ROOT, /var/lib/kiln for root)
  -h, --help            This help
`;

/** go-units' HumanSize, which buildx du and docker builder prune print: decimal, 4 significant digits. */
export function humanSize(bytes: number): string {
  return humanSizeWithPrecision(bytes, 4);
}

function lastAccessed(r: CacheRecord, now: Date): string {
  const t = Date.parse(r.lastUsedAt ?? r.createdAt ?? '');
  if (Number.isNaN(t)) return '';
  return `${humanDuration(Math.max(0, now.getTime() - t))} ago`;
}

/** Shown as buildx does: records in use or kept first, then the biggest. */
function ordered(records: CacheRecord[]): CacheRecord[] {
  const free = (r: CacheRecord) => (r.reclaimable && !r.inUse ? 1 : 0);
  return [...records].sort((a, b) => free(a) - free(b) || b.size - a.size || a.id.localeCompare(b.id));
}

/** A table ID: long snapshot names cut to 25 characters, buildx's ID width. */
function shortId(id: string): string {
  return id.length > 25 ? id.slice(0, 25) : id;
}

export function renderDiskUsage(du: DiskUsage, opts: { verbose: boolean; now: Date }): string {
  const records = ordered(du.records);
  let out = '';
  if (opts.verbose) {
    for (const r of records) {
      const lines: [string, string][] = [['ID:', r.id]];
      if (r.parents.length) lines.push(['Parent:', r.parents.join(', ')]);
      if (r.createdAt) lines.push(['Created at:', r.createdAt]);
      lines.push(
        ['Mutable:', String(r.mutable)],
        ['Reclaimable:', String(r.reclaimable && !r.inUse)],
        ['Shared:', String(r.shared)],
        ['Size:', humanSize(r.size)],
        ['Description:', r.description],
        ['Usage count:', String(r.usageCount)],
        ['Last used:', lastAccessed(r, opts.now)],
        ['Type:', r.type],
      );
      out +=
        lines
          .filter(([, v]) => v !== '')
          .map(([k, v]) => `${k.padEnd(16)}${v}\n`)
          .join('') + '\n';
    }
  } else {
    out += formatTable(
      ['ID', 'RECLAIMABLE', 'SIZE', 'LAST ACCESSED'],
      records.map((r) => [
        shortId(r.id) + (r.mutable ? '*' : ''),
        String(r.reclaimable && !r.inUse),
        humanSize(r.size) + (r.shared ? '*' : ''),
        lastAccessed(r, opts.now),
      ]),
    ).replace(/ +$/gm, ''); // rows never used have an empty last column
  }
  const t = du.totals;
  out += [
    ['Shared:', t.shared],
    ['Private:', t.private],
    ['Reclaimable:', t.reclaimable],
    ['Total:', t.total],
  ]
    .map(([k, v]) => `${String(k).padEnd(16)}${humanSize(v as number)}\n`)
    .join('');
  return out;
}

interface Io {
  stdout: OutStream;
  stderr: OutStream;
  env?: NodeJS.ProcessEnv;
}

export async function duCommand(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: { verbose: { type: 'boolean' }, root: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    io.stderr.write(`kiln du: ${(err as Error).message}\nSee 'kiln du --help'.\n`);
    return 1;
  }
  if (values.help) {
    io.stdout.write(DU_HELP);
    return 0;
  }
  if (values.root === '') {
    io.stderr.write(`kiln du: invalid argument "" for "--root" flag: empty value\nSee 'kiln du --help'.\n`);
    return 1;
  }
  const client = await connect({ root: values.root !== undefined ? path.resolve(values.root) : undefined, env: io.env ?? process.env });
  try {
    io.stdout.write(renderDiskUsage(await client.diskUsage(), { verbose: values.verbose ?? false, now: new Date() }));
    return 0;
  } finally {
    await client.close();
  }
}
