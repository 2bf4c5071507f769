#!/usr/bin/env node
// kiln's command line. Kept import-light at the top so `kiln --version` starts fast: every command
// loads what it needs with a dynamic import.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const USAGE = `Usage: kiln [--root DIR] [--version] <command> [options]

Commands:
  build [options] PATH      Build an image from a Dockerfile
  images [options]          List the images in kiln's image store
  load -i PATH [-t NAME]    Load an OCI image layout (directory or tarball) into the store
  run IMAGE [COMMAND...]    Run an image from the store in a throw-away container
  du [--verbose]            Show the disk usage of kiln's root
  prune [options]           Remove build cache
  version                   Print the version

Global options:
  --root DIR                kiln's state directory (default: $KILN_ROOT, /var/lib/kiln for root)
  -v, --version             Print the version
  -h, --help                This help

Run 'kiln COMMAND --help' for a command's options.`;

// COPY, layer diffs and checksums are many small file-system calls, which Node runs on libuv's
// thread pool (4 threads unless told otherwise). It is sized once, on first use, so set it here.
process.env.UV_THREADPOOL_SIZE ??= '16';

export function kilnVersion(): string {
  const pkgPath = fileURLToPath(new URL('../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string }).version;
}

/** `--root DIR` / `--root=DIR` before the command: the state root for whatever command follows. */
function takeGlobalRoot(argv: string[]): string[] | string {
  const rest = [...argv];
  while (rest[0] !== undefined && rest[0].startsWith('--root')) {
    const flag = rest.shift()!;
    let dir: string | undefined;
    if (flag === '--root') dir = rest.shift();
    else if (flag.startsWith('--root=')) dir = flag.slice('--root='.length);
    else return `unknown flag: ${flag}`;
    if (!dir) return 'flag needs an argument: --root';
    process.env.KILN_ROOT = dir;
  }
  return rest;
}

async function main(argv: string[]): Promise<number> {
  const args = takeGlobalRoot(argv);
  if (typeof args === 'string') {
    process.stderr.write(`kiln: ${args}\n\n${USAGE}\n`);
    return 1;
  }
  const [command, ...rest] = args;
  switch (command) {
    case '--version':
    case '-v':
    case 'version':
      process.stdout.write(`kiln version ${kilnVersion()}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      (command === undefined ? process.stderr : process.stdout).write(USAGE + '\n');
      return command === undefined ? 1 : 0;
    case 'build': {
      const { buildCommand } = await import('./build.js');
      return buildCommand(rest);
    }
    case 'images': {
      const { imagesCommand } = await import('./images.js');
      return imagesCommand(rest);
    }
    case 'load': {
      const { loadCommand } = await import('./load-run.js');
      return loadCommand(rest);
    }
    case 'run': {
      const { runCommand } = await import('./load-run.js');
      return runCommand(rest);
    }
    case 'du': {
      const { duCommand } = await import('./du.js');
      return duCommand(rest);
    }
    case 'prune': {
      const { pruneCommand } = await import('./prune.js');
      return pruneCommand(rest);
    }
    default:
      process.stderr.write(`kiln: unknown command "${command}"\n\n${USAGE}\n`);
      return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`kiln: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
