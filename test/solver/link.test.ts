// COPY --link / ADD --link with BuildKit's meaning, built for real (runc, overlay, the test
// registry's busybox): a linked copy is made on nothing, so changing the stage below it leaves it
// cached, its layer blob the very same, and the result what a clean build of the new base gives.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { build, kilnRoot, makeContext, mountsUnder, server, type Built } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);
const tmp = (prefix: string) => tracked(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));

/** Every entry of a tree: path, type, mode, owner, and content or link target (mtimes aside). */
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

interface Layer {
  createdBy: string;
  digest: string;
  /** Tar entry names of the layer. */
  entries: string[];
}

/** The layers of an OCI layout tarball, each with the history entry that made it. */
function ociLayers(archive: string): Layer[] {
  const dir = tmp('kiln-link-oci-');
  execFileSync('tar', ['-xf', archive, '-C', dir]);
  const blob = (d: string) => path.join(dir, 'blobs', ...d.split(':'));
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const mf = JSON.parse(fs.readFileSync(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
  const config = JSON.parse(fs.readFileSync(blob(mf.config.digest), 'utf8')) as { history: { created_by?: string; empty_layer?: boolean }[] };
  const made = config.history.filter((h) => !h.empty_layer);
  expect(made).toHaveLength(mf.layers.length);
  return mf.layers.map((l, i) => ({
    createdBy: made[i]!.created_by ?? '',
    digest: l.digest,
    entries: execFileSync('tar', ['-tzf', blob(l.digest)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean),
  }));
}

function status(b: Built, instruction: string): string | undefined {
  const hits = [...b.statuses].filter(([name]) => name.endsWith(`] ${instruction}`));
  expect(hits, instruction).toHaveLength(1);
  return hits[0]![1];
}

const DOCKERFILE = `FROM busybox AS base
ARG V=1
RUN echo "base $V" > /v && mkdir -p /existing /tmp/target && echo keep > /existing/keep.txt && echo base > /existing/a.txt && ln -s /tmp/target /app

FROM base
COPY --link a.txt /existing/
COPY --link --chown=1000:1001 a.txt tree /new/dir/
COPY --link a.txt /app/
COPY --link --chmod=0700 a.txt /m/
WORKDIR /w
COPY --link a.txt rel/
RUN cat /v /existing/a.txt /existing/keep.txt /new/dir/a.txt /new/dir/t.txt /app/a.txt /m/a.txt /w/rel/a.txt > /seen && ls /tmp/target > /target-listing
`;
const LINKED = ['COPY --link a.txt /existing/', 'COPY --link --chown=1000:1001 a.txt tree /new/dir/', 'COPY --link a.txt /app/', 'COPY --link a.txt rel/'];

describe('COPY --link', () => {
  it('survives a change of the base: cached, the same layer blob, the filesystem of a clean build', async () => {
    const ctx = tracked(makeContext({ Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'tree/t.txt': 't\n' }));
    const root = tracked(kilnRoot());
    const out = tmp('kiln-link-out-');
    const srv = server(root);
    let second: Built;
    try {
      const first = await build(srv, ctx, { buildArgs: { V: '1' }, outputs: [{ type: 'oci', names: [], dest: path.join(out, 'one.tar') }] });
      for (const step of LINKED) expect(status(first, step), step).toBe('done');
      // The base stage's RUN changes: everything linked is taken as it was.
      second = await build(srv, ctx, {
        buildArgs: { V: '2' },
        outputs: [
          { type: 'oci', names: [], dest: path.join(out, 'two.tar') },
          { type: 'local', dest: path.join(out, 'two') },
        ],
      });
    } finally {
      await srv.close();
    }
    expect(
      status(
        second,
        'RUN echo "base $V" > /v && mkdir -p /existing /tmp/target && echo keep > /existing/keep.txt && echo base > /existing/a.txt && ln -s /tmp/target /app',
      ),
    ).toBe('done');
    for (const step of LINKED) expect(status(second, step), step).toBe('cached');
    // --chmod makes it a plain COPY (as in BuildKit), which depends on the base and so runs again.
    expect(status(second, 'COPY --link --chmod=0700 a.txt /m/')).toBe('done');
    expect(
      status(
        second,
        'RUN cat /v /existing/a.txt /existing/keep.txt /new/dir/a.txt /new/dir/t.txt /app/a.txt /m/a.txt /w/rel/a.txt > /seen && ls /tmp/target > /target-listing',
      ),
    ).toBe('done');

    // The image is rebased: each linked layer is the very blob of the first build.
    const one = ociLayers(path.join(out, 'one.tar'));
    const two = ociLayers(path.join(out, 'two.tar'));
    expect(two).toHaveLength(one.length);
    const linkedLayers = (ls: Layer[]) => ls.filter((l) => l.createdBy.startsWith('COPY') && !l.createdBy.includes('--chmod'));
    expect(linkedLayers(two).map((l) => l.createdBy)).toEqual([
      'COPY a.txt /existing/ # buildkit',
      'COPY --chown=1000:1001 a.txt tree /new/dir/ # buildkit',
      'COPY a.txt /app/ # buildkit',
      'COPY a.txt rel/ # buildkit',
    ]);
    expect(linkedLayers(two).map((l) => l.digest)).toEqual(linkedLayers(one).map((l) => l.digest));
    // ... while the base did change under them.
    const runOf = (ls: Layer[]) => ls.find((l) => l.createdBy.includes('echo "base $V"'))!.digest;
    expect(runOf(two)).not.toBe(runOf(one));
    // A linked layer holds what the copy made on nothing: its files and the parents it created,
    // nothing of the base (keep.txt, the base's a.txt) and no whiteouts.
    expect(
      linkedLayers(two)[0]!
        .entries.map((e) => e.replace(/\/$/, ''))
        .sort(),
    ).toEqual(['existing', 'existing/a.txt']);
    expect(
      linkedLayers(two)[1]!
        .entries.map((e) => e.replace(/\/$/, ''))
        .sort(),
    ).toEqual(['new', 'new/dir', 'new/dir/a.txt', 'new/dir/t.txt']);

    // The merged filesystem, as a following RUN saw it and as exported.
    const fsTwo = path.join(out, 'two');
    expect(fs.readFileSync(path.join(fsTwo, 'seen'), 'utf8')).toBe('base 2\na\nkeep\na\nt\na\na\na\n');
    expect(fs.readFileSync(path.join(fsTwo, 'existing/keep.txt'), 'utf8')).toBe('keep\n'); // directories merge
    expect(fs.readFileSync(path.join(fsTwo, 'existing/a.txt'), 'utf8')).toBe('a\n'); // files replace
    // The base's symlink at the destination is not followed: the layer's directory replaces it.
    expect(fs.lstatSync(path.join(fsTwo, 'app')).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(fsTwo, 'target-listing'), 'utf8')).toBe('');
    expect(fs.readdirSync(path.join(fsTwo, 'tmp/target'))).toEqual([]);
    // Numeric --chown: the files and the parents the copy created (0755), as BuildKit's MkdirAll.
    for (const p of ['new', 'new/dir', 'new/dir/a.txt', 'new/dir/t.txt']) {
      const st = fs.statSync(path.join(fsTwo, p));
      expect([st.uid, st.gid], p).toEqual([1000, 1001]);
      if (st.isDirectory()) expect(st.mode & 0o7777, p).toBe(0o755);
    }
    expect(fs.statSync(path.join(fsTwo, 'm/a.txt')).mode & 0o7777).toBe(0o700);
    // A WORKDIR-relative destination lands under the stage's WORKDIR.
    expect(fs.readFileSync(path.join(fsTwo, 'w/rel/a.txt'), 'utf8')).toBe('a\n');

    // The same build done clean on a fresh root gives the same filesystem.
    const fresh = server(tracked(kilnRoot()));
    try {
      await build(fresh, ctx, { buildArgs: { V: '2' }, outputs: [{ type: 'local', dest: path.join(out, 'clean') }] });
    } finally {
      await fresh.close();
    }
    expect(manifest(fsTwo)).toEqual(manifest(path.join(out, 'clean')));
  });

  it('is rebased on a fresh root from an imported cache: the linked layers are fetched, not copied again', async () => {
    const ctx = tracked(makeContext({ Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'tree/t.txt': 't\n' }));
    const cacheDir = tmp('kiln-link-cache-');
    const out = tmp('kiln-link-out-');
    const a = server(tracked(kilnRoot()));
    try {
      await build(a, ctx, {
        buildArgs: { V: '1' },
        cacheTo: [{ type: 'local', dest: cacheDir, mode: 'min' }],
        outputs: [{ type: 'oci', names: [], dest: path.join(out, 'one.tar') }],
      });
    } finally {
      await a.close();
    }
    // Another worker, another base: the linked copies come from the cache, on the new base.
    const b = server(tracked(kilnRoot()));
    let second: Built;
    try {
      second = await build(b, ctx, {
        buildArgs: { V: '2' },
        cacheFrom: [{ type: 'local', src: cacheDir }],
        outputs: [
          { type: 'oci', names: [], dest: path.join(out, 'two.tar') },
          { type: 'local', dest: path.join(out, 'two') },
        ],
      });
    } finally {
      await b.close();
    }
    for (const step of LINKED) expect(status(second, step), step).toBe('cached');
    const digests = (ls: Layer[]) => ls.filter((l) => /^COPY (?!--chmod)/.test(l.createdBy)).map((l) => l.digest);
    expect(digests(ociLayers(path.join(out, 'one.tar')))).toHaveLength(4);
    expect(digests(ociLayers(path.join(out, 'two.tar')))).toEqual(digests(ociLayers(path.join(out, 'one.tar'))));
    expect(fs.readFileSync(path.join(out, 'two', 'seen'), 'utf8')).toBe('base 2\na\nkeep\na\nt\na\na\na\n');
  });

  it('copies again only what changed when its sources change (incremental, on nothing)', async () => {
    const files: Record<string, string> = { Dockerfile: 'FROM busybox\nCOPY --link src/ /app/\nRUN cat /app/f0.txt /app/f1.txt > /seen\n' };
    for (let i = 0; i < 20; i++) files[`src/f${i}.txt`] = `file ${i}\n`;
    const ctx = tracked(makeContext(files));
    const out = tmp('kiln-link-out-');
    const srv = server(tracked(kilnRoot()));
    let second: Built;
    try {
      await build(srv, ctx);
      fs.writeFileSync(path.join(ctx, 'src/f1.txt'), 'changed\n');
      fs.rmSync(path.join(ctx, 'src/f2.txt'));
      second = await build(srv, ctx, { outputs: [{ type: 'local', dest: path.join(out, 'inc') }] });
    } finally {
      await srv.close();
    }
    expect(status(second, 'COPY --link src/ /app/')).toBe('done');
    expect(second.logs).toMatch(/reused 18 unchanged files of the previous result, copied 1/);
    expect(fs.readFileSync(path.join(out, 'inc', 'seen'), 'utf8')).toBe('file 0\nchanged\n');
    const fresh = server(tracked(kilnRoot()));
    try {
      await build(fresh, ctx, { outputs: [{ type: 'local', dest: path.join(out, 'clean') }] });
    } finally {
      await fresh.close();
    }
    expect(manifest(path.join(out, 'inc'))).toEqual(manifest(path.join(out, 'clean')));
  });

  it('runs beside the steps before it (it needs nothing of them), and its failure stops them at once', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN sleep 2 && echo slept\nCOPY --link a.txt /a/\n', 'a.txt': 'a\n' }));
    const root = tracked(kilnRoot());
    const srv = server(root);
    try {
      const b = await build(srv, ctx);
      const at = (name: string, status: string) => b.events.findIndex((e) => e.type === 'vertex' && e.name.endsWith(name) && e.status === status);
      // The copy was done while the RUN before it still slept.
      expect(at('] COPY --link a.txt /a/', 'done')).toBeGreaterThan(-1);
      expect(at('] COPY --link a.txt /a/', 'done')).toBeLessThan(at('] RUN sleep 2 && echo slept', 'done'));

      // A linked copy whose source is missing fails the build without waiting for the RUN before it.
      fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN sleep 60\nCOPY --link missing.txt /a/\n');
      const started = Date.now();
      const err = await build(srv, ctx).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).toMatch(/^Dockerfile:3: /);
      expect(err?.message).toContain('missing.txt');
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(mountsUnder(root)).toEqual([]);
    } finally {
      await srv.close();
    }
    expect(mountsUnder(root)).toEqual([]);
  });

  it('on a base image and nothing after it, is exported without unpacking the base (rebase without pulling files)', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nCOPY --link a.txt /a/\n', 'a.txt': 'a\n' }));
    const root = tracked(kilnRoot());
    const out = tmp('kiln-link-out-');
    const srv = server(root);
    const snapshots = () =>
      Object.keys((JSON.parse(fs.readFileSync(path.join(root, 'snapshots', 'metadata.json'), 'utf8')) as { snapshots: object }).snapshots);
    try {
      await build(srv, ctx, { outputs: [{ type: 'oci', names: [], dest: path.join(out, 'image.tar') }] });
      // The linked copy's own snapshot only: no unpacked base layer, no merge.
      expect(snapshots()).toHaveLength(1);
      const layers = ociLayers(path.join(out, 'image.tar'));
      expect(layers.map((l) => l.createdBy.replace(/^kiln testdata: .*/, 'base'))).toEqual(['base', 'COPY a.txt /a/ # buildkit']);
      expect(layers[1]!.entries.map((e) => e.replace(/\/$/, ''))).toEqual(['a', 'a/a.txt']);
      // A step that needs the files gets the merge (and the base) when it runs.
      fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY --link a.txt /a/\nRUN cat /a/a.txt /bin/busybox > /dev/null && cat /a/a.txt\n');
      const b = await build(srv, ctx);
      expect(status(b, 'COPY --link a.txt /a/')).toBe('cached');
      expect(b.logs).toContain('a\n');
      expect(snapshots().length).toBeGreaterThan(2);
    } finally {
      await srv.close();
    }
  });

  it('with SOURCE_DATE_EPOCH, the rebased image is the one a clean build of the new base makes, byte for byte', async () => {
    const ctx = tracked(makeContext({ Dockerfile: DOCKERFILE, 'a.txt': 'a\n', 'tree/t.txt': 't\n' }));
    const out = tmp('kiln-link-out-');
    const args = (v: string) => ({ V: v, SOURCE_DATE_EPOCH: '1500000000' });
    let rebased: Built;
    let clean: Built;
    const srv = server(tracked(kilnRoot()));
    try {
      await build(srv, ctx, { buildArgs: args('1') });
      rebased = await build(srv, ctx, { buildArgs: args('2'), outputs: [{ type: 'oci', names: [], dest: path.join(out, 'rebased.tar') }] });
    } finally {
      await srv.close();
    }
    const fresh = server(tracked(kilnRoot()));
    try {
      clean = await build(fresh, ctx, { buildArgs: args('2'), outputs: [{ type: 'oci', names: [], dest: path.join(out, 'clean.tar') }] });
    } finally {
      await fresh.close();
    }
    const linkedDigests = (f: string) =>
      ociLayers(path.join(out, f))
        .filter((l) => /^COPY (?!--chmod)/.test(l.createdBy))
        .map((l) => l.digest);
    expect(linkedDigests('rebased.tar')).toHaveLength(4);
    expect(linkedDigests('rebased.tar')).toEqual(linkedDigests('clean.tar'));
    // ... and, the times clamped, the whole image is the clean build's, byte for byte.
    expect(rebased.result.image!.id).toBe(clean.result.image!.id);
    expect(rebased.result.image!.manifestDigest).toBe(clean.result.image!.manifestDigest);
  });
});
