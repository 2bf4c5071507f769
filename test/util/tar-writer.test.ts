// hashTar hashes the archive tarReadable would stream, batch buffers written again once hashed: the
// digest must not depend on the batch size, and a header that spans several batches (a large pax
// record) must not be overwritten while a batch holding part of it waits to be hashed.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { hashTar, tarReadable, type TarEntry } from '../../src/util/tar-writer.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-tarw-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function streamed(entries: TarEntry[], batchBytes?: number): Promise<{ digest: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of tarReadable(entries, batchBytes ? { batchBytes } : {})) {
    h.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, bytes };
}

function entries(): TarEntry[] {
  const big = path.join(dir, 'big');
  fs.writeFileSync(big, Buffer.alloc(50_000, 'x'));
  const small = path.join(dir, 'small');
  fs.writeFileSync(small, 'small\n');
  const base = { mode: 0o644, uid: 0, gid: 0, mtime: 1_700_000_000 };
  return [
    { ...base, name: 'd', type: 'dir', mode: 0o755 },
    // A pax record of ~200 KB: one header put across many 4 KiB batches.
    { ...base, name: 'd/xattrs', type: 'file', size: 6, source: small, xattrs: [['user.big', Buffer.alloc(200_000, 'v')]] },
    { ...base, name: 'd/big', type: 'file', size: 50_000, source: big },
    { ...base, name: 'd/link', type: 'symlink', linkname: 'big' },
    { ...base, name: `d/${'long-name-'.repeat(30)}`, type: 'file', size: 6, source: small },
    { ...base, name: 'd/hard', type: 'link', linkname: 'd/big' },
  ];
}

describe('hashTar', () => {
  it('gives the digest and length of the streamed archive, whatever the batch size', async () => {
    const want = await streamed(entries());
    expect(want.bytes).toBeGreaterThan(250_000);
    expect(await streamed(entries(), 4096)).toEqual(want);
    expect(await hashTar(entries())).toEqual(want);
    expect(await hashTar(entries(), { batchBytes: 4096 })).toEqual(want);
    expect(await hashTar(entries(), { batchBytes: 512 })).toEqual(want);
  });

  it('an empty list is the end-of-archive blocks alone', async () => {
    expect(await hashTar([])).toEqual(await streamed([]));
    expect((await hashTar([])).bytes).toBe(1024);
  });
});
