// COPY --link through the compiled binary, as a user sees it: change the base stage under a linked
// COPY and plain progress shows the COPY CACHED; a --chown name is refused naming the line.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { testEnv, tmpDir } from '../helpers/env.js';
import { kiln } from './helpers.js';

let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = await tmpDir('kiln-cli-link-');
  const config = path.join(dir, 'kiln-config.json');
  writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`] }));
  env = { KILN_CONFIG: config };
});

function context(name: string, dockerfile: string): string {
  const ctx = path.join(dir, name);
  spawnSync('mkdir', ['-p', ctx]);
  writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile);
  writeFileSync(path.join(ctx, 'a.txt'), 'a\n');
  return ctx;
}

describe('kiln build with COPY --link', () => {
  it('shows the linked COPY CACHED after the base stage changed, and the RUN after it seeing the new base', () => {
    const ctx = context('rebase', 'FROM busybox AS base\nARG V\nRUN echo "$V" > /v\nFROM base\nCOPY --link a.txt /app/\nRUN cat /v /app/a.txt\n');
    const root = path.join(dir, 'root');
    const first = kiln(['build', '--root', root, '--progress', 'plain', '--build-arg', 'V=one', ctx], { env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/\n#(\d+) \[stage-1 2\/3\] COPY --link a\.txt \/app\/\n#\1 DONE /);

    const second = kiln(['build', '--root', root, '--progress', 'plain', '--build-arg', 'V=two', ctx], { env });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/\n#(\d+) \[base 2\/2\] RUN echo "\$V" > \/v\n#\1 reason: build arg V changed\n#\1 DONE /);
    expect(second.stderr).toMatch(/\n#(\d+) \[stage-1 2\/3\] COPY --link a\.txt \/app\/\n#\1 CACHED\n/);
    expect(second.stderr).toMatch(
      /\n#(\d+) \[stage-1 3\/3\] RUN cat \/v \/app\/a\.txt\n#\1 \d\.\d{3} two\n#\1 \d\.\d{3} a\n#\1 reason: parent step re-ran\n#\1 DONE /,
    );
  });

  it('refuses --chown by name with the Dockerfile line', () => {
    const ctx = context('named', 'FROM busybox\n\nCOPY --link --chown=nobody a.txt /app/\n');
    const r = kiln(['build', '--root', path.join(dir, 'root-named'), '--progress', 'plain', ctx], { env });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Dockerfile:3: COPY --link with --chown=nobody: the name "nobody" cannot be looked up');
  });
});
