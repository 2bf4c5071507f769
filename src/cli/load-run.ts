// `kiln load` (an OCI layout into kiln's image store, as `docker load`) and `kiln run` (an image's
// command in a throw-away container, for a look at what was built without Docker).

import { parseArgs } from 'node:util';
import { familiarString, parseReference } from '../client/client.js';
import { embeddedClient } from '../client/embedded.js';
import type { OutStream } from './progress/types.js';

export const LOAD_HELP = `Usage: kiln load -i PATH [-t NAME:TAG]

Load the images of an OCI image layout (a directory, or a tarball such as kiln's
--output type=oci or type=docker writes) into kiln's image store.

Options:
  -i, --input PATH      The layout directory or tarball
  -t, --tag NAME:TAG    Name for an image the layout carries no full name for
      --root DIR        kiln's state directory
  -h, --help            This help
`;

export const RUN_HELP = `Usage: kiln run [--network none|host] IMAGE [COMMAND [ARG...]]

Run an image from kiln's image store in a throw-away container (runc) and print its
output; exits with the command's exit code. COMMAND replaces the image's CMD.

Options:
      --network MODE    none (default) or host
      --root DIR        kiln's state directory
  -h, --help            This help
`;

interface Io {
  stdout: OutStream & { write(chunk: string | Uint8Array): unknown };
  stderr: OutStream & { write(chunk: string | Uint8Array): unknown };
}

const defaultIo = (): Io => ({ stdout: process.stdout, stderr: process.stderr });

function takeRoot(values: { root?: string }): void {
  if (values.root) process.env.KILN_ROOT = values.root;
}

export async function loadCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { input: { type: 'string', short: 'i' }, tag: { type: 'string', short: 't' }, root: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    io.stderr.write(`kiln load: ${(err as Error).message}\n\n${LOAD_HELP}`);
    return 1;
  }
  if (values.help) {
    io.stdout.write(LOAD_HELP);
    return 0;
  }
  if (!values.input) {
    io.stderr.write(`kiln load: -i PATH is required\n\n${LOAD_HELP}`);
    return 1;
  }
  if (values.tag) {
    try {
      parseReference(values.tag);
    } catch (err) {
      io.stderr.write(`kiln load: invalid argument "${values.tag}" for "-t, --tag" flag: ${(err as Error).message}\n`);
      return 1;
    }
  }
  takeRoot(values);
  const client = embeddedClient();
  try {
    for (const r of await client.loadImages(values.input, values.tag)) {
      io.stdout.write(`Loaded image: ${familiarString(parseReference(r.name))}\n`);
    }
    return 0;
  } catch (err) {
    io.stderr.write(`kiln load: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await client.close();
  }
}

export async function runCommand(argv: string[], io: Io = defaultIo()): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      // Options end at the image name: what follows is the container's command line.
      args: splitAtImage(argv),
      allowPositionals: true,
      options: { network: { type: 'string' }, root: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    io.stderr.write(`kiln run: ${(err as Error).message}\n\n${RUN_HELP}`);
    return 1;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout.write(RUN_HELP);
    return 0;
  }
  const network = values.network ?? 'none';
  if (network !== 'none' && network !== 'host') {
    io.stderr.write(`kiln run: invalid argument "${network}" for "--network" flag: want none or host\n`);
    return 1;
  }
  const [image, ...command] = positionals;
  if (!image) {
    io.stderr.write(`kiln run: an IMAGE is required\n\n${RUN_HELP}`);
    return 1;
  }
  takeRoot(values);
  const client = embeddedClient();
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  try {
    return await client.runImage(image, {
      args: command,
      network,
      onStdout: (c) => io.stdout.write(c),
      onStderr: (c) => io.stderr.write(c),
      signal: abort.signal,
    });
  } catch (err) {
    io.stderr.write(`kiln run: ${(err as Error).message}\n`);
    return 125; // docker run's code for an error of its own, not the command's
  } finally {
    process.off('SIGINT', onSigint);
    await client.close();
  }
}

/** parseArgs must not read the container command's flags as kiln's: stop at the first positional. */
function splitAtImage(argv: string[]): string[] {
  const withValue = new Set(['--network', '--root']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return argv;
    if (!a.startsWith('-')) return [...argv.slice(0, i), '--', ...argv.slice(i)];
    if (withValue.has(a)) i++;
  }
  return argv;
}
