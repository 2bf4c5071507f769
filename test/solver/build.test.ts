import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildFailure } from '../../src/server/api.js';
import { build, cachedSteps, kilnRoot, makeContext, mountsUnder, ranSteps, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
function tracked<T extends string>(d: T): T {
  cleanup.push(d);
  return d;
}

describe('solver: builds and the cache', () => {
  it('builds, and a rebuild in a new process runs no step and gives the same image ID', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(
      makeContext({
        Dockerfile: 'FROM busybox\nWORKDIR /app\nCOPY a.txt .\nRUN cat a.txt > copied && echo ran-the-step\nENV X=1\n',
        'a.txt': 'alpha\n',
      }),
    );
    const s1 = server(root);
    const first = await build(s1, ctx);
    await s1.close();
    expect(ranSteps(first)).toHaveLength(3);
    expect(first.logs).toContain('ran-the-step');

    const s2 = server(root); // a new server on the same root: what a restart sees
    const second = await build(s2, ctx);
    await s2.close();
    expect(ranSteps(second)).toEqual([]);
    expect(cachedSteps(second)).toHaveLength(3);
    expect(second.result.image!.id).toBe(first.result.image!.id);
  });

  it('walks the build context beside the steps before the first COPY, not after them', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN sleep 1\nCOPY a.txt /a.txt\n', 'a.txt': 'a\n' }));
    const srv = server(tracked(kilnRoot()));
    try {
      const b = await build(srv, ctx);
      const done = (name: RegExp) => b.events.findIndex((e) => e.type === 'vertex' && e.status === 'done' && name.test(e.name));
      const context = done(/^\[internal\] load build context$/);
      expect(context).toBeGreaterThanOrEqual(0);
      // The walk (two files) ended while the RUN slept: the COPY waited for no walk of its own.
      expect(context).toBeLessThan(done(/RUN sleep 1$/));
      // Walked once: one such vertex.
      expect(b.events.filter((e) => e.type === 'vertex' && e.status === 'started' && e.name === '[internal] load build context')).toHaveLength(1);
    } finally {
      await srv.close();
    }
  });

  it("makes a step's layer while the steps after it run, when the build exports an image", async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\nRUN sleep 1 && echo b > /b\n', 'a.txt': 'a\n' }));
    const root = tracked(kilnRoot());
    const srv = server(root);
    try {
      let runDoneAt = 0;
      await build(srv, ctx, {}, undefined, (e) => {
        if (e.type === 'vertex' && e.status === 'done' && e.name.includes('RUN sleep 1')) runDoneAt = Date.now();
      });
      // Each layer's record is written when the layer is made: the COPY's, during the RUN's second.
      const dir = path.join(root, 'records', 'layers');
      const made = fs
        .readdirSync(dir)
        .map((f) => fs.statSync(path.join(dir, f)).mtimeMs)
        .sort((x, y) => x - y);
      expect(made).toHaveLength(2);
      expect(runDoneAt).toBeGreaterThan(0);
      expect(made[0]!).toBeLessThan(runDoneAt - 500);
    } finally {
      await srv.close();
    }
  });

  it('reruns the COPY that selects a changed file and what follows, but not for a touch', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(
      makeContext({
        Dockerfile: 'FROM busybox\nRUN echo base > /base\nCOPY src/ /src/\nRUN cat /src/*.txt > /all\nCOPY other.txt /other.txt\n',
        'src/a.txt': 'a\n',
        'src/b.txt': 'b\n',
        'other.txt': 'o\n',
      }),
    );
    const srv = server(root);
    try {
      await build(srv, ctx);
      // A touch changes only the mtime: nothing reruns.
      const later = new Date(Date.now() + 60_000);
      fs.utimesSync(path.join(ctx, 'src/a.txt'), later, later);
      expect(ranSteps(await build(srv, ctx))).toEqual([]);

      // A changed byte reruns the COPY that reads it and the steps after it, not the ones before.
      fs.writeFileSync(path.join(ctx, 'src/a.txt'), 'A\n');
      const ran = ranSteps(await build(srv, ctx));
      expect(ran.map((n) => n.replace(/^\[\d+\/\d+\] /, ''))).toEqual(['COPY src/ /src/', 'RUN cat /src/*.txt > /all', 'COPY other.txt /other.txt']);

      // A mode change is a change too.
      fs.chmodSync(path.join(ctx, 'other.txt'), 0o755);
      expect(ranSteps(await build(srv, ctx)).map((n) => n.replace(/^\[\d+\/\d+\] /, ''))).toEqual(['COPY other.txt /other.txt']);
    } finally {
      await srv.close();
    }
  });

  it('a build arg change misses the cache only for the steps that see it', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo before > /b\nARG V=1\nRUN echo $V > /v\n' }));
    const srv = server(root);
    try {
      await build(srv, ctx);
      const again = await build(srv, ctx, { buildArgs: { V: '2' } });
      expect(ranSteps(again).map((n) => n.replace(/^\[\d+\/\d+\] /, ''))).toEqual(['RUN echo $V > /v']);
    } finally {
      await srv.close();
    }
  });

  it('--no-cache runs every step again', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN date +%s%N > /stamp\n' }));
    const srv = server(root);
    try {
      await build(srv, ctx);
      expect(ranSteps(await build(srv, ctx, { noCache: true }))).toHaveLength(1);
    } finally {
      await srv.close();
    }
  });

  it('a tagged image is found by a later FROM before any registry', async () => {
    const root = tracked(kilnRoot());
    const base = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo from-local-base > /marker\n' }));
    const child = tracked(makeContext({ Dockerfile: 'FROM kiln-test/local-base:1\nRUN cat /marker\n' }));
    const srv = server(root);
    try {
      await build(srv, base, { outputs: [{ type: 'image', names: ['kiln-test/local-base:1'], push: false }] });
      const b = await build(srv, child);
      expect(b.logs).toContain('from-local-base');
    } finally {
      await srv.close();
    }
  });
});

