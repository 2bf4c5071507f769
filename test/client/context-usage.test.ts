// What a client sends of its context: exactly what the build's stages can read. The whole-context
// shortcut (COPY . without --exclude) must give what the selection gives.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { walkContext } from '../../src/context/walk.js';
import { contextUsage } from '../../src/solver/context-usage.js';
import { planBuild } from '../../src/solver/plan.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-usage-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
for (const f of ['a.txt', 'src/b.ts', 'src/deep/c.ts', 'docs/d.md', '.hidden']) {
  fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
  fs.writeFileSync(path.join(dir, f), f);
}

async function used(dockerfile: string): Promise<string[]> {
  const graph = planBuild({ dockerfile: { name: 'Dockerfile', text: dockerfile }, buildArgs: {} });
  return contextUsage(graph, await walkContext(dir, { excludes: [] })).map((e) => e.path);
}

describe('contextUsage', () => {
  it('the whole context for COPY . (any spelling of the root), as selecting it would give', async () => {
    const all = (await walkContext(dir, { excludes: [] })).map((e) => e.path);
    for (const src of ['.', './', '/', 'src/..']) expect(await used(`FROM scratch\nCOPY ${src} /app\n`), src).toEqual(all);
    expect(await used('FROM busybox\nRUN --mount=type=bind,source=.,target=/ctx true\n')).toEqual(all);
  });

  it('only what is read otherwise: a subdirectory, or the root minus --exclude', async () => {
    expect(await used('FROM scratch\nCOPY src /app\n')).toEqual(['src', 'src/b.ts', 'src/deep', 'src/deep/c.ts']);
    const excluded = await used('FROM scratch\nCOPY --exclude=docs . /app\n');
    expect(excluded).not.toContain('docs/d.md');
    expect(excluded).toContain('src/deep/c.ts');
    expect(await used('FROM scratch\nCOPY a.txt /\n')).toEqual(['a.txt']);
  });
});
