// RUN --mount=type=bind of the build context sees what BuildKit's does: the context as its
// .dockerignore lets it through, never the files it leaves out (embedded mode reads the user's
// directory in place, so those are right there), read-only unless rw, with writes going nowhere.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { build, kilnRoot, makeContext, ranSteps, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});

describe('RUN --mount=type=bind from the context', () => {
  it('leaves out what .dockerignore excludes, and is keyed by what it lets through', async () => {
    const ctx = makeContext({
      Dockerfile:
        'FROM busybox\nRUN --mount=type=bind,target=/ctx find /ctx -type f | sort > /seen && cat /seen\nRUN --mount=type=bind,source=sub,target=/sub,rw touch /sub/made && ls /sub > /sub-seen\n',
      '.dockerignore': 'secret.txt\nsub/*.log\n',
      'app.txt': 'app\n',
      'secret.txt': 'not for the build\n',
      'sub/keep.txt': 'keep\n',
      'sub/debug.log': 'ignored\n',
    });
    const out = fs.mkdtempSync(path.join(path.dirname(ctx), 'kiln-bind-out-'));
    const root = kilnRoot();
    cleanup.push(ctx, out, root);
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
      const seen = fs.readFileSync(path.join(out, 'seen'), 'utf8');
      expect(seen).toContain('/ctx/app.txt');
      expect(seen).toContain('/ctx/sub/keep.txt');
      expect(seen).not.toContain('secret.txt');
      expect(seen).not.toContain('debug.log');
      expect(fs.readFileSync(path.join(out, 'sub-seen'), 'utf8').split('\n').filter(Boolean).sort()).toEqual(['keep.txt', 'made']);
      // A rw mount's writes reach neither the context nor the filtered copy the next build mounts.
      expect(fs.existsSync(path.join(ctx, 'sub', 'made'))).toBe(false);

      // Changing an excluded file changes nothing; changing a listed one runs the steps again.
      fs.writeFileSync(path.join(ctx, 'secret.txt'), 'changed, still not for the build\n');
      const again = await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
      expect(ranSteps(again)).toEqual([]);
      fs.writeFileSync(path.join(ctx, 'app.txt'), 'app, edited\n');
      const edited = await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
      expect(ranSteps(edited).length).toBe(2);
      expect(fs.readFileSync(path.join(out, 'seen'), 'utf8')).not.toContain('secret.txt');
    } finally {
      await srv.close();
    }
  }, 120_000);
});