describe('solver: why a step ran', () => {
  const reasons = (b: Awaited<ReturnType<typeof build>>) =>
    Object.fromEntries(
      b.events.flatMap((e) => (e.type === 'vertex' && e.status === 'done' && e.reason ? [[e.name.replace(/^\[\d+\/\d+\] /, ''), e.reason]] : [])),
    );

  it('names the input that changed: a build arg, a context file, the parent, or --no-cache', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nARG V=1\nRUN echo $V > /v\nCOPY app.js /app.js\nRUN cat /app.js\n', 'app.js': 'one\n' }));
    const srv = server(tracked(kilnRoot()));
    try {
      // A first build has nothing to explain.
      expect(reasons(await build(srv, ctx))).toEqual({});
      expect(reasons(await build(srv, ctx, { buildArgs: { V: '2' } }))).toEqual({
        'RUN echo $V > /v': 'build arg V changed',
        'COPY app.js /app.js': 'parent step re-ran',
        'RUN cat /app.js': 'parent step re-ran',
      });
      fs.writeFileSync(path.join(ctx, 'app.js'), 'two\n');
      const afterEdit = reasons(await build(srv, ctx, { buildArgs: { V: '2' } }));
      expect(afterEdit['COPY app.js /app.js']).toBe('COPY: app.js changed');
      expect(afterEdit['RUN cat /app.js']).toBe('parent step re-ran');
      expect(afterEdit['RUN echo $V > /v']).toBeUndefined(); // cached
      expect(Object.values(reasons(await build(srv, ctx, { buildArgs: { V: '2' }, noCache: true })))).toEqual(Array(3).fill('cache disabled (--no-cache)'));
    } finally {
      await srv.close();
    }
  });

  it('--no-cache-filter reruns the named stage and what reads it, and nothing else', async () => {
    const ctx = tracked(
      makeContext({
        Dockerfile:
          'FROM busybox AS gen\nRUN echo gen > /g\nFROM busybox AS other\nRUN echo other > /o\nFROM busybox\nCOPY --from=gen /g /g\nCOPY --from=other /o /o\n',
      }),
    );
    const srv = server(tracked(kilnRoot()));
    try {
      await build(srv, ctx);
      const again = await build(srv, ctx, { noCacheFilter: ['gen'] });
      expect(
        ranSteps(again)
          .map((n) => n.replace(/^\[\S+ \d+\/\d+\] /, ''))
          .sort(),
      ).toEqual(['COPY --from=gen /g /g', 'COPY --from=other /o /o', 'RUN echo gen > /g']);
      expect(cachedSteps(again).map((n) => n.replace(/^\[\S+ \d+\/\d+\] /, ''))).toEqual(['RUN echo other > /o']);
    } finally {
      await srv.close();
    }
  });
});

