#!/usr/bin/env node
// kiln's command line. Kept import-light at the top so `kiln --version` starts fast: every command
// loads what it needs with a dynamic import.

import { kilnVersion } from './version.js';

const USAGE = `Usage: kiln [--root DIR] [--version] <command> [options]

Commands:
  build [options] PATH      Build an image from a Dockerfile
  images [options]          List the images in kiln's image store
  load -i PATH [-t NAME]    Load an OCI image layout (directory or tarball) into the store
  run IMAGE [COMMAND...]    Run an image from the store in a throw-away container
  daemon [options]          Serve builds to clients (kiln build --addr, KILN_HOST, the default socket)
  du [--verbose]            Show the disk usage of kiln's root
  prune [options]           Remove build cache
  version                   Print the version

Global options:
  --root DIR                kiln's state directory (default: $KILN_ROOT, /var/lib/kiln for root)
  --addr ADDR               The kiln daemon to use (default: $KILN_HOST, else the daemon on
                            unix:///run/kiln/kiln.sock when one answers, else none: embedded)
  --tlscacert/--tlscert/--tlskey FILE   TLS to a tcp:// daemon (or $KILN_TLS_CACERT, ...)
  -v, --version             Print the version
  -h, --help                This help

Run 'kiln COMMAND --help' for a command's options.`;

// COPY, layer diffs and checksums are many small file-system calls, which Node runs on libuv's
// thread pool (4 threads unless told otherwise). It is sized once, on first use, so set it here.
process.env.UV_THREADPOOL_SIZE ??= '16';

export { kilnVersion };

/** Flags that say which daemon to talk to, and the environment variables they set. */
const CONNECTION_FLAGS: Record<string, string> = {
  '--addr': 'KILN_HOST',
  '--tlscacert': 'KILN_TLS_CACERT',
  '--tlscert': 'KILN_TLS_CERT',
  '--tlskey': 'KILN_TLS_KEY',
};
/** Commands that talk to a daemon when one is named; they take the connection flags anywhere. */
const CLIENT_COMMANDS = new Set(['build', 'images', 'du', 'prune']);

/** The variables a connection flag of this command line has set. */
const fromFlags = new Set<string>();

/**
 * Takes the connection flags (`--addr ADDR`, `--addr=ADDR`, TLS files) out of a client command's
 * arguments, before any "--", and puts them in the environment as KILN_HOST and friends.
 */
function takeConnectionFlags(args: string[]): string[] | string {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const variable = CONNECTION_FLAGS[flag];
    if (!variable) {
      out.push(a);
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === '') return `flag needs an argument: ${flag}`;
    // --addr repeated names a fleet (KILN_HOST=a,b: each build goes to the daemon its context picks);
    // the first flag replaces what the environment said.
    process.env[variable] = variable === 'KILN_HOST' && fromFlags.has(variable) ? `${process.env[variable]},${value}` : value;
    fromFlags.add(variable);
  }
  return out;
}

/** `--root DIR` / `--root=DIR` before the command: the state root for whatever command follows. */
function takeGlobalRoot(argv: string[]): string[] | string {
  const rest = [...argv];
  while (rest[0]?.startsWith('--root')) {
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
  let [command, ...rest] = args;
  // Connection flags may also come before the command: `kiln --addr tcp://h:1234 build .`.
  while (command !== undefined && CONNECTION_FLAGS[command.split('=')[0]!]) {
    const taken = takeConnectionFlags(args.slice(0, command.includes('=') ? 1 : 2));
    if (typeof taken === 'string') {
      process.stderr.write(`kiln: ${taken}\n\n${USAGE}\n`);
      return 1;
    }
    args.splice(0, command.includes('=') ? 1 : 2);
    [command, ...rest] = args;
  }
  if (command !== undefined && CLIENT_COMMANDS.has(command)) {
    const taken = takeConnectionFlags(rest);
    if (typeof taken === 'string') {
      process.stderr.write(`kiln ${command}: ${taken}\n`);
      return 1;
    }
    rest = taken;
  }
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
    case 'daemon': {
      const { daemonCommand } = await import('./daemon.js');
      return daemonCommand(rest);
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
