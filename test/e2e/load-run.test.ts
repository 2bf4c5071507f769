// kiln's exports as other tools take them: `docker load` + `docker run` of a type=docker tar,
// `skopeo inspect` of a type=oci tar, and `docker pull` + `docker run` of a pushed image.
//
// Every build carries a fresh nonce (a build arg written into the image and printed by its CMD), so a
// test can only pass on an image this run built, never on one left by an earlier run.
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, testEnv, tmpDir } from '../helpers/env.js';
import { kilnBuild, writeKilnConfig } from './harness/kiln.js';

const run = promisify(execFile);

const DOCKERFILE = `FROM busybox
ARG NONCE
RUN mkdir -p /app && echo "kiln says $NONCE" > /app/msg && ln -s /app/msg /msg
WORKDIR /app
ENV WHO=kiln
CMD ["sh", "-c", "cat /msg && echo \\"who=$WHO pwd=$(pwd) user=$(id -u)\\""]
`;

let work: string;
let root: string;
let config: string;
let dockerfile: string;
const toRemove: string[] = [];

beforeAll(async () => {
  work = await tmpDir('kiln-load-run-');
  root = join(work, 'root');
  config = await writeKilnConfig(work);
  dockerfile = join(work, 'Dockerfile');
  await writeFile(dockerfile, DOCKERFILE);
});

afterAll(async () => {
  for (const ref of toRemove) await docker(['rmi', '-f', ref]);
});

function nonce(): string {
  return randomBytes(6).toString('hex');
}

async function build(output: string | undefined, n: string, extra: string[] = []): Promise<void> {
  const res = await kilnBuild({ root, config, dockerfile, context: work, output, buildArgs: { NONCE: n }, extra });
  if (res.code !== 0) throw new Error(`kiln build failed (exit ${res.code}):\n${res.stderr}${res.stdout}`);
}

function expectedOutput(n: string): string {
  return `kiln says ${n}\nwho=kiln pwd=/app user=0\n`;
}

describe('kiln exports, as Docker and skopeo take them', () => {
  it('type=docker: docker load accepts the tar and docker run prints what the image says', async () => {
    const n = nonce();
    const tag = `kiln-e2e/load:${n}`;
    const out = join(work, `docker-${n}.tar`);
    await build(`type=docker,dest=${out}`, n, ['-t', tag]);
    const load = await docker(['load', '-i', out]);
    expect(load.code, load.stderr).toBe(0);
    // "Loaded image: NAME:TAG" when the archive names the image, else "Loaded image ID: sha256:..."
    const ref = /Loaded image(?: ID)?: (\S+)/.exec(load.stdout)?.[1];
    expect(ref, `docker load printed: ${load.stdout}`).toBeTruthy();
    toRemove.push(ref!);
    expect(ref).toBe(tag);
    const res = await docker(['run', '--rm', '--network', 'none', ref!]);
    expect(res.stderr).toBe('');
    expect(res.stdout).toBe(expectedOutput(n));
    expect(res.code).toBe(0);
  });

  it('--load streams the image into the Docker daemon through its API socket, with --label on it', async () => {
    const n = nonce();
    const tag = `kiln-e2e/direct-load:${n}`;
    const res = await kilnBuild({
      root,
      config,
      dockerfile,
      context: work,
      buildArgs: { NONCE: n },
      extra: ['-t', tag, '--load', '--label', `org.example.nonce=${n}`, '--label', 'org.example.by=kiln'],
      env: { DOCKER_HOST: testEnv().dockerHost },
    });
    expect(res.code, res.stderr).toBe(0);
    toRemove.push(tag);
    const labels = await docker(['image', 'inspect', '--format', '{{json .Config.Labels}}', tag]);
    expect(JSON.parse(labels.stdout)).toEqual({ 'org.example.nonce': n, 'org.example.by': 'kiln' });
    const ran = await docker(['run', '--rm', '--network', 'none', tag]);
    expect(ran.stdout).toBe(expectedOutput(n));
  });

  it('type=oci: skopeo inspect accepts the archive and sees the config', async () => {
    const n = nonce();
    const out = join(work, `oci-${n}.tar`);
    await build(`type=oci,dest=${out}`, n);
    const { stdout } = await run('skopeo', ['inspect', `oci-archive:${out}`]);
    const info = JSON.parse(stdout) as { Architecture: string; Os: string; Layers: string[]; Env: string[] };
    expect(info.Os).toBe('linux');
    expect(info.Architecture).toBe(({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch);
    expect(info.Layers.length).toBeGreaterThanOrEqual(2); // busybox's layer and at least the RUN's
    expect(info.Env).toContain('WHO=kiln');
    const { stdout: raw } = await run('skopeo', ['inspect', '--config', `oci-archive:${out}`]);
    const cfg = JSON.parse(raw) as { config: { Cmd: string[]; WorkingDir: string } };
    expect(cfg.config.WorkingDir).toBe('/app');
    expect(cfg.config.Cmd[0]).toBe('sh');
  });

  it('--push: docker pulls the pushed image back from the registry and runs it', async () => {
    const n = nonce();
    const ref = `${testEnv().registry}/kiln-test/x:${n}`;
    await build(undefined, n, ['--push', '-t', ref]);
    const pull = await docker(['pull', ref]);
    expect(pull.code, pull.stderr + pull.stdout).toBe(0);
    toRemove.push(ref);
    const res = await docker(['run', '--rm', '--network', 'none', ref]);
    expect(res.stdout).toBe(expectedOutput(n));
    expect(res.code).toBe(0);
  });
});
