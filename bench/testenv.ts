// The test environment (registry with the base images, dockerd) through scripts/testenv.sh: up with
// this process as a holder, and after the run either down (we started it) or only our holder
// dropped (it was already up, somebody else's).

import * as path from 'node:path';
import { check, run } from './proc.js';

export interface TestEnvHandle {
  registry: string;
  dockerHost: string;
  docker: string;
  /** True when registry and dockerd already answered before we asked for them. */
  wasUp: boolean;
  down(): Promise<void>;
}

const TIMEOUT_MS = 25 * 60_000;

/** Parses `testenv.sh status`: are registry and dockerd up? */
export function parseStatus(text: string): { registry: boolean; dockerd: boolean } {
  return {
    registry: /^registry:\s+up\b/m.test(text),
    dockerd: /^dockerd:\s+up\b/m.test(text),
  };
}

export async function testEnvUp(repo: string, log: (s: string) => void): Promise<TestEnvHandle> {
  const script = path.join(repo, 'scripts', 'testenv.sh');
  const holder = String(process.pid);
  const status = await run(['bash', script, 'status'], { timeoutMs: 60_000 });
  const s = parseStatus(status.output);
  const wasUp = s.registry && s.dockerd;
  log(wasUp ? 'test environment already up: joining it as a holder' : 'bringing the test environment up (scripts/testenv.sh up)');
  // Even when up: `up` also checks the images are in the registry and (re)compiles dist/.
  await check(['bash', script, 'up', '--holder', holder], { timeoutMs: TIMEOUT_MS });
  const env = await check(['bash', script, 'env'], { timeoutMs: 60_000 });
  const value = (k: string): string => {
    const m = new RegExp(`^export ${k}=(.*)$`, 'm').exec(env.output);
    if (!m) throw new Error(`scripts/testenv.sh env did not print ${k}`);
    return m[1]!.trim();
  };
  let downed = false;
  return {
    registry: value('KILN_TEST_REGISTRY'),
    dockerHost: value('KILN_TEST_DOCKER_HOST'),
    docker: value('KILN_TEST_DOCKER'),
    wasUp,
    async down() {
      if (downed) return;
      downed = true;
      // --keep: drop our holder only; without it, `down` still leaves the services to other live holders.
      const r = await run(['bash', script, 'down', '--holder', holder, ...(wasUp ? ['--keep'] : [])], { timeoutMs: 5 * 60_000 });
      if (r.code !== 0) log(`warning: scripts/testenv.sh down failed: ${r.output.trim().split('\n').slice(-3).join(' / ')}`);
    },
  };
}
