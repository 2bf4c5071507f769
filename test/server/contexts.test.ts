import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { listDigest, syncEntries, writeWantedTar, type SyncEntry } from '../../src/context/sync.js';
import { ContextError, walkContext } from '../../src/context/walk.js';
import { KeptContexts, type ContextLease } from '../../src/server/contexts.js';

let tmp: string;
let ctx: string; // the client's context
let root: string; // the daemon's <kiln root>/contexts
let outside: string; // must stay empty
let kept: KeptContexts;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-kept-'));
  ctx = path.join(tmp, 'ctx');
  root = path.join(tmp, 'contexts');
  outside = path.join(tmp, 'outside');
  fs.mkdirSync(ctx);
  fs.mkdirSync(outside);
  kept = new KeptContexts(root);
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(rel: string, content: string | Buffer = rel): void {
  const p = path.join(ctx, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One whole upload as the client and the daemon's HTTP door would run it, minus HTTP. */
async function upload(lease: ContextLease) {
  const entries = await syncEntries(ctx, await walkContext(ctx, { excludes: [] }));
  const plan = await lease.plan(entries);
  const pipe = new PassThrough();
  const [sent, got] = await Promise.all([writeWantedTar(ctx, entries, plan.wanted, pipe), lease.receive(pipe)]);
  expect(got).toEqual(sent);
  return { entries, plan, got };
}

/** A tree as comparable data: everything but times, plus the times separately (µs precision). */
async function snapshot(dir: string) {
  const entries = await walkContext(dir, { excludes: [] });
  const shape = entries.map((e) => ({
    path: e.path,
    type: e.type,
    mode: e.mode,
    linkTarget: e.linkTarget,
    hardlinkTo: e.hardlinkTo,
    content: e.type === 'file' ? fs.readFileSync(path.join(dir, e.path), 'latin1') : undefined,
  }));
  const times = new Map(entries.filter((e) => e.type !== 'symlink').map((e) => [e.path, e.mtimeMs]));
  return { shape, times };
}

async function expectTreeEqualsClient(lease: ContextLease): Promise<void> {
  const client = await snapshot(ctx);
  const daemon = await snapshot(lease.dir);
  expect(daemon.shape).toEqual(client.shape);
  for (const [p, t] of client.times) expect(Math.abs(daemon.times.get(p)! - t), `mtime of ${p}`).toBeLessThan(0.001);
}

function inodes(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const visit = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      out.set(r, st.ino);
      if (st.isDirectory()) visit(r);
    }
  };
  visit('');
  return out;
}

function outsideIsEmpty(): void {
  expect(fs.readdirSync(outside)).toEqual([]);
}

function makeRichContext(): void {
  write('Dockerfile', 'FROM scratch\nCOPY . /\n');
  write('empty', '');
  write('src/main.ts', 'console.log(1)\n');
  write('src/deep/er/x.bin', randomBytes(70_000));
  fs.chmodSync(path.join(ctx, 'src/deep/er/x.bin'), 0o4755);
  write('secret', 's');
  fs.chmodSync(path.join(ctx, 'secret'), 0o600);
  write('ro/inside', 'in a read-only dir');
  fs.chmodSync(path.join(ctx, 'ro'), 0o555);
  write(`long/${'n'.repeat(120)}/${'m'.repeat(110)}`, 'long name');
  write('back\\slash', 'a backslash is a normal character');
  fs.symlinkSync('src/main.ts', path.join(ctx, 'rel-link'));
  fs.symlinkSync('/etc/passwd', path.join(ctx, 'abs-link'));
  fs.symlinkSync('does/not/exist', path.join(ctx, 'dangling'));
  fs.symlinkSync('src', path.join(ctx, 'dir-link'));
  fs.linkSync(path.join(ctx, 'src/main.ts'), path.join(ctx, 'src/x-hard'));
  fs.utimesSync(path.join(ctx, 'src/main.ts'), 1_600_000_000.123456, 1_600_000_000.123456);
}

