// ADD <url> with credentials in the URL (BuildKit's CVE-2023-26054): the credentials authenticate
// the download, and appear in no byte of the image, its history, the progress, an error message, or
// kiln's root.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildFailure } from '../../src/server/api.js';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const PASSWORD = `pw-${process.pid}-s3cr3t`;
const cleanup: string[] = [];
let httpServer: http.Server;
let port: number;

beforeAll(async () => {
  // A file server on loopback that wants Basic auth as user "ci" with PASSWORD.
  httpServer = http.createServer((req, res) => {
    const want = `Basic ${Buffer.from(`ci:${PASSWORD}`).toString('base64')}`;
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' }).end('no');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('fetched with credentials\n');
  });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  port = (httpServer.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise((r) => httpServer.close(r));
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

/** Every file under `dir` whose bytes (gzip layers unpacked) contain `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const out: string[] = [];
  const visit = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) visit(path.join(p, n));
    else if (st.isFile()) {
      let data = fs.readFileSync(p);
      if (data[0] === 0x1f && data[1] === 0x8b) data = Buffer.from(execFileSync('gzip', ['-dc'], { input: data, maxBuffer: 1 << 30 }));
      if (data.includes(needle)) out.push(p);
    }
  };
  visit(dir);
  return out;
}

describe('credentials in ADD URLs', () => {
  it('authenticate the download and are redacted everywhere else', async () => {
    const root = kilnRoot();
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cred-out-'));
    cleanup.push(root, out);
    const ctx = makeContext({ Dockerfile: `FROM busybox\nADD http://ci:${PASSWORD}@127.0.0.1:${port}/file.txt /got.txt\nRUN cat /got.txt\n` });
    cleanup.push(ctx);
    const srv = server(root);
    try {
      const b = await build(srv, ctx, { outputs: [{ type: 'oci', names: ['cred:1'], dest: path.join(out, 'image.tar') }] });
      expect(b.logs).toContain('fetched with credentials');
      const progress = JSON.stringify(b.events);
      expect(progress).not.toContain(PASSWORD);
      expect(progress).toContain(`http://ci:xxxxx@127.0.0.1:${port}/file.txt`);
    } finally {
      await srv.close();
    }
    fs.mkdirSync(path.join(out, 'image'));
    execFileSync('tar', ['-xf', path.join(out, 'image.tar'), '-C', path.join(out, 'image')]);
    expect(filesContaining(path.join(out, 'image'), PASSWORD)).toEqual([]);
    expect(filesContaining(path.join(out, 'image'), 'ADD http://ci:xxxxx@')).not.toEqual([]); // the history, redacted
    expect(filesContaining(root, PASSWORD)).toEqual([]);
  });

  it('a failed download names the URL without its password', async () => {
    const root = kilnRoot();
    cleanup.push(root);
    const ctx = makeContext({ Dockerfile: `FROM busybox\nADD http://ci:wrong-${PASSWORD}@127.0.0.1:${port}/file.txt /got.txt\n` });
    cleanup.push(ctx);
    const srv = server(root);
    try {
      const err = await build(srv, ctx).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(BuildFailure);
      expect((err as BuildFailure).info.message).toContain('HTTP 401');
      expect((err as BuildFailure).info.message).not.toContain(PASSWORD);
    } finally {
      await srv.close();
    }
  });
});
