// RUN --mount=type=secret and type=ssh in embedded mode, through the real CLI (dist) and runc. The
// secret's value is searched for, as bytes, in everything the build leaves behind.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kilnClient, tempDir } from '../helpers/daemon.js';
import { testEnv } from '../helpers/env.js';
import { cleanUp, filesContaining, SECRET_DOCKERFILE, sshContext, startAgent } from '../helpers/secret-bytes.js';

const FILE_SECRET = 'kiln-FILE-secret-7c1d9e0a';
const ENV_SECRET = 'kiln-ENV-secret-52b8f3aa';
const sha = (s: string) => execFileSync('sha256sum', { input: s }).toString().split(' ')[0]!;

const dirs: string[] = [];
const agents: number[] = [];
afterAll(() => cleanUp(dirs, agents));

function scratch(): string {
  const d = tempDir('kiln-secrets-');
  dirs.push(d);
  return d;
}

describe('secrets, embedded', () => {
  it('file and env secrets reach the step with mode/uid/gid and leave no byte behind', async () => {
    const env = testEnv();
    const d = scratch();
    const ctx = path.join(d, 'ctx');
    fs.mkdirSync(ctx);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), SECRET_DOCKERFILE(env.busybox));
    fs.writeFileSync(path.join(d, 'fs.txt'), FILE_SECRET);
    const root = path.join(d, 'root');
    const out = path.join(d, 'out');
    fs.mkdirSync(out);
    const r = await kilnClient(
      [
        'build',
        '--root',
        root,
        '--progress',
        'rawjson',
        '--secret',
        `id=fs,src=${path.join(d, 'fs.txt')}`,
        '--secret',
        'id=es,env=KILN_T_ES',
        '-t',
        'secret-test',
        '-o',
        `type=oci,dest=${out}/img-oci.tar`,
        '-o',
        `type=docker,dest=${out}/img-docker.tar`,
        '--cache-to',
        `type=local,dest=${out}/cache,mode=max`,
        ctx,
      ],
      { env: { KILN_T_ES: ENV_SECRET } },
    );
    expect(r.code, r.stderr).toBe(0);
    const logs = r.stderr + r.stdout;
    expect(logs).toContain('440 12 34');
    expect(logs).toContain(sha(FILE_SECRET));
    expect(logs).toContain(sha(ENV_SECRET));
    expect(logs).toContain('absent');
    // The targets left no stubs in the image: busybox has neither /run nor /opt.
    expect(logs).toContain('no-stubs');
    // The search works: the step's own output file ("done" in /result) is found inside the layers.
    expect(filesContaining(path.join(out, 'img-oci.tar'), 'done\n').length).toBeGreaterThan(0);
    const du = await kilnClient(['du', '--root', root, '--verbose']);
    expect(du.code, du.stderr).toBe(0);
    const images = await kilnClient(['images', '--root', root]);
    for (const secret of [FILE_SECRET, ENV_SECRET]) {
      expect(logs).not.toContain(secret);
      expect(du.stdout + du.stderr + images.stdout).not.toContain(secret);
      expect(filesContaining(out, secret)).toEqual([]);
      expect(filesContaining(root, secret)).toEqual([]);
    }
    // Nothing left mounted or running for the step.
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(root);
  }, 240_000);

  it('a required secret that is missing fails the step naming it; the value of another is not in the error', async () => {
    const env = testEnv();
    const d = scratch();
    const ctx = path.join(d, 'ctx');
    fs.mkdirSync(ctx);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busybox}\nRUN --mount=type=secret,id=other --mount=type=secret,id=need,required=true true\n`);
    const r = await kilnClient(['build', '--root', path.join(d, 'root'), '--progress', 'plain', '--secret', 'id=other,env=KILN_T_O', ctx], {
      env: { KILN_T_O: ENV_SECRET },
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:2: secret need not found/);
    expect(r.stderr).not.toContain(ENV_SECRET);
  }, 120_000);

  it('--ssh ID=KEYFILE serves the key from a private agent for the build', async () => {
    const env = testEnv();
    const d = scratch();
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kiln-keyfile-key', '-f', path.join(d, 'id_test')]);
    const ctx = sshContext(d, `FROM ${env.debian}\nRUN --mount=type=bind,source=x,target=/x --mount=type=ssh,id=deploy LD_LIBRARY_PATH=/x /x/ssh-add -l\n`);
    const r = await kilnClient(['build', '--root', path.join(d, 'root'), '--progress', 'plain', '--ssh', `deploy=${path.join(d, 'id_test')}`, ctx], {
      env: { SSH_AUTH_SOCK: '' },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('kiln-keyfile-key');
    // The private agent is gone with the build.
    expect(execFileSync('sh', ['-c', 'ls -d /tmp/kiln-ssh-* 2>/dev/null || true']).toString().trim()).toBe('');
    const bad = path.join(d, 'not-a-key');
    fs.writeFileSync(bad, 'nonsense\n');
    const refused = await kilnClient(['build', '--root', path.join(d, 'root'), '--progress', 'plain', '--ssh', `deploy=${bad}`, ctx]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`--ssh deploy: cannot load the key ${bad}`);
  }, 120_000);

  it('--ssh default forwards the agent: SSH_AUTH_SOCK is set and ssh-add -l lists the key', async () => {
    const env = testEnv();
    const d = scratch();
    const agent = startAgent(d, agents);
    const ctx = sshContext(
      d,
      `FROM ${env.debian}\nRUN --mount=type=bind,source=x,target=/x --mount=type=ssh,mode=0660,uid=5 test -S "$SSH_AUTH_SOCK" && echo "sock=$SSH_AUTH_SOCK" && stat -c '%a %u' "$SSH_AUTH_SOCK" && LD_LIBRARY_PATH=/x /x/ssh-add -l\n` +
        `RUN --mount=type=ssh,id=other,target=/agent ls /agent 2>&1 || echo no-agent\n`,
    );
    const r = await kilnClient(['build', '--root', path.join(d, 'root'), '--progress', 'plain', '--ssh', 'default', ctx], {
      env: { SSH_AUTH_SOCK: agent.socket },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('sock=/run/buildkit/ssh_agent.0');
    expect(r.stderr).toContain('660 5');
    expect(r.stderr).toContain(agent.comment);
    expect(r.stderr).toContain('no-agent');
    const missing = await kilnClient(['build', '--root', path.join(d, 'root'), '--progress', 'plain', '--no-cache', ctx], { env: { SSH_AUTH_SOCK: '' } });
    expect(missing.code).not.toBe(0);
    const req = sshContext(d, `FROM ${env.debian}\nRUN --mount=type=ssh,required=true true\n`);
    const failed = await kilnClient(['build', '--root', path.join(d, 'root'), '--progress', 'plain', req]);
    expect(failed.stderr).toMatch(/Dockerfile:2: ssh agent default not found/);
  }, 240_000);
});