describe('KeptContexts: an upload against the client half', () => {
  it('round trip: the kept tree equals the client context', async () => {
    makeRichContext();
    const lease = await kept.lease('job-1');
    const { entries, plan, got } = await upload(lease);
    const contentFiles = entries.filter((e) => e.type === 'file' && !e.hardlinkTo);
    expect(plan.wanted).toEqual(contentFiles.map((e) => e.path));
    expect(plan.bytes).toBe(contentFiles.reduce((n, e) => n + e.size, 0));
    expect(got).toEqual({ files: contentFiles.length, bytes: plan.bytes });
    await expectTreeEqualsClient(lease);
    expect(lease.dir).toBe(path.join(root, 'job-1', 'tree'));
    const index = JSON.parse(fs.readFileSync(path.join(root, 'job-1', 'index.json'), 'utf8'));
    expect(index.entries).toEqual(entries);
    await lease.release();
  });

  it('incremental: sends only what changed, keeps the rest untouched, follows every change of kind', async () => {
    makeRichContext();
    write('stable', 'stable');
    write('same-size', 'aaaa');
    fs.utimesSync(path.join(ctx, 'same-size'), 1_700_000_000, 1_700_000_000);
    write('gone/sub/file');
    write('gone-file');
    write('file-to-dir', 'a file first');
    write('dir-to-file/child');
    const lease = await kept.lease('job');
    await upload(lease);
    const tree = lease.dir;
    const stableBefore = fs.lstatSync(path.join(tree, 'stable'), { bigint: true });

    // Nothing changed: nothing is sent, nothing is rewritten (inode, mtime, ctime all kept).
    const again = await upload(lease);
    expect(again.plan.wanted).toEqual([]);
    const stableAfter = fs.lstatSync(path.join(tree, 'stable'), { bigint: true });
    expect([stableAfter.ino, stableAfter.mtimeNs, stableAfter.ctimeNs]).toEqual([stableBefore.ino, stableBefore.mtimeNs, stableBefore.ctimeNs]);

    // One file changed: exactly that one is sent; the others keep their inodes.
    const before = inodes(tree);
    write('src/main.ts', 'console.log(2) // longer\n');
    const one = await upload(lease);
    expect(one.plan.wanted).toEqual(['src/main.ts']);
    const after = inodes(tree);
    for (const [p, ino] of before) if (p !== 'src/main.ts' && p !== 'src/x-hard') expect(after.get(p), p).toBe(ino);
    // The hard link follows its target to the new inode.
    expect(after.get('src/x-hard')).toBe(after.get('src/main.ts'));
    await expectTreeEqualsClient(lease);

    // Same size, mtime put back: the stamp (ctime) still tells.
    await sleep(20); // ctime has a coarse clock: let it tick past the last stamp
    write('same-size', 'bbbb');
    fs.utimesSync(path.join(ctx, 'same-size'), 1_700_000_000, 1_700_000_000);
    expect((await upload(lease)).plan.wanted).toEqual(['same-size']);
    expect(fs.readFileSync(path.join(tree, 'same-size'), 'utf8')).toBe('bbbb');

    // Deletions, and a file and a dir trading places.
    fs.rmSync(path.join(ctx, 'gone'), { recursive: true });
    fs.rmSync(path.join(ctx, 'gone-file'));
    fs.rmSync(path.join(ctx, 'file-to-dir'));
    write('file-to-dir/now/deep', 'deep');
    fs.rmSync(path.join(ctx, 'dir-to-file'), { recursive: true });
    write('dir-to-file', 'now a file');
    const swapped = await upload(lease);
    expect(swapped.plan.wanted.sort()).toEqual(['dir-to-file', 'file-to-dir/now/deep']);
    expect(fs.existsSync(path.join(tree, 'gone'))).toBe(false);
    expect(fs.existsSync(path.join(tree, 'gone-file'))).toBe(false);
    await expectTreeEqualsClient(lease);
    await lease.release();
  });

  it('a symlink to outside that becomes a directory is replaced, never written through', async () => {
    fs.symlinkSync(outside, path.join(ctx, 'a'));
    const lease = await kept.lease('job');
    await upload(lease);
    expect(fs.readlinkSync(path.join(lease.dir, 'a'))).toBe(outside);

    fs.rmSync(path.join(ctx, 'a'));
    write('a/x', 'inside');
    write('a/sub/y', 'inside too');
    await upload(lease);
    expect(fs.lstatSync(path.join(lease.dir, 'a')).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(lease.dir, 'a/x'), 'utf8')).toBe('inside');
    outsideIsEmpty();
    await expectTreeEqualsClient(lease);
    await lease.release();
  });

  it('repairs a tree a killed daemon left without an index (a full resend)', async () => {
    makeRichContext();
    const lease = await kept.lease('job');
    await upload(lease);
    // What a crash in the middle of applying leaves: no index, and a tree half old, half new.
    fs.rmSync(path.join(root, 'job', 'index.json'));
    fs.writeFileSync(path.join(lease.dir, 'stray'), 'not in the list');
    fs.rmSync(path.join(lease.dir, 'src'), { recursive: true });
    fs.symlinkSync(outside, path.join(lease.dir, 'src'));
    fs.writeFileSync(path.join(lease.dir, 'empty'), 'wrong content');
    const full = await upload(lease);
    expect(full.plan.wanted.length).toBe(full.entries.filter((e) => e.type === 'file' && !e.hardlinkTo).length);
    await expectTreeEqualsClient(lease);
    outsideIsEmpty();
    await lease.release();
  });
});

