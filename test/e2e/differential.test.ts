// kiln against Docker 20.10's BuildKit, one test per case in testdata/differential/.
//
// Each test builds the case with Docker (cached in /var/cache/kiln-testdata/differential/) and with
// kiln, then compares image config, history and the root filesystem (see harness/). Set
// KILN_DIFF_DOCKER_ONLY=1 to check only the Docker side of the cases, and KILN_DIFF_CASES=a,b to
// run only some cases.
import { join } from 'node:path';
import { beforeAll, describe, it } from 'vitest';
import { tmpDir } from '../helpers/env.js';
import { listCases } from './harness/cases.js';
import { judgeCase, type KilnSetup } from './harness/judge.js';
import { writeKilnConfig } from './harness/kiln.js';

const only = process.env.KILN_DIFF_CASES?.split(',').filter(Boolean);
const cases = listCases().filter((c) => !only || only.includes(c.name));

let setup: KilnSetup;
beforeAll(async () => {
  const dir = await tmpDir('kiln-diff-');
  setup = { root: join(dir, 'root'), config: await writeKilnConfig(dir) };
});

describe('differential: kiln vs Docker BuildKit', () => {
  it('has cases', ({ expect }) => {
    // Issue 12 asks for at least 150 differential cases.
    expect(cases.length).toBeGreaterThanOrEqual(only ? 1 : 150);
  });
  for (const c of cases) {
    it(`${c.name}${c.spec.description ? `: ${c.spec.description}` : ''}`, async () => {
      await judgeCase(c, setup);
    }, 900_000);
  }
});
