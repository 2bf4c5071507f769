// `kiln du` and `kiln prune` through the compiled binary, on roots built by the real server, and a
// prune SIGKILLed in the middle: the root it leaves must serve the next build and run its images.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRoot } from '../../src/solver/root.js';
import type { Digest, Index, Manifest } from '../../src/oci/index.js';
import { testEnv } from '../helpers/env.js';
import { build, kilnRoot, makeContext, server } from '../solver/helpers.js';
import { KILN, REPO, kiln } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

beforeAll(() => {
  // The binary under test is built from this tree.
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'ignore' });
}, 300_000);

const NAMED = 'FROM busybox\nRUN echo named > /msg\nCMD ["cat", "/msg"]\n';
const UNNAMED = 'FROM busybox\nRUN head -c 300000 /dev/urandom > /junk\n';

/** A root with a named image (gc/named:1) and one unnamed build. */
async function populatedRoot(extra: string[] = []): Promise<{ root: string; named: string }> {
  const root = tracked(kilnRoot());
  const named = tracked(makeContext({ Dockerfile: NAMED }));
  const srv = server(root);
  try {
    await build(srv, named, { outputs: [{ type: 'image', names: ['gc/named:1'], push: false }] });
    await build(srv, tracked(makeContext({ Dockerfile: UNNAMED })));
    for (const df of extra) await build(srv, tracked(makeContext({ Dockerfile: df })));
  } finally {
    await srv.close();
  }
  return { root, named };
}

