// `kiln images`: the image store as `docker images` shows it (REPOSITORY, TAG, IMAGE ID, CREATED,
// SIZE), newest first; -q for the IDs alone, --format json for one JSON object per image.

import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { ImageRecord } from '../client/client.js';
import { connect } from '../client/connect.js';
import { familiarName, parseReference } from '../client/client.js';
import type { OutStream } from './progress/types.js';
import { humanSize as humanSizeWithPrecision } from '../client/units.js';
import { UsageError } from './usage.js';

export const IMAGES_HELP = `Usage: kiln images [OPTIONS] [REPOSITORY[:TAG]]

List the images in kiln's image store.

Options:
  -q, --quiet           Only show image IDs
      --no-trunc        Show full image IDs
      --format FORMAT   table (default) or json (one object per line)
      --root DIR        kiln's state directory (default: $KILN_ROOT, /var/lib/kiln for root)
  -h, --help            This help
`;

export interface ImageRow {
  repository: string;
  tag: string;
  /** Full config digest ("sha256:..."): Docker's image ID. */
  id: string;
  digest: string;
  created: Date;
  size: number;
}

export function imageRows(records: ImageRecord[]): ImageRow[] {
  const rows = records.map((r): ImageRow => {
    let repository = r.name;
    let tag = '<none>';
    try {
      const ref = parseReference(r.name, { defaultTag: false });
      repository = familiarName(ref);
      tag = ref.tag ?? '<none>';
    } catch {
      // A name kiln cannot parse is still shown, whole, rather than hidden.
    }
    return { repository, tag, id: r.config, digest: r.manifest.digest, created: new Date(r.created), size: r.size };
  });
  // Newest first, as docker images; names break ties so the order is stable.
  return rows.sort((a, b) => b.created.getTime() - a.created.getTime() || a.repository.localeCompare(b.repository) || a.tag.localeCompare(b.tag));
}

/** docker's short image ID: the first 12 hex digits of the config digest. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}

/** go-units' HumanDuration, which docker uses for CREATED ("2 hours", "About a minute"). */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const minutes = Math.floor(ms / 60_000);
  const hours = Math.floor(ms / 3_600_000 + 0.5);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}

/** go-units' HumanSizeWithPrecision(size, 3), as `docker images` prints sizes ("4.26MB"). */
export function humanSize(bytes: number): string {
  return humanSizeWithPrecision(bytes, 3);
}

/** "2006-01-02 15:04:05 -0700 MST", in UTC: docker's CreatedAt. */
function goTime(d: Date): string {
  const iso = d.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} +0000 UTC`;
}

/** Columns as Go's tabwriter lays them out for docker (min width 10, padding 3). */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, c) => Math.max(10, ...[h, ...rows.map((r) => r[c]!)].map((s) => s.length + 3)));
  const line = (cells: string[]) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]!))).join('');
  return [header, ...rows].map(line).join('\n') + '\n';
}

export interface ImagesOptions {
  quiet: boolean;
  noTrunc: boolean;
  format: 'table' | 'json';
  /** REPOSITORY[:TAG] to show only matching images. */
  filter?: string;
  now: Date;
}

export function renderImages(records: ImageRecord[], opts: ImagesOptions): string {
  let rows = imageRows(records);
  if (opts.filter !== undefined) {
    const colon = opts.filter.lastIndexOf(':');
    const hasTag = colon > opts.filter.lastIndexOf('/');
    const repo = hasTag ? opts.filter.slice(0, colon) : opts.filter;
    const tag = hasTag ? opts.filter.slice(colon + 1) : undefined;
    let wanted = repo;
    try {
      wanted = familiarName(parseReference(repo, { defaultTag: false }));
    } catch {
      // Not a valid name: compare as typed (it will match nothing kiln stored).
    }
    rows = rows.filter((r) => r.repository === wanted && (tag === undefined || r.tag === tag));
  }
  const id = (r: ImageRow) => (opts.noTrunc ? r.id : shortId(r.id));
  if (opts.quiet) return rows.map((r) => id(r) + '\n').join('');
  if (opts.format === 'json') {
    return rows
      .map(
        (r) =>
          JSON.stringify({
            Containers: 'N/A',
            CreatedAt: goTime(r.created),
            CreatedSince: `${humanDuration(opts.now.getTime() - r.created.getTime())} ago`,
            Digest: r.digest,
            ID: id(r),
            Repository: r.repository,
            SharedSize: 'N/A',
            Size: humanSize(r.size),
            Tag: r.tag,
            UniqueSize: 'N/A',
            VirtualSize: humanSize(r.size),
          }) + '\n',
      )
      .join('');
  }
  return formatTable(
    ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'],
    rows.map((r) => [r.repository, r.tag, id(r), `${humanDuration(opts.now.getTime() - r.created.getTime())} ago`, humanSize(r.size)]),
  );
}

export function parseImagesArgs(argv: string[]): Omit<ImagesOptions, 'now'> & { root?: string; help: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        quiet: { type: 'boolean', short: 'q' },
        'no-trunc': { type: 'boolean' },
        format: { type: 'string' },
        root: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (positionals.length > 1) throw new UsageError(`"kiln images" takes at most 1 argument (REPOSITORY[:TAG]), got ${positionals.length}`);
  const format = v.format ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError(`invalid argument ${JSON.stringify(format)} for "--format" flag: want table or json`);
  if (v.root === '') throw new UsageError('invalid argument "" for "--root" flag: empty value');
  const out: Omit<ImagesOptions, 'now'> & { root?: string; help: boolean } = {
    quiet: v.quiet ?? false,
    noTrunc: v['no-trunc'] ?? false,
    format,
    help: v.help ?? false,
  };
  if (positionals[0] !== undefined) out.filter = positionals[0];
  if (v.root !== undefined) out.root = v.root;
  return out;
}

export async function imagesCommand(
  argv: string[],
  io: { stdout: OutStream; stderr: OutStream; env: NodeJS.ProcessEnv } = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  let opts;
  try {
    opts = parseImagesArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`kiln images: ${err.message}\nSee 'kiln images --help'.\n`);
    return 1;
  }
  if (opts.help) {
    io.stdout.write(IMAGES_HELP);
    return 0;
  }
  if (opts.root !== undefined) io.env.KILN_ROOT = path.resolve(opts.root);
  const client = await connect({ root: opts.root !== undefined ? path.resolve(opts.root) : undefined, env: io.env });
  try {
    const records = await client.listImages();
    io.stdout.write(renderImages(records, { ...opts, now: new Date() }));
    return 0;
  } finally {
    await client.close();
  }
}
