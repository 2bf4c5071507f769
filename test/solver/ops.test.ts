// The solver drives every step through its op (solver/ops/types.ts), so the scheduler can be seen
// at work with a fake RUN in place of runc: independent stages run at once, the cap on RUNs holds,
// identical steps of concurrent builds run once, and a failing step stops the build with its
// Dockerfile line. The fake keeps RUN's real cache key and makes a real snapshot; COPY is real.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { directoryContext } from '../../src/context/source.js';
import type { RunStep, WorkdirStep } from '../../src/frontend/types.js';
import { withActive } from '../../src/solver/mounted.js';
import { DEFAULT_OPS } from '../../src/solver/ops/index.js';
import type { ExecContext, Op, OpContext } from '../../src/solver/ops/types.js';
import { workdirStep } from '../../src/solver/ops/workdir.js';
import { ProgressTracker } from '../../src/solver/progress.js';
import { openRoot } from '../../src/solver/root.js';
import { type SolveRequest, Solver } from '../../src/solver/solver.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  cleanup.push(d);
  return d;
}

/** Three independent stages that each RUN (the fake), and a final stage copying what each wrote. */
const DOCKERFILE = [
  'FROM scratch AS a',
  'RUN one',
  'FROM scratch AS b',
  'RUN two',
  'FROM scratch AS c',
  'RUN three',
  'FROM scratch',
  'COPY --from=a /ran /a',
  'COPY --from=b /ran /b',
  'COPY --from=c /ran /c',
  '',
].join('\n');

/**
 * A RUN that writes its command to /ran. Each waits (up to `waitMs`) until `together` of them run at
 * once, so runs that may overlap do; `fail` names a command that fails instead.
 */
function fakeRun(opts: { together: number; waitMs: number; throughQueue: boolean; fail?: string }) {
  const runs: string[] = [];
  let active = 0;
  let most = 0;
  const op: Op<RunStep> = {
    cacheInputs: DEFAULT_OPS.run.cacheInputs,
    async exec(step: RunStep, x: ExecContext) {
      const body = async () => {
        const command = step.args.at(-1)!;
        runs.push(command);
        active++;
        most = Math.max(most, active);
        try {
          for (const until = Date.now() + opts.waitMs; active < opts.together && Date.now() < until; ) await new Promise((r) => setTimeout(r, 10));
          if (command === opts.fail) throw new Error(`${command} failed`);
          await withActive(x.op.snapshotter, x.op.layout.tmp, x.parent, x.name, async (rootfs) => {
            fs.writeFileSync(path.join(rootfs, 'ran'), `${command}\n`);
          });
        } finally {
          active--;
        }
      };
      await (opts.throughQueue ? x.queueRun(body) : body());
    },
  };
  return { op, runs, most: () => most, active: () => active };
}

async function services() {
  const root = tempDir('kiln-ops-root-');
  return openRoot(root, { registry: {}, maxParallelRuns: 4 });
}

function request(ctx: string): SolveRequest {
  return {
    context: directoryContext(ctx),
    dockerfile: { name: 'Dockerfile', text: DOCKERFILE },
    buildArgs: {},
    network: 'none',
    noCache: false,
    pull: false,
  };
}

