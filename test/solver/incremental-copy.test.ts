// An incremental COPY (the previous result cloned, only what may have changed copied again) must
// give exactly what a full copy gives: compared entry by entry with a fresh build of the same
// context (mtimes aside: a directory the copy makes has the time of its making; a test below checks
// that those are this copy's, and the source's for directories taken from it).
import { afterAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

/** Every entry of a tree: path, type, mode, owner, and content or link target. */
function manifest(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(root, r));
      const kind = st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? `link->${fs.readlinkSync(path.join(root, r))}`
          : st.isFile()
            ? `file:${createHash('sha256')
                .update(fs.readFileSync(path.join(root, r)))
                .digest('hex')
                .slice(0, 12)}`
            : 'other';
      out.push(`${r} ${kind} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

describe('incremental COPY', () => {
  it('after edits of every kind, gives what a fresh full copy gives', async () => {
    // One COPY of a tree into / (it must sit on an unchanged parent to be incremental), holding a
    // file that hides one of the base image's, files that change in every way, and many that don't.
    const files: Record<string, string> = {
      Dockerfile: 'FROM busybox\nCOPY tree/ /\nRUN ls -R /app > /listing\n',
      'tree/etc/passwd': 'root:x:0:0:shadowing the base image:/root:/bin/sh\n',
      'tree/etc/kiln.conf': 'a=1\n',
      'tree/app/gone/deep/x.txt': 'x\n',
      'tree/app/becomes-dir': 'a file first\n',
      'tree/app/mode.sh': '#!/bin/sh\n',
    };
    for (let i = 0; i < 50; i++) files[`tree/app/many/f${i}.txt`] = `file ${i}\n`;
    const ctx = tracked(makeContext(files));
    fs.symlinkSync('many/f1.txt', path.join(ctx, 'tree/app/link'));

    const root = tracked(kilnRoot());
    const srv = server(root);
    const outInc = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-inc-')));
    let second;
    try {
      await build(srv, ctx);
      // Edits: a file that hid the base image's one goes (the base's must come back), a file's
      // content and another's mode change, a directory goes, a file becomes a directory, a
      // symlink is retargeted, files are added.
      fs.rmSync(path.join(ctx, 'tree/etc/passwd'));
      fs.writeFileSync(path.join(ctx, 'tree/etc/kiln.conf'), 'a=2\n');
      fs.chmodSync(path.join(ctx, 'tree/app/mode.sh'), 0o755);
      fs.rmSync(path.join(ctx, 'tree/app/gone'), { recursive: true });
      fs.rmSync(path.join(ctx, 'tree/app/becomes-dir'));
      fs.mkdirSync(path.join(ctx, 'tree/app/becomes-dir'));
      fs.writeFileSync(path.join(ctx, 'tree/app/becomes-dir/inside.txt'), 'now a dir\n');
      fs.rmSync(path.join(ctx, 'tree/app/link'));
      fs.symlinkSync('many/f2.txt', path.join(ctx, 'tree/app/link'));
      fs.writeFileSync(path.join(ctx, 'tree/app/many/new.txt'), 'added\n');
      second = await build(srv, ctx, { outputs: [{ type: 'local', dest: outInc }] });
    } finally {
      await srv.close();
    }
    // The incremental path was taken.
    expect(second.logs).toMatch(/reused 5\d unchanged files of the previous result/);

    const fresh = server(tracked(kilnRoot()));
    const outFresh = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fresh-')));
    try {
      const b = await build(fresh, ctx, { outputs: [{ type: 'local', dest: outFresh }] });
      expect(b.logs).not.toMatch(/reused/);
    } finally {
      await fresh.close();
    }
    expect(manifest(outInc)).toEqual(manifest(outFresh));
    // And the specific promises, checked directly.
    expect(fs.readFileSync(path.join(outInc, 'etc/passwd'), 'utf8')).not.toContain('shadowing');
    expect(fs.existsSync(path.join(outInc, 'app/gone'))).toBe(false);
    expect(fs.statSync(path.join(outInc, 'app/becomes-dir')).isDirectory()).toBe(true);
    expect(fs.readlinkSync(path.join(outInc, 'app/link'))).toBe('many/f2.txt');
    expect(fs.statSync(path.join(outInc, 'app/mode.sh')).mode & 0o777).toBe(0o755);
  });

  it('sources written to one target (no trailing slash, or matches sharing a name) are copied in full', async () => {
    const ctx = tracked(
      makeContext({
        Dockerfile: 'FROM busybox\nCOPY a.txt b.txt /y\nCOPY x*/in.txt c.txt /w/\n',
        'a.txt': 'a\n',
        'b.txt': 'b\n',
        'c.txt': 'c\n',
        'x1/in.txt': '1\n',
        'x2/in.txt': '2\n',
      }),
    );
    const root = tracked(kilnRoot());
    const srv = server(root);
    const out = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-same-target-')));
    try {
      await build(srv, ctx);
      // Only the earlier source of each shared target changes: the later one must still win.
      fs.writeFileSync(path.join(ctx, 'a.txt'), 'a2\n');
      fs.writeFileSync(path.join(ctx, 'x1/in.txt'), '1b\n');
      await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
      expect(fs.readFileSync(path.join(out, 'y'), 'utf8')).toBe('b\n');
      expect(fs.readFileSync(path.join(out, 'w/in.txt'), 'utf8')).toBe('2\n');
      expect(fs.readFileSync(path.join(out, 'w/c.txt'), 'utf8')).toBe('c\n');
    } finally {
      await srv.close();
    }
  });

  it("gives directories the times a full copy gives: the source's for its directories, the copy's own for those it made", async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nCOPY . /app/\n', 'sub/a.txt': 'a\n', 'sub/b.txt': 'b\n' }));
    const dated = new Date('2020-01-02T03:04:05Z');
    fs.utimesSync(path.join(ctx, 'sub'), dated, dated);
    const root = tracked(kilnRoot());
    const srv = server(root);
    const out = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-dirtimes-')));
    try {
      await build(srv, ctx);
      await new Promise((r) => setTimeout(r, 1500)); // the second copy's times are visibly later
      fs.writeFileSync(path.join(ctx, 'sub/a.txt'), 'a2\n');
      fs.utimesSync(path.join(ctx, 'sub'), dated, dated);
      const startedAt = Date.now();
      const second = await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
      expect(second.logs).toMatch(/reused 2 unchanged files/); // the Dockerfile and b.txt
      // A directory from the source: its time, as a full copy gives it.
      expect(fs.statSync(path.join(out, 'app/sub')).mtimeMs).toBe(dated.getTime());
      // The directory the copy made (/app): made by this copy, not left at the earlier one's time.
      expect(fs.statSync(path.join(out, 'app')).mtimeMs).toBeGreaterThanOrEqual(startedAt - 500);
    } finally {
      await srv.close();
    }
  });

  it('never writes through to the previous result it reused', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nCOPY . /app/\n', 'a.txt': 'one\n', 'b.txt': 'b\n' }));
    const root = tracked(kilnRoot());
    const srv = server(root);
    const outFirst = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-first-')));
    try {
      const first = await build(srv, ctx);
      fs.writeFileSync(path.join(ctx, 'a.txt'), 'two\n');
      await build(srv, ctx);
      // The first result, exported now, still has its own content.
      fs.writeFileSync(path.join(ctx, 'a.txt'), 'one\n');
      const again = await build(srv, ctx, { outputs: [{ type: 'local', dest: outFirst }] });
      expect(again.result.image!.id).toBe(first.result.image!.id);
      expect(fs.readFileSync(path.join(outFirst, 'app/a.txt'), 'utf8')).toBe('one\n');
    } finally {
      await srv.close();
    }
  });
});
