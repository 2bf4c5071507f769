import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { testEnv } from '../helpers/env.js';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

async function runCapture(srv: ReturnType<typeof server>, name: string, args: string[] = []) {
  let out = '';
  const code = await srv.runImage(name, { args, network: 'none', onStdout: (b) => (out += b.toString()), onStderr: (b) => (out += b.toString()) });
  return { code, out };
}

describe('kiln load and kiln run', () => {
  it('loads an OCI layout directory under a given name and runs it', async () => {
    const srv = server(tracked(kilnRoot()));
    try {
      const recs = await srv.loadImages(testEnv().busyboxOci, 'demo/busybox:1');
      expect(recs.map((r) => r.name)).toEqual(['docker.io/demo/busybox:1']);
      const r = await runCapture(srv, 'demo/busybox:1', ['sh', '-c', 'echo running; exit 4']);
      expect(r).toEqual({ code: 4, out: 'running\n' });
    } finally {
      await srv.close();
    }
  });

  it('round-trips a built image through an OCI archive into a fresh root, names included', async () => {
    const archive = tracked(path.join(os.tmpdir(), `kiln-rt-${process.pid}.tar`));
    const ctx = tracked(makeContext({ Dockerfile: 'FROM busybox\nRUN echo built-image > /msg\nCMD ["cat", "/msg"]\n' }));
    const a = server(tracked(kilnRoot()));
    try {
      await build(a, ctx, { outputs: [{ type: 'oci', names: ['rt/app:v1'], dest: archive }] });
    } finally {
      await a.close();
    }
    const b = server(tracked(kilnRoot()));
    try {
      expect((await b.loadImages(archive)).map((r) => r.name)).toEqual(['docker.io/rt/app:v1']);
      expect(await runCapture(b, 'rt/app:v1')).toEqual({ code: 0, out: 'built-image\n' });
    } finally {
      await b.close();
    }
  });

  it('refuses a layout whose blob does not match its digest, and stores nothing under that name', async () => {
    const copy = tracked(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-tamper-')));
    fs.cpSync(testEnv().busyboxOci, copy, { recursive: true });
    const index = JSON.parse(fs.readFileSync(path.join(copy, 'index.json'), 'utf8'));
    const manifestFile = path.join(copy, 'blobs/sha256', index.manifests[0].digest.slice(7));
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
    const layerFile = path.join(copy, 'blobs/sha256', manifest.layers[0].digest.slice(7));
    const bytes = fs.readFileSync(layerFile);
    bytes[bytes.length - 10] ^= 0xff; // same size, different content
    fs.chmodSync(layerFile, 0o644);
    fs.writeFileSync(layerFile, bytes);
    const srv = server(tracked(kilnRoot()));
    try {
      await expect(srv.loadImages(copy, 'tampered:1')).rejects.toThrow(/digest mismatch|hashes to/);
      expect(await srv.listImages()).toEqual([]);
    } finally {
      await srv.close();
    }
  });
});