describe('solver: scheduling', () => {
  it('independent stages run at the same time, and a stage two stages need runs once', async () => {
    const stages = ['a', 'b', 'c']
      .map((n) => `FROM busybox AS ${n}\nRUN cut -d" " -f1 /proc/uptime > /s-${n} && sleep 2 && cut -d" " -f1 /proc/uptime > /t-${n}\n`)
      .join('');
    const ctx = tracked(
      makeContext({
        Dockerfile: `FROM busybox AS shared\nRUN echo shared-ran && cat /proc/uptime > /s\n${stages}FROM busybox AS d1\nCOPY --from=shared /s /s\nFROM busybox AS d2\nCOPY --from=shared /s /s\nFROM busybox\nCOPY --from=a /s-a /t-a /\nCOPY --from=b /s-b /t-b /\nCOPY --from=c /s-c /t-c /\nCOPY --from=d1 /s /s1\nCOPY --from=d2 /s /s2\n`,
      }),
    );
    const out = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-par-')));
    const srv = server(tracked(kilnRoot()));
    try {
      const b = await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
      expect(b.logs.match(/shared-ran/g)).toHaveLength(1);
    } finally {
      await srv.close();
    }
    // Each sleeping stage wrote when it started and ended (the host's uptime clock): they ran at the
    // same time when every one started before any one ended. In sequence, none would overlap.
    const at = (f: string) => Number(fs.readFileSync(path.join(out, f), 'utf8').trim());
    const starts = ['a', 'b', 'c'].map((n) => at(`s-${n}`));
    const ends = ['a', 'b', 'c'].map((n) => at(`t-${n}`));
    expect(Math.max(...starts)).toBeLessThan(Math.min(...ends));
  });
});

