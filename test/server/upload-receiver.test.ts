import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import type { SyncEntry } from '../../src/context/sync.js';
import { UploadReceiver } from '../../src/server/upload-receiver.js';

let staging: string;
beforeEach(() => {
  staging = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-recv-'));
});
afterEach(() => fs.rmSync(staging, { recursive: true, force: true }));

function file(p: string, size: number, mode = 0o644): SyncEntry {
  return { path: p, type: 'file', mode, size, mtimeMs: 1_600_000_000_123, stamp: 's' };
}

/** A tar as tar-stream (the previous clients' packer) writes it. */
async function packed(entries: { name: string; body?: Buffer | string; type?: tar.Header['type']; linkname?: string; pax?: Record<string, string> }[]) {
  const pack = tar.pack();
  for (const e of entries) {
    const body = typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0));
    const isFile = e.type === undefined || e.type === 'file';
    const header = { name: e.name, type: e.type ?? 'file', size: isFile ? body.length : 0, linkname: e.linkname, pax: e.pax };
    if (isFile) pack.entry(header, body);
    else pack.entry(header);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function receive(wanted: SyncEntry[], chunks: Buffer[]) {
  const r = new UploadReceiver(new Map(wanted.map((e) => [e.path, e])), staging);
  await pipeline(Readable.from(chunks), r);
  r.checkComplete();
  return r.staged;
}

/** The buffer cut into pieces of `n` bytes: headers, pax records and data split at every place. */
function cut(buf: Buffer, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += n) out.push(buf.subarray(i, i + n));
  return out;
}

describe('UploadReceiver', () => {
  it('stages ustar-prefix, pax and plain names, with planned mode and mtime, however the stream is cut', async () => {
    const prefixed = `${'p'.repeat(120)}/name`; // tar-stream splits it into prefix + name
    const paxed = `ünï/${'x'.repeat(300)}`; // needs a pax path
    const big = Buffer.alloc(200_000, 9);
    const wanted = [file('a', 3, 0o4755), file(prefixed, 1), file(paxed, 4), file('empty', 0), file('big', big.length)];
    const tarBuf = await packed([
      { name: 'a', body: 'AAA' },
      { name: prefixed, body: 'P' },
      { name: paxed, body: 'pax!' },
      { name: 'empty' },
      { name: 'big', body: big },
    ]);
    for (const n of [1, 7, 511, 513, 65536]) {
      fs.rmSync(staging, { recursive: true, force: true });
      fs.mkdirSync(staging);
      const staged = await receive(wanted, cut(tarBuf, n));
      expect([...staged.keys()]).toEqual(wanted.map((e) => e.path));
      expect(fs.readFileSync(staged.get('a')!, 'utf8')).toBe('AAA');
      expect(fs.readFileSync(staged.get(prefixed)!, 'utf8')).toBe('P');
      expect(fs.readFileSync(staged.get(paxed)!, 'utf8')).toBe('pax!');
      expect(fs.statSync(staged.get('empty')!).size).toBe(0);
      expect(fs.readFileSync(staged.get('big')!).equals(big)).toBe(true);
      const st = fs.statSync(staged.get('a')!);
      expect(st.mode & 0o7777).toBe(0o4755); // set after the data, so setuid survives
      expect(st.mtimeMs).toBeCloseTo(1_600_000_000_123, 0);
    }
  });

  it('refuses what was not asked for, naming it, by any spelling', async () => {
    const wanted = [file('a', 1)];
    const cases: [string, Buffer, RegExp][] = [
      ['a pax path escaping', await packed([{ name: 'a', body: 'A', pax: { path: '../a' } }]), /tar entry "\.\.\/a": was not asked for/],
      ['a directory', await packed([{ name: 'a', type: 'directory' }]), /tar entry "a": a directory was not asked for/],
      ['a fifo', await packed([{ name: 'a', type: 'fifo' }]), /tar entry "a": a fifo was not asked for/],
      ['a pax size lie', await packed([{ name: 'a', body: 'A', pax: { size: '2' } }]), /tar entry "a": is 2 bytes, the list said 1/],
    ];
    for (const [what, buf, message] of cases) {
      await expect(receive(wanted, [buf]), what).rejects.toThrow(message);
    }
    expect(fs.readdirSync(staging)).toEqual([]);
  });

  it('refuses a bad checksum, an oversized pax header and a stream without its end block', async () => {
    const wanted = [file('a', 1)];
    const good = await packed([{ name: 'a', body: 'A' }]);
    const flipped = Buffer.from(good);
    flipped[0] = 'b'.charCodeAt(0);
    await expect(receive(wanted, [flipped])).rejects.toThrow(/Invalid tar header/);
    const hugePax = await packed([{ name: 'a', body: 'A', pax: { comment: 'x'.repeat(70_000) } }]);
    await expect(receive(wanted, [hugePax])).rejects.toThrow(/a pax header of \d+ bytes/);
    await expect(receive(wanted, [good.subarray(0, 1024)])).rejects.toThrow(/unexpected end of data/);
  });
});
