// Multi-platform builds through a real `kiln daemon`: the request (its list of platforms) crosses
// HTTP, the outputs come back to the client (an OCI layout with an index, one directory per
// platform); and the Docker Engine API's `platform` parameter, which builds one platform.
import * as fs from 'node:fs';
import * as path from 'node:path';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killStarted, kilnClient, makeContext, minimalBuildRequest, request, startDaemon, tempDir, type DaemonProc } from '../helpers/daemon.js';

const CROSS = [
  'FROM --platform=$BUILDPLATFORM busybox AS build',
  'ARG TARGETARCH',
  'RUN echo "$TARGETARCH" > /arch',
  'FROM scratch',
  'COPY --from=build /arch /',
  '',
].join('\n');

let d: DaemonProc;
let sock: string;
const cleanup: string[] = [];

beforeAll(async () => {
  sock = path.join(tempDir('kiln-platform-docker-api-'), 'docker.sock');
  cleanup.push(path.dirname(sock));
  d = await startDaemon({ args: ['--docker-api', `unix://${sock}`] });
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await killStarted();
  for (const dir of cleanup) fs.rmSync(dir, { recursive: true, force: true });
});

async function tarOf(files: Record<string, string>): Promise<Buffer> {
  const pack = tar.pack();
  for (const [name, content] of Object.entries(files)) pack.entry({ name, mode: 0o644 }, content);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('multi-platform builds through the daemon', () => {
  it('kiln build --addr --platform A,B: an OCI index and one directory per platform come back', async () => {
    const ctx = makeContext({ Dockerfile: CROSS });
    const out = tempDir('kiln-platform-out-');
    cleanup.push(ctx, out);
    const r = await kilnClient([
      'build',
      '--addr',
      d.addr,
      '--progress',
      'plain',
      '--platform',
      'linux/amd64,linux/arm64',
      '-o',
      `type=oci,dest=${out}/img.tar`,
      '-o',
      `type=local,dest=${out}/fs`,
      ctx,
    ]);
    expect(r.stderr).not.toContain('ERROR');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('[linux/amd64->arm64 build 2/2] RUN echo "$TARGETARCH" > /arch');
    expect(fs.readdirSync(path.join(out, 'fs')).sort()).toEqual(['linux_amd64', 'linux_arm64']);
    expect(fs.readFileSync(path.join(out, 'fs', 'linux_arm64', 'arch'), 'utf8')).toBe('arm64\n');
    expect(fs.readFileSync(path.join(out, 'fs', 'linux_amd64', 'arch'), 'utf8')).toBe('amd64\n');

    const layout = path.join(out, 'layout');
    fs.mkdirSync(layout);
    const { spawnSync } = await import('node:child_process');
    expect(spawnSync('tar', ['-xf', path.join(out, 'img.tar'), '-C', layout]).status).toBe(0);
    const blob = (digest: string) =>
      JSON.parse(fs.readFileSync(path.join(layout, 'blobs', 'sha256', digest.slice(7)), 'utf8')) as { manifests: { digest: string; platform?: unknown }[] };
    const top = blob(JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8')).manifests[0].digest as string);
    expect(top.manifests.map((m) => m.platform)).toEqual([
      { architecture: 'amd64', os: 'linux' },
      { architecture: 'arm64', os: 'linux' },
    ]);
  });

  it('a daemon refuses a malformed list of platforms', async () => {
    const r = await request(d.socket, 'POST', '/v1/builds', JSON.stringify(minimalBuildRequest({ platforms: ['linux/amd64'] })), {
      'content-type': 'application/json',
    });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).message).toContain('"platforms" must be a list');
  });
});

describe("the Docker Engine API's platform parameter", () => {
  it('builds for that platform (the build stage on this machine), and refuses a list', async () => {
    const body = await tarOf({ Dockerfile: CROSS });
    const tag = `kiln-platform-api:${Date.now()}`;
    const r = await request(sock, 'POST', `/v1.41/build?t=${encodeURIComponent(tag)}&platform=linux%2Farm64`, body, { 'content-type': 'application/x-tar' });
    expect(r.status, r.body).toBe(200);
    expect(r.body).not.toContain('errorDetail');
    const inspect = await request(sock, 'GET', `/v1.41/images/${encodeURIComponent(tag)}/json`);
    expect(inspect.status).toBe(200);
    expect(JSON.parse(inspect.body)).toMatchObject({ Architecture: 'arm64', Os: 'linux' });

    const multi = await request(sock, 'POST', `/v1.41/build?platform=${encodeURIComponent('linux/amd64,linux/arm64')}`, body, {
      'content-type': 'application/x-tar',
    });
    expect(multi.status).toBe(400);
    expect(JSON.parse(multi.body).message).toContain('the Docker API builds one platform');
  });
});
