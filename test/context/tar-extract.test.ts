import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { extractContextTar } from '../../src/context/tar-extract.js';
import { ContextError } from '../../src/context/walk.js';

let tmp: string;
let dest: string;
let outside: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-tarctx-'));
  dest = path.join(tmp, 'dest');
  outside = path.join(tmp, 'outside');
  fs.mkdirSync(dest);
  fs.mkdirSync(outside);
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

type Item = Partial<tar.Header> & { name: string; body?: string | Buffer };

async function makeTar(items: Item[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const { body, ...header } of items) pack.entry({ mtime: new Date(1_600_000_000_000), ...header }, body ?? '');
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const extract = (buf: Buffer, limits?: Parameters<typeof extractContextTar>[2]) => extractContextTar(Readable.from([buf]), dest, limits);

function outsideIsEmpty(): void {
  expect(fs.readdirSync(outside)).toEqual([]);
  expect(fs.existsSync(path.join(tmp, 'evil'))).toBe(false);
}

describe('extractContextTar', () => {
  const good: Item[] = [
    { name: 'd/', type: 'directory', mode: 0o750, mtime: new Date(1_500_000_000_000) },
    { name: 'd/f', mode: 0o640, body: 'hello', uid: 1234, gid: 5678 },
    { name: 'd/l', type: 'symlink', linkname: '../nowhere/at all' },
    { name: 'd/h', type: 'link', linkname: 'd/f' },
    { name: `long/${'n'.repeat(150)}/${'m'.repeat(120)}.txt`, body: 'long name' }, // pax path; parents implicit
    { name: 'ro/', type: 'directory', mode: 0o555 },
    { name: 'ro/inside', mode: 0o4755, body: 'x' }, // written before its read-only dir gets its mode
  ];

  const checkGood = (r: { files: number; bytes: number }) => {
    expect(r).toEqual({ files: 3, bytes: 5 + 9 + 1 });
    const f = fs.lstatSync(path.join(dest, 'd/f'));
    expect(fs.readFileSync(path.join(dest, 'd/f'), 'utf8')).toBe('hello');
    expect(f.mode & 0o7777).toBe(0o640);
    expect(f.uid).toBe(process.getuid!()); // owners from the tar are ignored
    expect(f.mtimeMs).toBe(1_600_000_000_000);
    expect(fs.readlinkSync(path.join(dest, 'd/l'))).toBe('../nowhere/at all');
    expect(fs.lstatSync(path.join(dest, 'd/h')).ino).toBe(f.ino);
    const d = fs.lstatSync(path.join(dest, 'd'));
    expect(d.mode & 0o7777).toBe(0o750);
    expect(d.mtimeMs).toBe(1_500_000_000_000); // applied after its contents
    expect(fs.readFileSync(path.join(dest, 'long', 'n'.repeat(150), `${'m'.repeat(120)}.txt`), 'utf8')).toBe('long name');
    expect(fs.lstatSync(path.join(dest, 'ro')).mode & 0o7777).toBe(0o555);
    expect(fs.lstatSync(path.join(dest, 'ro/inside')).mode & 0o7777).toBe(0o4755);
  };

  it('extracts files, directories, symlinks and hard links with modes and mtimes', async () => {
    checkGood(await extract(await makeTar(good)));
  });

  it('detects gzip by its magic bytes', async () => {
    checkGood(await extract(gzipSync(await makeTar(good))));
  });

  it('lets a later entry of the same name replace an earlier file, as tar does', async () => {
    await extract(
      await makeTar([
        { name: 'f', body: 'one' },
        { name: 'f', body: 'two' },
      ]),
    );
    expect(fs.readFileSync(path.join(dest, 'f'), 'utf8')).toBe('two');
  });

  const refusals: [string, Item[], RegExp][] = [
    ['a name with ".."', [{ name: '../evil', body: 'x' }], /"\.\.\/evil".*"\.\."/],
    ['a ".." hidden in the middle', [{ name: 'a/../../evil', body: 'x' }], /a\/\.\.\/\.\.\/evil/],
    ['an absolute name', [{ name: '/abs', body: 'x' }], /"\/abs".*absolute/],
    [
      'a write through a symlink made by an earlier entry',
      [
        { name: 'link', type: 'symlink', linkname: '' }, // filled in per test below
        { name: 'link/file', body: 'x' },
      ],
      /link\/file: refusing to write through the symlink link/,
    ],
    [
      'a write through a relative symlink',
      [
        { name: 'up', type: 'symlink', linkname: '../outside' },
        { name: 'up/file', body: 'x' },
      ],
      /symlink up/,
    ],
    ['a hard link to /etc/passwd', [{ name: 'pw', type: 'link', linkname: '/etc/passwd' }], /"pw".*outside the context/],
    ['a hard link to ../x', [{ name: 'x', type: 'link', linkname: '../outside/x' }], /outside the context/],
    [
      'a hard link to a later entry',
      [
        { name: 'h', type: 'link', linkname: 'later' },
        { name: 'later', body: 'x' },
      ],
      /"h".*not an earlier entry/,
    ],
    [
      'a hard link through a symlinked parent',
      [
        { name: 'sl', type: 'symlink', linkname: '/etc' },
        { name: 'h', type: 'link', linkname: 'sl/passwd' },
      ],
      /not an earlier entry/,
    ],
    ['a character device', [{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }], /"null".*character-device/],
    ['a block device', [{ name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 }], /block-device/],
    ['a fifo', [{ name: 'pipe', type: 'fifo' }], /"pipe".*fifo/],
  ];

  for (const [what, items, message] of refusals) {
    it(`refuses ${what} and writes nothing outside`, async () => {
      const fixed = items.map((i) => (i.name === 'link' ? { ...i, linkname: outside } : i));
      const p = extract(await makeTar(fixed));
      await expect(p).rejects.toBeInstanceOf(ContextError);
      await expect(p).rejects.toThrow(message);
      outsideIsEmpty();
    });
  }

  it('enforces size and entry limits', async () => {
    const buf = await makeTar([
      { name: 'a', body: 'x'.repeat(10) },
      { name: 'b', body: 'y'.repeat(10) },
    ]);
    await expect(extract(buf, { maxBytes: 15 })).rejects.toThrow('build context exceeds the maximum size of 15 bytes');
    expect(fs.existsSync(path.join(dest, 'b'))).toBe(false); // refused before writing
    fs.rmSync(dest, { recursive: true });
    fs.mkdirSync(dest);
    await expect(extract(buf, { maxEntries: 1 })).rejects.toThrow('build context exceeds the maximum of 1 entries');
    fs.rmSync(dest, { recursive: true });
    fs.mkdirSync(dest);
    expect(await extract(buf, { maxBytes: 20, maxEntries: 2 })).toEqual({ files: 2, bytes: 20 });
  });

  it('rejects a stream cut inside an entry, or at an entry boundary, or with nothing at all', async () => {
    const buf = await makeTar([
      { name: 'a', body: 'x'.repeat(3000) },
      { name: 'b', body: 'y' },
    ]);
    await expect(extract(buf.subarray(0, 2000))).rejects.toThrow(ContextError);
    fs.rmSync(dest, { recursive: true });
    fs.mkdirSync(dest);
    // 512 header + 3072 padded data: ends exactly after the first entry, no end-of-archive blocks.
    await expect(extract(buf.subarray(0, 512 + 3072))).rejects.toThrow(/truncated/);
    fs.rmSync(dest, { recursive: true });
    fs.mkdirSync(dest);
    await expect(extract(Buffer.alloc(0))).rejects.toThrow(/truncated/);
  });

  it('rejects garbage, plain or behind gzip magic', async () => {
    const garbage = Buffer.alloc(4096, 'garbage!');
    await expect(extract(garbage)).rejects.toThrow(/build context tar is unreadable: Invalid tar header/);
    await expect(extract(Buffer.concat([Buffer.from([0x1f, 0x8b]), garbage]))).rejects.toThrow(ContextError);
    await expect(extract(gzipSync(garbage))).rejects.toThrow(ContextError);
  });

  it('rejects an input stream that errors', async () => {
    const input = new Readable({ read() {} });
    const p = extractContextTar(input, dest);
    input.push(Buffer.alloc(512, 1));
    input.destroy(new Error('connection reset'));
    await expect(p).rejects.toThrow(/connection reset/);
  });

  it('refuses a destination that is not empty', async () => {
    fs.writeFileSync(path.join(dest, 'x'), '');
    const input = Readable.from([await makeTar([{ name: 'a', body: 'a' }])]);
    await expect(extractContextTar(input, dest)).rejects.toThrow(/not empty/);
    expect(input.destroyed).toBe(true); // a writer piping into it is not left hanging
  });
});