const UNITS: Record<string, number> = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9 };
function parseHuman(s: string): number {
  const m = /^([\d.]+)(B|kB|MB|GB)\*?$/.exec(s);
  if (!m) throw new Error(`not a size: ${s}`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

function totals(out: string): Record<string, number> {
  const t: Record<string, number> = {};
  // The last four lines (verbose blocks above have Reclaimable:/Shared: fields of their own).
  for (const m of out
    .trimEnd()
    .split('\n')
    .slice(-4)
    .join('\n')
    .matchAll(/^(Shared|Private|Reclaimable|Total):\s+(\S+)$/gm))
    t[m[1]!] = parseHuman(m[2]!);
  return t;
}

const stepRows = (out: string) => out.split('\n').filter((l) => l.startsWith('step-'));
const stepIds = (out: string) => stepRows(out).map((l) => l.split(/\s+/)[0]);

async function checkConsistent(root: string): Promise<void> {
  const s = await openRoot(root, { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 2 });
  try {
    const layers = path.join(root, 'records', 'layers');
    for (const f of fs.existsSync(layers) ? fs.readdirSync(layers) : []) {
      if (!f.endsWith('.json')) continue;
      const rec = JSON.parse(fs.readFileSync(path.join(layers, f), 'utf8'));
      if (!rec.empty) expect(await s.store.has(rec.descriptor.digest), `${f} -> ${rec.descriptor.digest}`).toBe(true);
    }
    const snaps = await s.snapshotter.list();
    const names = new Set(snaps.map((i) => i.key));
    for (const i of snaps) if (i.parent) expect(names.has(i.parent), `${i.key}'s parent ${i.parent}`).toBe(true);
    for (const img of await s.images.list()) {
      const m = await s.store.readJSON<Partial<Index & Manifest>>(img.manifest.digest as Digest);
      for (const l of [m.config!, ...(m.layers ?? [])]) expect(await s.store.has(l.digest), `${img.name}: ${l.digest}`).toBe(true);
    }
  } finally {
    await s.release();
  }
}

describe('kiln du', () => {
  it('prints the records and totals that add up to the root on disk', async () => {
    const { root } = await populatedRoot();
    const r = kiln(['du', '--root', root]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^ID\s+RECLAIMABLE\s+SIZE\s+LAST ACCESSED$/);
    // The named image's step shares its layer (size marked *), the unnamed build's step does not.
    const steps = stepRows(r.stdout);
    expect(steps).toHaveLength(2);
    expect(steps.filter((l) => /\d(B|kB|MB)\*\s/.test(l))).toHaveLength(1);
    expect(steps.every((l) => /\strue\s/.test(l) && /(second|seconds|minute) ago$/.test(l))).toBe(true);
    expect(lines.some((l) => /^metadata\s+false\s/.test(l))).toBe(true);
    const t = totals(r.stdout);
    expect(Object.keys(t).sort()).toEqual(['Private', 'Reclaimable', 'Shared', 'Total']);
    const measured = Number(execFileSync('du', ['-sxB1', root], { encoding: 'utf8' }).split('\t')[0]);
    // Four significant digits, and the root lock that exists only while kiln runs.
    expect(Math.abs(t.Total! - measured)).toBeLessThanOrEqual(measured * 0.001 + 16 * 1024);
    expect(t.Reclaimable).toBeGreaterThan(300_000);

    const v = kiln(['du', '--verbose', '--root', root]);
    expect(v.code).toBe(0);
    const blocks = v.stdout.split('\n\n').filter((b) => b.startsWith('ID:'));
    expect(blocks.length).toBe(lines.filter((l) => l && !/^(ID|Shared:|Private:|Reclaimable:|Total:)/.test(l)).length);
    const step = blocks.find((b) => /^ID:\s+step-/.test(b))!;
    for (const key of ['Parent:', 'Created at:', 'Mutable:', 'Reclaimable:', 'Shared:', 'Size:', 'Description:', 'Usage count:', 'Last used:', 'Type:'])
      expect(step).toContain(key);
    expect(step).toMatch(/Type:\s+regular/);
    expect(totals(v.stdout)).toEqual(t);
  });

  it('refuses unknown flags', () => {
    const r = kiln(['du', '--bogus']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/kiln du: .*bogus/);
  });
});

describe('kiln prune', () => {
  it('asks first; "n" removes nothing, "y" removes the dangling cache and says what went', async () => {
    const { root, named } = await populatedRoot();
    const before = stepIds(kiln(['du', '--root', root]).stdout);

    const no = kiln(['prune', '--root', root], { input: 'n\n' });
    expect(no.code).toBe(0);
    expect(no.stdout).toContain('WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N]');
    expect(no.stdout).not.toContain('Total reclaimed space');
    expect(stepIds(kiln(['du', '--root', root]).stdout)).toEqual(before);

    const yes = kiln(['prune', '--root', root], { input: 'y\n' });
    expect(yes.stderr).toBe('');
    expect(yes.code).toBe(0);
    const m = /Deleted build cache objects:\n((?:\S+\n)+)\nTotal reclaimed space: (\S+)\n$/.exec(yes.stdout);
    expect(m, yes.stdout).not.toBeNull();
    const deleted = m![1]!.trim().split('\n');
    expect(deleted.filter((id) => id.startsWith('step-'))).toHaveLength(1);
    expect(parseHuman(m![2]!)).toBeGreaterThan(300_000);
    const after = stepRows(kiln(['du', '--root', root]).stdout);
    expect(after).toHaveLength(1);
    expect(after[0]).toMatch(/\*\s/); // the shared one stayed

    // Nothing dangling is left: a second prune reclaims nothing.
    expect(kiln(['prune', '-f', '--root', root]).stdout).toBe('Total reclaimed space: 0B\n');
    const all = kiln(['prune', '--all', '--force', '--root', root]);
    expect(all.stdout).toMatch(/^Deleted build cache objects:\n/);
    expect(stepRows(kiln(['du', '--root', root]).stdout)).toEqual([]);
    await checkConsistent(root);
    const run = kiln(['run', '--root', root, 'gc/named:1']);
    expect(run).toMatchObject({ code: 0, stdout: 'named\n' });
    void named;
  });

  it('checks its flags before touching anything', () => {
    for (const [args, msg] of [
      [['--keep-storage', 'lots'], /--keep-storage.*invalid size/],
      [['--filter', 'label=x'], /only until=DURATION/],
      [['--filter', 'until=3d'], /invalid duration/],
      [['--bogus'], /bogus/],
    ] as const) {
      const r = kiln(['prune', '-f', ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
    }
  });

  // Two moments: while blobs go (phase 2, quick: the kill lands where it lands) and while snapshots
  // go (phase 3, slow enough to be caught with some removed and more left).
  it.each(['blobs', 'snapshots'] as const)(
    'killed midway (SIGKILL) while removing %s, leaves a root the next build uses and whose images run',
    async (phase) => {
      // Many steps, so the prune takes long enough to be caught in the middle.
      const chain = 'FROM busybox\n' + Array.from({ length: 14 }, (_, i) => `RUN head -c 150000 /dev/urandom > /f${i}\n`).join('');
      const chainCtx = tracked(makeContext({ Dockerfile: chain }));
      let caught = false;
      for (let attempt = 0; attempt < 4 && !caught; attempt++) {
        const { root, named } = await populatedRoot();
        const srv = server(root);
        try {
          await build(srv, chainCtx);
        } finally {
          await srv.close();
        }
        const meta = path.join(root, 'snapshots', 'metadata.json');
        const count = () => {
          try {
            return Object.keys(JSON.parse(fs.readFileSync(meta, 'utf8')).snapshots).length;
          } catch {
            return -1; // caught mid-rename: look again
          }
        };
        const initial = count();
        const blobDir = path.join(root, 'content', 'blobs', 'sha256');
        const blobsBefore = fs.readdirSync(blobDir).length;
        const child = spawn(process.execPath, [KILN, 'prune', '--all', '--force', '--root', root], { stdio: 'ignore' });
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        let done = false;
        void exited.then(() => (done = true));
        if (phase === 'blobs') {
          // The first blob unlinked: kill at once.
          const watcher = fs.watch(blobDir, () => {
            child.kill('SIGKILL');
            caught = true;
          });
          await exited;
          watcher.close();
          if (caught) expect(fs.readdirSync(blobDir).length).toBeLessThan(blobsBefore);
        } else {
          // Once a few snapshots are gone and more remain.
          for (;;) {
            if (done) break;
            const n = count();
            if (n >= 0 && n <= initial - 3 && n > 2) {
              child.kill('SIGKILL');
              caught = true;
              break;
            }
            await new Promise((r) => setTimeout(r, 1));
          }
          await exited;
          if (caught) expect(count()).toBeGreaterThan(0);
        }
        if (!caught) continue; // it finished first: try again with a fresh root

        await checkConsistent(root);
        const again = server(root);
        try {
          let out = '';
          expect(
            await again.runImage('gc/named:1', { args: [], network: 'none', onStdout: (b) => (out += b.toString()), onStderr: (b) => (out += b.toString()) }),
          ).toBe(0);
          expect(out).toBe('named\n');
          const re = await build(again, chainCtx, { outputs: [{ type: 'image', names: ['gc/chain:1'], push: false }] });
          expect(re.result.image?.names).toEqual(['docker.io/gc/chain:1']);
          const rebuilt = await build(again, named, { outputs: [{ type: 'image', names: ['gc/named:1'], push: false }] });
          expect(rebuilt.result.image?.names).toEqual(['docker.io/gc/named:1']);
        } finally {
          await again.close();
        }
        // The next prune finishes the job, and what was built after the kill is whole.
        const r = kiln(['prune', '--all', '--force', '--root', root]);
        expect(r.code).toBe(0);
        await checkConsistent(root);
        expect(kiln(['run', '--root', root, 'gc/chain:1', 'cat', '/f13']).code).toBe(0);
        expect(kiln(['run', '--root', root, 'gc/named:1'])).toMatchObject({ code: 0, stdout: 'named\n' });
      }
      expect(caught).toBe(true);
    },
  );
});
