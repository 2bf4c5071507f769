// Secrets and SSH agents through a real daemon: the value rides in the build request only, and no
// byte of it is in the daemon's root, log, build list, the outputs or the client's progress.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { kilnClient, minimalBuildRequest, request, startDaemon, tempDir } from '../helpers/daemon.js';
import { testEnv } from '../helpers/env.js';
import { cleanUp, filesContaining, SECRET_DOCKERFILE, sshContext, startAgent } from '../helpers/secret-bytes.js';

const FILE_SECRET = 'kiln-DAEMON-file-secret-3e9a';
const ENV_SECRET = 'kiln-DAEMON-env-secret-81c4';
const sha = (s: string) => execFileSync('sha256sum', { input: s }).toString().split(' ')[0]!;

const dirs: string[] = [];
const agents: number[] = [];
afterAll(() => cleanUp(dirs, agents));

describe('secrets and ssh through the daemon', () => {
  it('secrets reach the step; no byte of them on the daemon host after the build, in its log or build list', async () => {
    const env = testEnv();
    const d = tempDir('kiln-dsecrets-');
    dirs.push(d);
    const daemon = await startDaemon({ root: path.join(d, 'root') });
    const ctx = path.join(d, 'ctx');
    fs.mkdirSync(ctx);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), SECRET_DOCKERFILE(env.busybox));
    fs.writeFileSync(path.join(d, 'fs.txt'), FILE_SECRET);
    const out = path.join(d, 'out');
    fs.mkdirSync(out);
    const r = await kilnClient(
      [
        'build',
        '--addr',
        daemon.addr,
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
        ctx,
      ],
      { env: { KILN_T_ES: ENV_SECRET } },
    );
    expect(r.code, r.stderr).toBe(0);
    const logs = r.stderr + r.stdout;
    expect(logs).toContain('440 12 34');
    expect(logs).toContain(sha(FILE_SECRET));
    expect(logs).toContain(sha(ENV_SECRET));
    expect(logs).toContain('no-stubs');
    const builds = await request(daemon.socket, 'GET', '/v1/builds');
    const du = await kilnClient(['du', '--addr', daemon.addr, '--verbose']);
    expect(filesContaining(path.join(out, 'img-oci.tar'), 'done\n').length).toBeGreaterThan(0);
    for (const secret of [FILE_SECRET, ENV_SECRET]) {
      expect(logs).not.toContain(secret);
      expect(builds.body + du.stdout).not.toContain(secret);
      expect(filesContaining(out, secret)).toEqual([]);
      expect(filesContaining(daemon.root, secret)).toEqual([]);
    }
    // A required secret the client did not send fails the step, naming it only.
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busybox}\nRUN --mount=type=secret,id=other --mount=type=secret,id=need,required=true true\n`);
    const failed = await kilnClient(['build', '--addr', daemon.addr, '--progress', 'plain', '--secret', 'id=other,env=KILN_T_ES', ctx], {
      env: { KILN_T_ES: ENV_SECRET },
    });
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(/Dockerfile:2: secret need not found/);
    await daemon.stop();
    const log = daemon.log();
    expect(log).toContain('build');
    for (const secret of [FILE_SECRET, ENV_SECRET]) {
      expect(failed.stderr).not.toContain(secret);
      expect(log).not.toContain(secret);
      expect(filesContaining(daemon.root, secret)).toEqual([]);
    }
  }, 300_000);

  it("--ssh: the step reaches the client's agent through the daemon", async () => {
    const env = testEnv();
    const d = tempDir('kiln-dssh-');
    dirs.push(d);
    const agent = startAgent(d, agents);
    const daemon = await startDaemon({ root: path.join(d, 'root') });
    const ctx = sshContext(
      d,
      `FROM ${env.debian}\nRUN --mount=type=bind,source=x,target=/x --mount=type=ssh echo "sock=$SSH_AUTH_SOCK" && LD_LIBRARY_PATH=/x /x/ssh-add -l && LD_LIBRARY_PATH=/x /x/ssh-add -l\n`,
    );
    const r = await kilnClient(['build', '--addr', daemon.addr, '--progress', 'plain', '--ssh', `default=${agent.socket}`, ctx]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('sock=/run/buildkit/ssh_agent.0');
    expect(r.stderr.split(agent.comment).length - 1).toBeGreaterThanOrEqual(2);
    // The daemon never takes a socket path from a request.
    const bad = await request(
      daemon.socket,
      'POST',
      '/v1/builds',
      JSON.stringify(minimalBuildRequest({ dockerfile: { name: 'Dockerfile', text: 'FROM scratch' }, ssh: [{ id: 'default', socket: '/tmp/x' }] })),
      { 'content-type': 'application/json' },
    );
    expect(bad.status).toBe(400);
    await daemon.stop();
  }, 300_000);
});
