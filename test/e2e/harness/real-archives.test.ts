// The judge on real images: one image that Docker built, read once from `docker save` and once
// re-packed by skopeo as a gzip-compressed OCI archive, must compare equal; the same with one file
// changed must not. This proves the OCI path (the one kiln's output takes) against an independent
// writer before it is trusted with kiln's images.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { docker, tmpDir } from '../../helpers/env.js';
import { compareSummaries, formatDifferences } from './compare.js';
import { readDockerArchive, readOciArchive } from './image-archive.js';
import { summarize } from './summary.js';

const run = promisify(execFile);
const tags: string[] = [];

afterAll(async () => {
  for (const t of tags) await docker(['rmi', '-f', t]);
});

async function dockerImage(dir: string, name: string, dockerfile: string): Promise<string> {
  await writeFile(join(dir, 'Dockerfile'), dockerfile);
  const tag = `kiln-diff-selftest/${name}:latest`;
  const b = await docker(['build', '--network', 'host', '-t', tag, dir]);
  expect(b.code, b.stderr).toBe(0);
  tags.push(tag);
  const tar = join(dir, `${name}.tar`);
  const s = await docker(['save', '-o', tar, tag]);
  expect(s.code, s.stderr).toBe(0);
  return tar;
}

const BASE = `FROM busybox
RUN echo shared > /a && ln /a /b && chmod 4755 /a && mkdir -p /d && mknod /d/null c 1 3
RUN rm /bin/vi && rm -rf /home/kiln && mkdir /home/kiln && echo x > /home/kiln/x
ENV A=1
EXPOSE 80/udp
`;

describe('harness on real archives', () => {
  it('a docker-save image and its skopeo OCI copy compare equal; a changed image does not', async () => {
    const dir = await tmpDir('kiln-diff-selftest-');
    const saved = await dockerImage(dir, 'base', BASE);
    const oci = join(dir, 'base-oci.tar');
    await run('skopeo', ['copy', '--dest-compress', '--dest-compress-format', 'gzip', `docker-archive:${saved}`, `oci-archive:${oci}`]);

    const fromDocker = await summarize(await readDockerArchive(saved), 'docker-save');
    const fromOci = await summarize(await readOciArchive(oci), 'skopeo-oci');
    expect(formatDifferences(compareSummaries(fromDocker, fromOci))).toBe('');
    expect(fromDocker.rootfs.find((e) => e.path === '/a')).toMatchObject({ mode: '4755', hardlinks: ['/b'] });
    expect(fromDocker.rootfs.find((e) => e.path === '/bin/vi')).toBeUndefined();
    expect(fromDocker.rootfs.filter((e) => e.path.startsWith('/home/kiln'))).toEqual([
      { path: '/home/kiln', type: 'dir', mode: '0755', uid: 0, gid: 0 },
      expect.objectContaining({ path: '/home/kiln/x', type: 'file' }),
    ]);

    const changed = await dockerImage(dir, 'changed', BASE.replace('chmod 4755 /a', 'chmod 0755 /a').replace('ENV A=1', 'ENV A=2'));
    const diffs = compareSummaries(fromDocker, await summarize(await readDockerArchive(changed), 'changed'));
    const text = formatDifferences(diffs);
    expect(text).toContain('~ /a: mode docker="4755" kiln="0755"');
    expect(text).toContain('~ /b: mode docker="4755" kiln="0755"');
    expect(text).toMatch(/Env\n\s+docker: \[.*"A=1"\]\n\s+kiln: +\[.*"A=2"\]/);
    expect(text).toMatch(/history: \d+ difference/);
  }, 300_000);
});
