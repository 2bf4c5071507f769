// `kiln build -`: the build context comes on stdin, as with `docker build -`. A tar (plain or gzip)
// is the context, and the Dockerfile is read from inside it (-f names it there); anything else is
// the Dockerfile itself, with an empty context. The tar is unpacked into a private temporary
// directory by the context room's safe extractor (entries that would land outside it, links to
// outside paths and device nodes are refused), and from there the build is an ordinary directory
// build, embedded or through a daemon.

import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { readFileInside } from '../context/read-inside.js';
import type { BuildRequest } from '../server/api.js';

export interface StdinContext {
  dir: string;
  dockerfile: BuildRequest['dockerfile'];
  cleanup(): Promise<void>;
}

/** Reads the first `n` bytes (fewer at the end of the stream) and gives back a stream of the whole. */
async function peek(input: NodeJS.ReadableStream, n: number): Promise<{ head: Buffer; whole: Readable }> {
  const it = (input as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  while (size < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    const b = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    chunks.push(b);
    size += b.length;
  }
  const head = Buffer.concat(chunks);
  async function* rest() {
    yield head;
    if (done) return;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  return { head, whole: Readable.from(rest(), { objectMode: false }) };
}

function isTar(head: Buffer): boolean {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return true; // gzip
  return head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
}

export async function contextFromStdin(input: NodeJS.ReadableStream, dockerfileName?: string): Promise<StdinContext> {
  const dir = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-stdin-context-')));
  const cleanup = () => fsp.rm(dir, { recursive: true, force: true });
  try {
    const { head, whole } = await peek(input, 512);
    if (!isTar(head)) {
      if (dockerfileName !== undefined) throw new Error('with the Dockerfile on stdin (no tar), -f cannot name another one');
      const chunks: Buffer[] = [];
      for await (const c of whole) chunks.push(c as Buffer);
      return { dir, dockerfile: { name: 'Dockerfile', text: Buffer.concat(chunks).toString('utf8') }, cleanup };
    }
    try {
      // Loaded here: only `kiln build -` with a tar needs the extractor (and tar-stream under it).
      const { extractContextTar } = await import('../context/tar-extract.js');
      await extractContextTar(whole, dir);
    } catch (err) {
      throw new Error(`unable to prepare context from stdin: ${(err as Error).message}`, { cause: err });
    }
    const name = dockerfileName ?? 'Dockerfile';
    return { dir, dockerfile: { ...(await readFileInside(dir, name, 'Dockerfile')), name }, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
