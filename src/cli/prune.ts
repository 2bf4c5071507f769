// `kiln prune`: remove build cache, as `docker builder prune` does. Without --all only dangling
// cache goes (not base images' unpacked layers, not cache that named images share); --keep-storage
// keeps the most recently used; --filter until=24h only takes what was unused that long. Asks first
// unless --force.

import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { parsePruneFilters, parseSize, type PruneOptions, type PruneReport } from '../client/client.js';
import { connect } from '../client/connect.js';
import { humanSize } from './du.js';
import type { OutStream } from './progress/types.js';

export const PRUNE_HELP = `Usage: kiln prune [OPTIONS]

Remove build cache.

Options:
  -a, --all                 Remove all unused build cache, not just dangling ones
                            (also unpacked base images and cache named images share)
      --filter FILTER       Provide filter values (e.g. until=24h); valid time units
                            are "ns", "us" (or "µs"), "ms", "s", "m", "h"
  -f, --force               Do not prompt for confirmation
      --keep-storage SIZE   Amount of disk space to keep for cache (e.g. 10GB, 512MB)
      --root DIR            kiln's state directory (default: $KILN_ROOT, /var/lib/kiln for root)
  -h, --help                This help
`;

const WARNING = 'WARNING! This will remove all dangling build cache. Are you sure you want to continue?';
const WARNING_ALL = 'WARNING! This will remove all build cache. Are you sure you want to continue?';

interface Io {
  stdout: OutStream;
  stderr: OutStream;
  stdin: NodeJS.ReadableStream;
  env?: NodeJS.ProcessEnv;
}

export function parsePruneArgs(argv: string[]): PruneOptions & { force: boolean; root?: string; help: boolean } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      all: { type: 'boolean', short: 'a' },
      filter: { type: 'string', multiple: true },
      force: { type: 'boolean', short: 'f' },
      'keep-storage': { type: 'string' },
      root: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const out: PruneOptions & { force: boolean; root?: string; help: boolean } = {
    all: values.all ?? false,
    force: values.force ?? false,
    help: values.help ?? false,
  };
  if (values['keep-storage'] !== undefined) {
    try {
      out.keepStorage = parseSize(values['keep-storage']);
    } catch (err) {
      throw new Error(`invalid argument ${JSON.stringify(values['keep-storage'])} for "--keep-storage" flag: ${(err as Error).message}`);
    }
  }
  Object.assign(out, parsePruneFilters(values.filter ?? []));
  if (values.root === '') throw new Error('invalid argument "" for "--root" flag: empty value');
  if (values.root !== undefined) out.root = values.root;
  return out;
}

export function renderPruneReport(report: PruneReport): string {
  let out = '';
  if (report.deleted.length) out += 'Deleted build cache objects:\n' + report.deleted.map((r) => r.id + '\n').join('') + '\n';
  return out + `Total reclaimed space: ${humanSize(report.reclaimed)}\n`;
}

/** One line from stdin: docker's prompt answers yes only to "y" or "yes". */
function confirm(io: Io, question: string): Promise<boolean> {
  io.stdout.write(`${question} [y/N] `);
  return new Promise((resolve) => {
    const rl = createInterface({ input: io.stdin, terminal: false });
    let answered = false;
    rl.once('line', (line) => {
      answered = true;
      rl.close();
      resolve(/^(y|yes)$/i.test(line.trim()));
    });
    rl.once('close', () => {
      if (!answered) resolve(false);
    });
  });
}

export async function pruneCommand(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin }): Promise<number> {
  let opts;
  try {
    opts = parsePruneArgs(argv);
  } catch (err) {
    io.stderr.write(`kiln prune: ${(err as Error).message}\nSee 'kiln prune --help'.\n`);
    return 1;
  }
  if (opts.help) {
    io.stdout.write(PRUNE_HELP);
    return 0;
  }
  if (!opts.force && !(await confirm(io, opts.all ? WARNING_ALL : WARNING))) {
    io.stdout.write('\n');
    return 0;
  }
  const { force: _f, root, help: _h, ...pruneOpts } = opts;
  const client = await connect({ root: root !== undefined ? path.resolve(root) : undefined, env: io.env ?? process.env });
  try {
    io.stdout.write(renderPruneReport(await client.prune(pruneOpts)));
    return 0;
  } finally {
    await client.close();
  }
}