describe('KeptContexts: refusals', () => {
  const entry = (p: string, more: Partial<SyncEntry> = {}): SyncEntry => ({ path: p, type: 'file', mode: 0o644, size: 1, mtimeMs: 1000, stamp: 's', ...more });
  const dir = (p: string): SyncEntry => ({ path: p, type: 'dir', mode: 0o755, size: 0, mtimeMs: 1000 });

  it('plan refuses unclean paths, missing parents, duplicates and insane fields', async () => {
    const lease = await kept.lease('job');
    const bad: [string, unknown[]][] = [
      ['empty path', [entry('')]],
      ['"."', [entry('.')]],
      ['".."', [entry('..')]],
      ['".." inside', [dir('a'), entry('a/../b')]],
      ['leading "/"', [entry('/etc/passwd')]],
      ['empty component', [dir('a'), entry('a//b')]],
      ['trailing "/"', [dir('a/')]],
      ['"./" prefix', [entry('./a')]],
      ['NUL byte', [entry('a\0b')]],
      ['missing parent', [entry('a/b')]],
      ['parent not a dir', [entry('a'), entry('a/b')]],
      ['parent listed after', [entry('a/b'), dir('a')]],
      ['duplicate', [entry('a'), entry('a')]],
      ['bad type', [entry('a', { type: 'fifo' as never })]],
      ['bad mode', [entry('a', { mode: 0o10000 })]],
      ['negative size', [entry('a', { size: -1 })]],
      ['fractional size', [entry('a', { size: 1.5 })]],
      ['bad mtime', [entry('a', { mtimeMs: NaN })]],
      ['symlink without target', [{ ...dir('l'), type: 'symlink' }]],
      ['hard link to a later entry', [entry('h', { hardlinkTo: 'a' }), entry('a')]],
      ['hard link to a dir', [dir('d'), entry('h', { hardlinkTo: 'd' })]],
      ['not an object', ['a']],
    ];
    for (const [what, list] of bad) {
      await expect(lease.plan(list as SyncEntry[]), what).rejects.toBeInstanceOf(ContextError);
    }
    await expect(lease.plan('nope' as never)).rejects.toThrow(/not an array/);
    // Allowed: a backslash, any symlink target text.
    const ok = await lease.plan([entry('a\\b'), { ...dir('l'), type: 'symlink', linkTarget: '../../../../etc' }]);
    expect(ok.wanted).toEqual(['a\\b']);
    expect(fs.readdirSync(lease.dir)).toEqual([]); // plan modifies nothing
    await lease.release();
  });

  it('plan refuses a context over the maximum size', async () => {
    const small = new KeptContexts(root, { maxContextBytes: 10 });
    const lease = await small.lease('job');
    await expect(lease.plan([entry('a', { size: 6 }), entry('b', { size: 5 })])).rejects.toThrow('build context exceeds the maximum size of 10 bytes');
    // A hard link takes no space of its own.
    expect((await lease.plan([entry('a', { size: 6 }), entry('h', { size: 6, hardlinkTo: 'a' })])).bytes).toBe(6);
    await lease.release();
  });

  async function tarOf(items: (Partial<tar.Header> & { name: string; body?: string | Buffer })[]): Promise<Buffer> {
    const pack = tar.pack();
    for (const { body, ...h } of items) pack.entry(h, body ?? '');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  it('receive refuses anything but the planned files, leaving tree and index as they were', async () => {
    write('a', 'old a');
    write('d/b', 'old b');
    const lease = await kept.lease('job');
    await upload(lease);
    const indexBefore = fs.readFileSync(path.join(root, 'job', 'index.json'), 'utf8');
    const treeBefore = await snapshot(lease.dir);
    write('a', 'new a!');
    const entries = await syncEntries(ctx, await walkContext(ctx, { excludes: [] }));

    const good = await tarOf([{ name: 'a', body: 'new a!', mode: 0o644 }]);
    const cases: [string, Buffer, RegExp][] = [
      [
        'an unplanned entry',
        await tarOf([
          { name: 'a', body: 'new a!' },
          { name: 'other', body: 'x' },
        ]),
        /"other": was not asked for/,
      ],
      [
        'a planned name sent twice',
        await tarOf([
          { name: 'a', body: 'new a!' },
          { name: 'a', body: 'new a!' },
        ]),
        /"a": sent twice/,
      ],
      ['a size mismatch', await tarOf([{ name: 'a', body: 'new a!!!' }]), /"a": is 8 bytes, the list said 6/],
      ['a "../x" entry', await tarOf([{ name: '../outside/x', body: 'x' }]), /"\.\.\/outside\/x": was not asked for/],
      ['a symlink entry', await tarOf([{ name: 'a', type: 'symlink', linkname: outside }]), /"a": a symlink was not asked for/],
      ['a hard link entry', await tarOf([{ name: 'a', type: 'link', linkname: 'd/b' }]), /"a": a link was not asked for/],
      ['a missing file', await tarOf([]), /a was asked for but not sent/],
      ['a truncated tar', good.subarray(0, 515), /unreadable tar/],
      ['garbage', Buffer.alloc(2048, 'garbage!'), /unreadable tar: Invalid tar header/],
    ];
    for (const [what, buf, message] of cases) {
      expect((await lease.plan(entries)).wanted, what).toEqual(['a']);
      await expect(lease.receive(Readable.from([buf])), what).rejects.toThrow(message);
      outsideIsEmpty();
      expect(fs.readFileSync(path.join(root, 'job', 'index.json'), 'utf8'), what).toBe(indexBefore);
      expect(await snapshot(lease.dir), what).toEqual(treeBefore);
      expect(fs.readdirSync(path.join(root, 'job')).sort(), what).toEqual(['index.json', 'tree']); // no staging left
    }
    await expect(lease.receive(Readable.from([good]))).rejects.toThrow(/without a plan/);

    // The context still works: the next sync sends the change.
    const next = await upload(lease);
    expect(next.plan.wanted).toEqual(['a']);
    await expectTreeEqualsClient(lease);
    await lease.release();
  });

  it('an upload broken by the client (a file changed size) fails both halves and keeps the old tree', async () => {
    write('a', 'old');
    const lease = await kept.lease('job');
    await upload(lease);
    write('a', 'newer');
    const entries = await syncEntries(ctx, await walkContext(ctx, { excludes: [] }));
    const plan = await lease.plan(entries);
    write('a', 'newest, and longer');
    const pipe = new PassThrough();
    const [sent, got] = await Promise.allSettled([writeWantedTar(ctx, entries, plan.wanted, pipe), lease.receive(pipe)]);
    expect(sent.status).toBe('rejected');
    expect(got.status).toBe('rejected');
    expect(fs.readFileSync(path.join(lease.dir, 'a'), 'utf8')).toBe('old');
    await upload(lease);
    await expectTreeEqualsClient(lease);
    await lease.release();
  });
});

describe('KeptContexts: leases and housekeeping', () => {
  it('validates identities', async () => {
    for (const id of ['', '.hidden', '-x', '../x', 'a/b', 'a b', 'x'.repeat(129)]) {
      await expect(kept.lease(id), id).rejects.toBeInstanceOf(ContextError);
    }
    for (const id of ['a', 'A-1_b.c', 'x'.repeat(128)]) await (await kept.lease(id)).release();
  });

  it('gives one lease per id at a time, FIFO; other ids run in parallel; a waiting lease can be aborted', async () => {
    const first = await kept.lease('same');
    const order: string[] = [];
    const second = kept.lease('same').then((l) => (order.push('second'), l));
    const ac = new AbortController();
    const aborted = kept.lease('same', ac.signal);
    const third = kept.lease('same').then((l) => (order.push('third'), l));
    const other = await kept.lease('other'); // not blocked by 'same'
    await sleep(30);
    expect(order).toEqual([]);
    ac.abort(new Error('client went away'));
    await expect(aborted).rejects.toThrow('client went away');
    await first.release();
    await first.release(); // idempotent
    const l2 = await second;
    await sleep(30);
    expect(order).toEqual(['second']);
    await l2.release();
    await (await third).release();
    expect(order).toEqual(['second', 'third']);
    await other.release();
    await expect(first.plan([])).rejects.toThrow(/released/);
  });

  it('lists kept contexts with size, last use and whether in use; removes only unleased ones', async () => {
    write('big', Buffer.alloc(1 << 20, 1));
    const a = await kept.lease('a');
    await upload(a);
    const b = await kept.lease('b');
    await b.release();
    let list = await kept.list();
    expect(list.map((c) => [c.id, c.inUse])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    expect(list[0]!.size).toBeGreaterThanOrEqual(1 << 20);
    expect(list[1]!.size).toBeLessThan(64 * 1024);

    const t0 = Date.now();
    await sleep(5);
    expect(await kept.remove('a')).toBe(false);
    expect(fs.existsSync(a.dir)).toBe(true);
    await a.release();
    list = await kept.list();
    expect(list[0]!.inUse).toBe(false);
    expect(list[0]!.lastUsed.getTime()).toBeGreaterThanOrEqual(t0);
    expect(await kept.remove('a')).toBe(true);
    expect(fs.existsSync(path.join(root, 'a'))).toBe(false);
    expect((await kept.list()).map((c) => c.id)).toEqual(['b']);

    // A context removed and leased again starts empty: a full upload.
    const again = await kept.lease('a');
    expect((await upload(again)).plan.wanted).toEqual(['big']);
    await again.release();
  });

  it('cleanup removes staging leftovers of a killed daemon, not the kept tree or live work', async () => {
    write('f', 'f');
    const lease = await kept.lease('job');
    await upload(lease);
    await lease.release();
    const base = path.join(root, 'job');
    fs.mkdirSync(path.join(base, `staging-${process.pid}-abcd1234`));
    fs.writeFileSync(path.join(base, `staging-${process.pid}-abcd1234`, '0'), 'half a file');
    fs.writeFileSync(path.join(base, `index.json.tmp-${process.pid}-0a0b`), '{');
    // A live process's staging (an embedded kiln sharing the root) is left alone.
    fs.mkdirSync(path.join(base, `staging-${process.ppid}-ffff`));
    const busy = await kept.lease('busy');
    fs.mkdirSync(path.join(root, 'busy', `staging-${process.pid}-1234`));
    await kept.cleanup();
    expect(fs.readdirSync(base).sort()).toEqual(['index.json', `staging-${process.ppid}-ffff`, 'tree']);
    expect(fs.existsSync(path.join(root, 'busy', `staging-${process.pid}-1234`))).toBe(true);
    await busy.release();
    expect(fs.readFileSync(path.join(base, 'tree', 'f'), 'utf8')).toBe('f');
  });
});

describe('KeptContexts: memory', () => {
  it('streams a 300 MB file through writeWantedTar -> receive with flat memory', async () => {
    const chunk = randomBytes(1 << 20);
    const fd = fs.openSync(path.join(ctx, 'big'), 'w');
    for (let i = 0; i < 300; i++) fs.writeSync(fd, chunk);
    fs.closeSync(fd);

    const lease = await kept.lease('mem');
    const base = process.memoryUsage().rss;
    let peak = base;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    try {
      const { got } = await upload(lease);
      expect(got).toEqual({ files: 1, bytes: 300 * (1 << 20) });
    } finally {
      clearInterval(timer);
    }
    expect(peak - base, `rss grew by ${((peak - base) / (1 << 20)).toFixed(1)} MiB`).toBeLessThan(100 * (1 << 20));
    const hash = async (p: string) => {
      const h = createHash('sha256');
      await pipeline(fs.createReadStream(p), h);
      return h.digest('hex');
    };
    expect(await hash(path.join(lease.dir, 'big'))).toBe(await hash(path.join(ctx, 'big')));
    await lease.release();
  });
});

describe('KeptContexts: the warm path', () => {
  it('an unchanged list changes nothing on disk, and entries() lists the tree as a walk of it would', async () => {
    write('a.txt', 'alpha');
    write('sub/b.txt', 'beta');
    fs.symlinkSync('sub/b.txt', path.join(ctx, 'link'));
    fs.linkSync(path.join(ctx, 'a.txt'), path.join(ctx, 'hard'));
    const first = await kept.lease('warm');
    await upload(first);
    const walked = await walkContext(first.dir, { excludes: [] });
    const fields = (e: { path: string; type: string; mode: number; size: number; linkTarget?: string; hardlinkTo?: string; uid: number; gid: number }) => ({
      path: e.path,
      type: e.type,
      mode: e.mode,
      size: e.size,
      linkTarget: e.linkTarget,
      hardlinkTo: e.hardlinkTo,
      uid: e.uid,
      gid: e.gid,
    });
    expect(first.entries().map(fields)).toEqual(walked.map(fields));
    await first.release();
    const index = path.join(root, 'warm', 'index.json');
    const before = { index: fs.statSync(index), tree: inodes(first.dir) };

    const second = await kept.lease('warm');
    const { got, plan } = await upload(second);
    expect(plan.wanted).toEqual([]);
    expect(got).toEqual({ files: 0, bytes: 0 });
    // Neither the index nor any entry of the tree was rewritten.
    expect(fs.statSync(index).mtimeMs).toBe(before.index.mtimeMs);
    expect(fs.statSync(index).ino).toBe(before.index.ino);
    expect(inodes(second.dir)).toEqual(before.tree);
    expect(second.entries().map(fields)).toEqual(walked.map(fields));
    await second.release();
    // The release still counts as a use (prune's least-recently-used order).
    expect((await kept.list())[0]!.lastUsed.getTime()).toBeGreaterThanOrEqual(before.index.mtimeMs - 1);
  });

  it('a known tree is reused by its list digest, with one token until the tree changes', async () => {
    write('a.txt', 'aaaa');
    write('sub/b.txt', 'b');
    fs.utimesSync(path.join(ctx, 'a.txt'), 1_700_000_000, 1_700_000_000);
    const first = await kept.lease('known');
    // Nothing known yet (a new tree, or a daemon that just started): the list must be sent.
    expect(await first.reuse('sha256:00')).toBe(false);
    const { entries } = await upload(first);
    const token = first.token();
    expect(token).toBeDefined();
    const walked = first.entries();
    await first.release();

    // The same list again: taken by its digest alone, same entries, same token.
    const second = await kept.lease('known');
    expect(second.token()).toBeUndefined(); // before reuse/receive there is nothing to vouch for
    expect(await second.reuse('sha256:not-that-list')).toBe(false);
    expect(await second.reuse(listDigest(entries))).toBe(true);
    expect(second.entries()).toEqual(walked);
    expect(second.token()).toBe(token);
    await second.release();

    // An unchanged upload through plan/receive keeps the token too.
    const third = await kept.lease('known');
    expect((await upload(third)).plan.wanted).toEqual([]);
    expect(third.token()).toBe(token);
    await third.release();

    // Same size, mtime put back: a new stamp, so another digest, and after the upload a new token.
    await sleep(20);
    write('a.txt', 'bbbb');
    fs.utimesSync(path.join(ctx, 'a.txt'), 1_700_000_000, 1_700_000_000);
    const changed = await syncEntries(ctx, await walkContext(ctx, { excludes: [] }));
    expect(listDigest(changed)).not.toBe(listDigest(entries));
    const fourth = await kept.lease('known');
    expect(await fourth.reuse(listDigest(changed))).toBe(false);
    const again = await upload(fourth);
    expect(again.plan.wanted).toEqual(['a.txt']);
    const newToken = fourth.token();
    expect(newToken).toBeDefined();
    expect(newToken).not.toBe(token);
    await fourth.release();
    // The old list is no longer what the tree holds.
    const fifth = await kept.lease('known');
    expect(await fifth.reuse(listDigest(entries))).toBe(false);
    expect(await fifth.reuse(listDigest(again.entries))).toBe(true);
    await fifth.release();

    // Removed: nothing is known of it any more, and a new daemon (a new KeptContexts) knows nothing.
    expect(await kept.remove('known')).toBe(true);
    const sixth = await kept.lease('known');
    expect(await sixth.reuse(listDigest(again.entries))).toBe(false);
    await sixth.release();
    const other = await new KeptContexts(root).lease('known');
    expect(await other.reuse(listDigest(again.entries))).toBe(false);
    await other.release();
  });

  it('an upload that fails before the tree changes leaves it known; a replaced index does not', async () => {
    write('a.txt', 'aaaa');
    const lease = await kept.lease('broken');
    const { entries } = await upload(lease);
    await lease.release();
    write('a.txt', 'changed, longer');
    const next = await kept.lease('broken');
    const list = await syncEntries(ctx, await walkContext(ctx, { excludes: [] }));
    expect((await next.plan(list)).wanted).toEqual(['a.txt']);
    // The tar ends without the wanted file: the upload fails, before the tree was touched.
    await expect(next.receive(Readable.from([Buffer.alloc(1024)]))).rejects.toThrow(/was asked for but not sent/);
    expect(next.token()).toBeUndefined();
    await next.release();
    const after = await kept.lease('broken');
    expect(await after.reuse(listDigest(entries))).toBe(true);
    await after.release();
    // Someone rewrote the index behind the daemon's back: what it knew no longer counts.
    const index = path.join(root, 'broken', 'index.json');
    fs.writeFileSync(`${index}.new`, fs.readFileSync(index));
    fs.renameSync(`${index}.new`, index);
    const last = await kept.lease('broken');
    expect(await last.reuse(listDigest(entries))).toBe(false);
    await last.release();
  });

  it('entries() before receive() is a clear error', async () => {
    const lease = await kept.lease('early');
    expect(() => lease.entries()).toThrow(/entries\(\) before receive\(\)/);
    await lease.release();
  });
});