describe('solver: cgroup limits on RUN', () => {
  it('the configured pids limit stops a step from forking without bound', async () => {
    const ctx = tracked(
      makeContext({ Dockerfile: 'FROM busybox\nRUN n=0; for i in $(seq 1 200); do sleep 2 2>/dev/null & [ $? = 0 ] && n=$((n+1)); done; echo "forked=$n"\n' }),
    );
    const srv = server(tracked(kilnRoot()), { pids: 30 });
    try {
      const b = await build(srv, ctx).catch((e: BuildFailure) => ({ logs: `${e.message}\n${e.info.outputTail ?? ''}` }));
      const forked = Number(/forked=(\d+)/.exec(b.logs)?.[1] ?? '0');
      expect(b.logs).toMatch(/can't fork|Resource temporarily unavailable|forked=/);
      expect(forked).toBeLessThan(30);
    } finally {
      await srv.close();
    }
  });

  it('a build can set its own pids limit (--pids-limit), up to the configured maximum', async () => {
    const ctx = tracked(
      makeContext({ Dockerfile: 'FROM busybox\nRUN n=0; for i in $(seq 1 200); do sleep 2 2>/dev/null & [ $? = 0 ] && n=$((n+1)); done; echo "forked=$n"\n' }),
    );
    const srv = server(tracked(kilnRoot()), { pids: 2048 });
    try {
      const b = await build(srv, ctx, { runPidsLimit: 25 }).catch((e: BuildFailure) => ({ logs: `${e.message}\n${e.info.outputTail ?? ''}` }));
      const forked = Number(/forked=(\d+)/.exec(b.logs)?.[1] ?? '0');
      expect(forked).toBeLessThan(25);
      const tooMany = await build(srv, ctx, { runPidsLimit: 1_000_000 }).then(
        () => undefined,
        (e: BuildFailure) => e,
      );
      expect(tooMany?.info.message).toMatch(/--pids-limit 1000000 is above kiln's "max-run-pids-limit" \(32768\)/);
    } finally {
      await srv.close();
    }
  });

  it('the configured memory limit kills a step that exceeds it', async () => {
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN head -c 300000000 /dev/zero | tail -c 300000000 > /dev/null\n' }));
    const srv = server(tracked(kilnRoot()), { memoryBytes: 64 * 1024 * 1024 });
    try {
      await expect(build(srv, ctx)).rejects.toThrow(/exit code: 137/);
    } finally {
      await srv.close();
    }
  });
});

describe('solver: failures leave a usable root', () => {
  it('a failing RUN names the file, line, exit code and last output; the next build works', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo fine\nRUN echo about to fail && echo on-stderr >&2 && exit 3\n' }));
    const srv = server(root);
    try {
      const err = await build(srv, ctx).then(
        () => undefined,
        (e: unknown) => e,
      );
      // The details are data (what a daemon sends), not text to parse back out of the message.
      expect(err).toBeInstanceOf(BuildFailure);
      const info = (err as BuildFailure).info;
      expect(info.message).toMatch(/^Dockerfile:3: RUN echo about to fail/);
      expect(info.message).toContain('exit code: 3');
      expect(info).toMatchObject({ location: { file: 'Dockerfile', line: 3 }, exitCode: 3 });
      // stdout and stderr come through two pipes: their lines may arrive in either order.
      expect(info.outputTail?.split('\n').sort()).toEqual(['about to fail', 'on-stderr']);
      expect(info.cancelled).toBeUndefined();
      expect(mountsUnder(root)).toEqual([]);

      fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo fine\nRUN echo now it works\n');
      const ok = await build(srv, ctx);
      expect(cachedSteps(ok)).toEqual(['[2/3] RUN echo fine']);
      expect(ok.logs).toContain('now it works');
    } finally {
      await srv.close();
    }
    expect(mountsUnder(root)).toEqual([]);
  });

  it('a failing stage stops the others: no container or mount outlives the failed build', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(
      makeContext({
        Dockerfile:
          'FROM busybox AS slow\nRUN echo slow-started && sleep 60\nFROM busybox AS bad\nRUN sleep 1 && exit 9\nFROM busybox\nCOPY --from=slow /etc/passwd /a\nCOPY --from=bad /etc/passwd /b\n',
      }),
    );
    const srv = server(root);
    try {
      const t0 = Date.now();
      const err = await build(srv, ctx).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(/^Dockerfile:4: .*exit code: 9/);
      // The 60 s sleep was killed, not waited for.
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(mountsUnder(root)).toEqual([]);
      const bundles = path.join(root, 'executor', 'bundles');
      expect(fs.existsSync(bundles) ? fs.readdirSync(bundles) : []).toEqual([]);
    } finally {
      await srv.close();
    }
  });

  it('a build killed with SIGKILL mid-RUN leaves a root the next build uses', async () => {
    const root = tracked(kilnRoot());
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo started-long-step && sleep 600\n' }));
    const registry = (await import('../helpers/env.js')).testEnv().registry;
    const config = path.join(root, '..', `${path.basename(root)}.json`);
    tracked(config);
    fs.writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${registry}`] }));
    // A separate kiln process (the compiled one, as a user runs it), killed without warning.
    const script = `
      import { BuildServer } from ${JSON.stringify(path.resolve('dist/server/server.js'))};
      const s = new BuildServer({ root: ${JSON.stringify(root)} });
      await s.build({ context: { type: "dir", path: ${JSON.stringify(ctx)} }, dockerfile: { name: 'Dockerfile', text: ${JSON.stringify(fs.readFileSync(path.join(ctx, 'Dockerfile'), 'utf8'))} },
        buildArgs: {}, dryRun: false, outputs: [], labels: {}, network: 'host', noCache: false, pull: false },
        (e) => { if (e.type === 'log') process.stdout.write(e.data); });
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, KILN_CONFIG: config },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('started-long-step')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`kiln child exited early (${code}): ${out}`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The killed build's container and mounts are still there: that is what the next owner must handle.
    expect(mountsUnder(root).length).toBeGreaterThan(0);

    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN echo after-the-kill\n');
    const srv = server(root);
    try {
      const b = await build(srv, ctx);
      expect(b.logs).toContain('after-the-kill');
      // Only the new build's own state remains mounted: nothing (it has finished).
      expect(mountsUnder(root)).toEqual([]);
      const leftovers = fs.readdirSync(path.join(root, 'tmp'));
      expect(leftovers).toEqual([]);
    } finally {
      await srv.close();
    }
  });
});
