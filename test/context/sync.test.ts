import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import tar from 'tar-stream';
import { syncEntries, writeWantedTar } from '../../src/context/sync.js';
import { walkContext, ContextError } from '../../src/context/walk.js';

let ctx: string;

function write(rel: string, content: string | Buffer = rel): void {
  const p = path.join(ctx, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
}

beforeEach(() => {
  ctx = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-sync-'));
});
afterEach(() => fs.rmSync(ctx, { recursive: true, force: true }));

/** Reads a tar back: name -> { header, content }. */
async function readTar(buf: Buffer): Promise<Map<string, { header: tar.Header; content: string }>> {
  const out = new Map<string, { header: tar.Header; content: string }>();
  const ex = tar.extract();
  const done = new Promise<void>((resolve, reject) => ex.on('finish', resolve).on('error', reject));
  ex.on('entry', (header, body, next) => {
    const chunks: Buffer[] = [];
    body.on('data', (c: unknown) => void chunks.push(c as Buffer));
    body.on('end', () => {
      out.set(header.name, { header, content: Buffer.concat(chunks).toString() });
      next();
    });
  });
  ex.end(buf);
  await done;
  return out;
}

async function tarOf(entries: Awaited<ReturnType<typeof syncEntries>>, wanted: string[]) {
  const pt = new PassThrough();
  const chunks: Buffer[] = [];
  pt.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const r = await writeWantedTar(ctx, entries, wanted, pt);
  return { r, buf: Buffer.concat(chunks) };
}

describe('syncEntries', () => {
  it('lists types, modes, sizes, mtimes, link targets, stamps and hard links, without owners', async () => {
    write('a.txt', 'hello');
    fs.chmodSync(path.join(ctx, 'a.txt'), 0o4750);
    fs.linkSync(path.join(ctx, 'a.txt'), path.join(ctx, 'b-hard'));
    fs.symlinkSync('/etc/passwd', path.join(ctx, 'c-link'));
    write('d/e');
    const entries = await syncEntries(ctx, await walkContext(ctx));
    expect(entries.map((e) => [e.path, e.type])).toEqual([
      ['a.txt', 'file'],
      ['b-hard', 'file'],
      ['c-link', 'symlink'],
      ['d', 'dir'],
      ['d/e', 'file'],
    ]);
    const [a, b, c, d] = entries;
    const st = fs.statSync(path.join(ctx, 'a.txt'), { bigint: true });
    expect(a).toEqual({
      path: 'a.txt',
      type: 'file',
      mode: 0o4750,
      size: 5,
      mtimeMs: expect.closeTo(Number(st.mtimeNs) / 1e6, 3),
      stamp: `${st.dev.toString(36)}:${st.ino.toString(36)}:${st.ctimeNs.toString(36)}`,
    });
    expect(b).toMatchObject({ hardlinkTo: 'a.txt', size: 5 });
    expect(b!.stamp).toBeUndefined(); // its content is never sent
    expect(c).toMatchObject({ linkTarget: '/etc/passwd', size: 0 });
    expect(d).toMatchObject({ size: 0 });
    expect(Object.keys(a!)).not.toContain('uid');
  });

  it('sends a hard link as content when its first name was narrowed away', async () => {
    write('a.txt', 'hello');
    fs.linkSync(path.join(ctx, 'a.txt'), path.join(ctx, 'b'));
    const walked = (await walkContext(ctx)).filter((e) => e.path !== 'a.txt');
    const [b] = await syncEntries(ctx, walked);
    expect(b!.hardlinkTo).toBeUndefined();
    expect(b!.stamp).toBeDefined();
  });

  it('changes the stamp on a same-size rewrite whose mtime was put back', async () => {
    write('f', 'aaaa');
    fs.utimesSync(path.join(ctx, 'f'), 1_700_000_000, 1_700_000_000);
    const [before] = await syncEntries(ctx, await walkContext(ctx));
    await new Promise((r) => setTimeout(r, 20)); // ctime has a coarse clock: let it tick
    write('f', 'bbbb');
    fs.utimesSync(path.join(ctx, 'f'), 1_700_000_000, 1_700_000_000);
    const [after] = await syncEntries(ctx, await walkContext(ctx));
    expect(after!.size).toBe(before!.size);
    expect(after!.mtimeMs).toBe(before!.mtimeMs);
    expect(after!.stamp).not.toBe(before!.stamp);
  });

  it('refuses special files, naming them', async () => {
    execFileSync('mkfifo', [path.join(ctx, 'pipe')]);
    const p = syncEntries(ctx, await walkContext(ctx));
    await expect(p).rejects.toBeInstanceOf(ContextError);
    await expect(p).rejects.toThrow('build context: pipe is a fifo: special files cannot be sent');
  });
});

describe('writeWantedTar', () => {
  it('writes exactly the wanted files with their size, mode and mtime', async () => {
    write('a', 'AAA');
    write('dir/b', 'BB');
    fs.chmodSync(path.join(ctx, 'dir/b'), 0o700);
    write('c', 'C');
    const long = `dir/${'x'.repeat(200)}`;
    write(long, 'long');
    const entries = await syncEntries(ctx, await walkContext(ctx));
    const { r, buf } = await tarOf(entries, ['dir/b', long]);
    expect(r).toEqual({ files: 2, bytes: 6 });
    const got = await readTar(buf);
    expect([...got.keys()]).toEqual(['dir/b', long]);
    expect(got.get('dir/b')!.content).toBe('BB');
    expect(got.get('dir/b')!.header).toMatchObject({ type: 'file', size: 2, mode: 0o700 });
    expect(got.get(long)!.content).toBe('long');
  });

  it('writes a valid empty tar when nothing is wanted', async () => {
    const { r, buf } = await tarOf([], []);
    expect(r).toEqual({ files: 0, bytes: 0 });
    expect(buf.length).toBe(1024);
  });

  it('refuses to send what is not a file of the list', async () => {
    write('d/f');
    fs.linkSync(path.join(ctx, 'd/f'), path.join(ctx, 'h'));
    const entries = await syncEntries(ctx, await walkContext(ctx));
    for (const p of ['d', 'h', 'nope']) {
      await expect(tarOf(entries, [p])).rejects.toThrow(`build context: ${p} was asked for`);
    }
  });

  it('fails naming a file that changed size since it was listed, and breaks the stream', async () => {
    write('grow', 'short');
    const entries = await syncEntries(ctx, await walkContext(ctx));
    write('grow', 'much longer now');
    const pt = new PassThrough();
    const ended = new Promise<string>((resolve) => {
      pt.on('error', (e) => resolve(`error: ${e.message}`));
      pt.on('end', () => resolve('end'));
      pt.resume();
    });
    await expect(writeWantedTar(ctx, entries, ['grow'], pt)).rejects.toThrow(
      /build context: grow changed size while being sent \(listed as 5 bytes, found 15\)/,
    );
    expect(await ended).toMatch(/^error: /); // the receiver sees a broken upload, not a short one
  });

  it('carries non-ASCII names, empty files and files spanning several 1 MiB batches', async () => {
    const names = ['ünï/cödé ✓.txt', 'empty', 'big', 'tail'];
    write(names[0]!, 'utf8');
    write('empty', '');
    const big = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    write('big', big);
    write('tail', 'T');
    const entries = await syncEntries(ctx, await walkContext(ctx));
    const { r, buf } = await tarOf(entries, names);
    expect(r).toEqual({ files: 4, bytes: 4 + 0 + big.length + 1 });
    const got = await readTar(buf);
    expect([...got.keys()]).toEqual(names);
    expect(got.get(names[0]!)!.content).toBe('utf8');
    expect(got.get('empty')!.header.size).toBe(0);
    expect(Buffer.from(got.get('big')!.content, 'latin1').length).toBe(big.length);
    expect(got.get('tail')!.content).toBe('T');
  });

  it('fails naming a file that holds more than its size says when read', async () => {
    // A file that grows between the size check and the read: /proc files are regular files whose
    // fstat size (0) is less than what a read returns, so the check after the last byte must catch it.
    const listed = [{ path: 'status', type: 'file' as const, mode: 0o444, size: 0, mtimeMs: 0, stamp: 'x' }];
    const pt = new PassThrough();
    pt.resume();
    pt.on('error', () => {});
    await expect(writeWantedTar('/proc/self', listed, ['status'], pt)).rejects.toThrow(
      /build context: status changed size while being sent \(listed as 0 bytes, found at least \d+\)/,
    );
  });

  it('refuses a file replaced by a link or a fifo since the list, without hanging', async () => {
    write('a', 'AAA');
    write('b', 'BBB');
    const entries = await syncEntries(ctx, await walkContext(ctx));
    fs.rmSync(path.join(ctx, 'a'));
    fs.symlinkSync('b', path.join(ctx, 'a'));
    await expect(tarOf(entries, ['a'])).rejects.toThrow(/build context: cannot open a: /);
    fs.rmSync(path.join(ctx, 'b'));
    execFileSync('mkfifo', [path.join(ctx, 'b')]);
    await expect(tarOf(entries, ['b'])).rejects.toThrow('build context: b changed while being sent: it is no longer a file');
  });

  it('stops, without hanging, when the receiver goes away', async () => {
    write('big', Buffer.alloc(8 * 1024 * 1024, 7));
    const entries = await syncEntries(ctx, await walkContext(ctx));
    let seen = 0;
    const out = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, cb) {
        seen += chunk.length;
        cb(seen > 1024 * 1024 ? new Error('receiver gone') : null);
      },
    });
    await expect(writeWantedTar(ctx, entries, ['big'], out)).rejects.toThrow('receiver gone');
  });
});
