// `kiln load` and `kiln run` as a user types them: a base image loaded from an OCI layout, an image
// built on it with no registry at all, and its command run in runc.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { testEnv } from '../helpers/env.js';
import { kiln, REPO } from './helpers.js';

const root = mkdtempSync(path.join(tmpdir(), 'kiln-cli-loadrun-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('kiln load / kiln run', () => {
  it('loads a layout, builds on it offline, and runs the result with its CMD or a given command', () => {
    // An empty config (no mirrors) and a base named as on Docker Hub, which is out of reach here:
    // the build can only succeed by finding the loaded image in kiln's own store.
    const config = path.join(root, 'empty-config.json');
    writeFileSync(config, '{}');
    const env = { KILN_CONFIG: config, KILN_ROOT: root };
    expect(kiln(['load', '-i', testEnv().busyboxOci, '-t', 'busybox:latest'], { env: { KILN_ROOT: root } })).toMatchObject({
      code: 0,
      stdout: 'Loaded image: busybox:latest\n',
    });
    const built = kiln(['build', '--progress', 'quiet', '-t', 'demo/hello', path.join(REPO, 'examples/hello')], { env });
    expect(built.stderr).toBe('');
    expect(built.code).toBe(0);
    const run = kiln(['run', 'demo/hello'], { env: { KILN_ROOT: root } });
    expect(run).toMatchObject({
      code: 0,
      stdout: 'Hello from an image built by kiln!\nbuilt by kiln on ' + process.arch.replace('x64', 'x86_64').replace('arm64', 'aarch64') + '\n',
    });
    const withArgs = kiln(['run', 'demo/hello', 'sh', '-c', 'echo "$GREETING_FILE"; exit 7'], { env: { KILN_ROOT: root } });
    expect(withArgs).toMatchObject({ code: 7, stdout: '/app/greeting.txt\n' });
  });

  it('reports a missing image (exit 125) and a missing -i (exit 1) clearly', () => {
    const missing = kiln(['run', '--root', root, 'no/such:image']);
    expect(missing.code).toBe(125);
    expect(missing.stderr).toContain("no such image in kiln's store: no/such:image");
    const noInput = kiln(['load', '--root', root]);
    expect(noInput.code).toBe(1);
    expect(noInput.stderr).toContain('-i PATH is required');
  });
});
