#!/usr/bin/env node
// kiln's command line. Kept import-light at the top so `kiln --version` starts fast: every command
// loads what it needs with a dynamic import.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const USAGE = `Usage: kiln [--version] <command> [options]

Commands:
  build [options] CONTEXT   Build an image from a Dockerfile
  version                   Print the version

Run 'kiln build --help' for the build options.`;

export function kilnVersion(): string {
  const pkgPath = fileURLToPath(new URL('../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
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
      process.stdout.write(USAGE + '\n');
      return command === undefined ? 1 : 0;
    case 'build': {
      const { buildCommand } = await import('./build.js');
      return buildCommand(rest);
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