describe('solver with a fake RUN op', () => {
  it('runs independent stages at once, and COPY takes what each made', async () => {
    const s = await services();
    try {
      const fake = fakeRun({ together: 3, waitMs: 3000, throughQueue: false });
      const solver = new Solver(s, { ops: { run: fake.op } });
      const ctx = tempDir('kiln-ops-ctx-');
      const result = await solver.solve(request(ctx), new ProgressTracker(() => undefined));
      try {
        expect(fake.runs.sort()).toEqual(['one', 'three', 'two']);
        expect(fake.most()).toBe(3);
        const final = await result.target.snapshot();
        expect(final).toBeDefined();
        await withActive(s.snapshotter, s.layout.tmp, final, `${final}-check`, async (rootfs) => {
          expect(['a', 'b', 'c'].map((f) => fs.readFileSync(path.join(rootfs, f), 'utf8'))).toEqual(['one\n', 'two\n', 'three\n']);
        });
      } finally {
        result.release();
      }
    } finally {
      await s.release();
    }
  });

  it('holds RUNs to the cap, and builds a step two concurrent builds share once', async () => {
    const s = await services();
    try {
      const fake = fakeRun({ together: 3, waitMs: 500, throughQueue: true });
      const solver = new Solver(s, { ops: { run: fake.op }, maxParallelRuns: 2 });
      const ctx = tempDir('kiln-ops-ctx-');
      const progress = new ProgressTracker(() => undefined);
      const [first, second] = await Promise.all([solver.solve(request(ctx), progress), solver.solve(request(ctx), progress)]);
      first.release();
      second.release();
      expect(fake.most()).toBe(2);
      expect(fake.runs.sort()).toEqual(['one', 'three', 'two']);
      expect(second.target.key).toBe(first.target.key);
      // A third build finds every step made.
      const third = await solver.solve(request(ctx), progress);
      third.release();
      expect(fake.runs).toHaveLength(3);
    } finally {
      await s.release();
    }
  });

  it("fails the build with the failing step's line once none of its other steps still runs", async () => {
    const s = await services();
    try {
      const fake = fakeRun({ together: 3, waitMs: 300, throughQueue: false, fail: 'two' });
      const solver = new Solver(s, { ops: { run: fake.op } });
      const ctx = tempDir('kiln-ops-ctx-');
      const failed = await solver.solve(request(ctx), new ProgressTracker(() => undefined)).then(
        () => undefined,
        (err: Error) => ({ message: err.message, stillRunning: fake.active() }),
      );
      expect(failed).toEqual({ message: 'Dockerfile:4: RUN two: two failed', stillRunning: 0 });
      expect(fake.runs.sort()).toEqual(['one', 'three', 'two']);
    } finally {
      await s.release();
    }
  });
});

describe('WORKDIR op', () => {
  it('on a directory the parent has, commits an empty snapshot without mounting anything; else it mounts and makes it', async () => {
    const s = await services();
    try {
      await withActive(s.snapshotter, s.layout.tmp, undefined, 'base', async (rootfs) => {
        fs.mkdirSync(path.join(rootfs, 'app/src'), { recursive: true });
      });
      const step = (p: string): WorkdirStep => ({
        kind: 'workdir',
        path: p,
        user: '',
        location: { file: 'Dockerfile', line: 2, endLine: 2 },
        original: `WORKDIR ${p}`,
        createdBy: `WORKDIR ${p}`,
      });
      // Where mounts are made is a file here: a step that tried to mount would fail.
      const noMounts = path.join(tempDir('kiln-ops-nomount-'), 'not-a-dir');
      fs.writeFileSync(noMounts, '');
      const ctx = { snapshotter: s.snapshotter, layout: { ...s.layout, tmp: noMounts } } as unknown as OpContext;
      await workdirStep(step('/app/src'), ctx, 'base', 'wd-existing');
      expect((await s.snapshotter.stat('wd-existing')).kind).toBe('committed');
      expect((await s.snapshotter.diff('wd-existing', { dest: path.join(tempDir('kiln-ops-diff-'), 'layer'), compression: 'none' })).empty).toBe(true);
      // A directory to make needs the mount, and fails here for want of one.
      await expect(workdirStep(step('/app/new'), ctx, 'base', 'wd-new')).rejects.toThrow();
      await workdirStep(step('/app/new'), { ...ctx, layout: s.layout } as OpContext, 'base', 'wd-new');
      expect((await s.snapshotter.diff('wd-new', { dest: path.join(tempDir('kiln-ops-diff-'), 'layer'), compression: 'none' })).empty).toBe(false);
    } finally {
      await s.release();
    }
  });
});
