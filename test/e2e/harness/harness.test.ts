// The judge must be right before its verdicts mean anything: these tests feed it archives made by
// hand, where the answer is known, including the layer tricks (whiteouts, opaque dirs, hard links)
// and archives that lie about their digests.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tarStream from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { tmpDir } from '../../helpers/env.js';
import { canonicalCreatedBy, compareSummaries, formatDifferences } from './compare.js';
import { checkExpectation } from './expect.js';
import { readDockerArchive, readOciArchive } from './image-archive.js';
import { applyLayers } from './rootfs.js';
import { summarize, type ImageSummary } from './summary.js';

type Ent = Partial<tarStream.Header> & { name: string; body?: string | Buffer };

async function tar(entries: Ent[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const { body, ...h } of entries) {
    await new Promise<void>((resolve, reject) => {
      pack.entry({ mode: h.type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0, ...h }, body ?? '', (e) => (e ? reject(e) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

const layer0: Ent[] = [
  { name: 'a/', type: 'directory' },
  { name: 'a/f', body: 'f' },
  { name: 'a/sub/', type: 'directory', mode: 0o700 },
  { name: 'a/sub/g', body: 'g' },
  { name: 'b', body: 'b' },
  { name: 'c/', type: 'directory' },
  { name: 'c/x', body: 'x' },
  { name: 'h1', body: 'hard', mode: 0o4755 },
  { name: 'h2', type: 'link', linkname: 'h1' },
  { name: 'h3', type: 'link', linkname: 'h1' },
  { name: 'ln', type: 'symlink', linkname: 'a', mode: 0o755 },
  { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
];
const layer1: Ent[] = [
  { name: 'a/new', body: 'new', uid: 1000, gid: 50 },
  { name: 'a/.wh..wh..opq', body: '' },
  { name: '.wh.b', body: '' },
  { name: 'c', body: 'now a file' },
  { name: 'h3', body: 'replaced' },
  { name: 'deep/implied/file', body: 'i' },
];

describe('applyLayers', () => {
  it('applies whiteouts, opaque dirs, type changes and hard links like an extracting runtime', async () => {
    const { entries, read } = await applyLayers([await tar(layer0), await tar(layer1)], 'test');
    const byPath = Object.fromEntries(entries.map((e) => [e.path, e]));
    expect(Object.keys(byPath)).toEqual(['/a', '/a/new', '/c', '/deep', '/deep/implied', '/deep/implied/file', '/dev', '/h1', '/h2', '/h3', '/ln']);
    // the opaque marker hid a/f and a/sub from the lower layer but not a/new from its own layer
    expect(byPath['/a/new']).toMatchObject({ type: 'file', uid: 1000, gid: 50, size: 3, sha256: sha('new') });
    expect(byPath['/c']).toMatchObject({ type: 'file', sha256: sha('now a file') });
    // h2 keeps sharing h1's inode (and its mode); h3 was replaced by its own file
    expect(byPath['/h1']).toMatchObject({ mode: '4755', hardlinks: ['/h2'] });
    expect(byPath['/h2']).toMatchObject({ mode: '4755', hardlinks: ['/h1'], sha256: sha('hard') });
    expect(byPath['/h3'].hardlinks).toBeUndefined();
    expect(byPath['/ln']).toEqual({ path: '/ln', type: 'symlink', mode: '0777', uid: 0, gid: 0, link: 'a' });
    expect(byPath['/dev']).toMatchObject({ type: 'char', dev: '1:3', mode: '0666' });
    expect(byPath['/deep']).toMatchObject({ type: 'dir', implicit: true });
    expect(read('/h2')?.toString()).toBe('hard');
  });

  it('refuses entries that climb out with ..', async () => {
    await expect(applyLayers([await tar([{ name: '../escape', body: 'x' }])], 'hostile')).rejects.toThrow(/\.\./);
  });

  it('refuses a hard link to nothing', async () => {
    await expect(applyLayers([await tar([{ name: 'l', type: 'link', linkname: 'missing' }])], 'bad')).rejects.toThrow(/does not exist/);
  });
});

function summary(over: Partial<ImageSummary> = {}): ImageSummary {
  return {
    config: { Env: ['PATH=/bin'], Cmd: ['sh'], architecture: 'amd64', os: 'linux' },
    history: [{ createdBy: 'EXPOSE map[80/tcp:{} 53/udp:{}]', emptyLayer: true }],
    layerCount: 1,
    rootfs: [
      { path: '/d', type: 'dir', mode: '0755', uid: 0, gid: 0 },
      { path: '/d/f', type: 'file', mode: '0644', uid: 0, gid: 0, size: 1, sha256: sha('f') },
    ],
    contents: { '/d/f': Buffer.from('f').toString('base64') },
    ...over,
  };
}

describe('compareSummaries', () => {
  it('finds nothing between equal images, and treats EXPOSE history of any BuildKit release alike', () => {
    const kiln = summary({ history: [{ createdBy: 'EXPOSE [53/udp 80/tcp]', emptyLayer: true }] });
    expect(compareSummaries(summary(), kiln)).toEqual([]);
    expect(canonicalCreatedBy('EXPOSE map[80/tcp:{} 53/udp:{}]')).toBe('EXPOSE 53/udp 80/tcp');
  });

  it.each([
    ['COPY --chown=kiln:staff --chmod=640 a.txt /x # buildkit', 'COPY a.txt /x # buildkit'],
    ['ADD --parents a/b /x # buildkit', 'ADD a/b /x # buildkit'],
    ['ARG A=from-cli B=b value', 'ARG A'],
    ['ARG A=default-a B', 'ARG A'],
    ['RUN |3 V=9.9 LATE=x LATE=x /bin/sh -c echo # buildkit', 'RUN |2 V=9.9 LATE=x /bin/sh -c echo # buildkit'],
    ['RUN |2 A=1 B=b value /bin/sh -c x # buildkit', 'RUN |2 A=1 B=b value /bin/sh -c x # buildkit'],
    ['RUN |3 T=linux A=x T=linux /bin/sh -c echo # buildkit', 'RUN |2 T=linux A=x /bin/sh -c echo # buildkit'],
    ['RUN |2 A=1 B=2 /bin/sh -c echo A=1 # buildkit', 'RUN |2 A=1 B=2 /bin/sh -c echo A=1 # buildkit'],
    ['COPY --from=build /out /app # buildkit', 'COPY --from=build /out /app # buildkit'],
  ])('history text %j compares as %j', (text, canonical) => {
    expect(canonicalCreatedBy(text)).toBe(canonical);
  });

  it('forgives only an empty_layer that kiln found for a filesystem step docker committed', () => {
    const docker = summary({
      history: [
        { createdBy: 'RUN /bin/sh -c true # buildkit', emptyLayer: false },
        { createdBy: 'ENV A=1', emptyLayer: true },
      ],
    });
    expect(
      compareSummaries(
        docker,
        summary({
          history: [
            { createdBy: 'RUN /bin/sh -c true # buildkit', emptyLayer: true },
            { createdBy: 'ENV A=1', emptyLayer: true },
          ],
        }),
      ),
    ).toEqual([]);
    expect(
      compareSummaries(
        docker,
        summary({
          history: [
            { createdBy: 'RUN /bin/sh -c true # buildkit', emptyLayer: false },
            { createdBy: 'ENV A=1', emptyLayer: false },
          ],
        }),
      ),
    ).toHaveLength(1);
  });

  it('reports config, history and rootfs differences readably', () => {
    const kiln = summary({
      config: { Env: ['PATH=/bin'], architecture: 'amd64', os: 'linux' },
      history: [{ createdBy: 'EXPOSE 80/tcp', emptyLayer: false }],
      rootfs: [
        { path: '/d/f', type: 'file', mode: '0600', uid: 0, gid: 0, size: 1, sha256: sha('f') },
        { path: '/extra', type: 'dir', mode: '0755', uid: 0, gid: 0 },
        { path: '/extra/a', type: 'file', mode: '0644', uid: 0, gid: 0, size: 0, sha256: sha('') },
      ],
    });
    const text = formatDifferences(compareSummaries(summary(), kiln));
    expect(text).toContain('Cmd\n      docker: ["sh"]\n      kiln:   (unset)');
    expect(text).toMatch(/\[0\] created_by/);
    expect(text).toMatch(/empty_layer docker=true kiln=false/);
    expect(text).toContain('- /d: only in docker');
    expect(text).toContain('~ /d/f: mode docker="0644" kiln="0600"');
    expect(text).toContain('+ /extra: only in kiln (dir 0755 0:0) (and 1 more below it)');
  });

  it('honours ignored paths', () => {
    const kiln = summary({ rootfs: [summary().rootfs[0]] });
    expect(compareSummaries(summary(), kiln, { ignorePaths: ['/d/f'] })).toEqual([]);
  });
});

describe('checkExpectation', () => {
  it('passes what is true and names what is not', () => {
    expect(checkExpectation(summary(), { config: { Cmd: ['sh'], User: null }, files: { '/d/f': { content: 'f', mode: '0644' } }, absent: ['/nope'] })).toEqual(
      [],
    );
    const problems = checkExpectation(summary(), { config: { Cmd: null }, files: { '/d/f': { content: 'g' }, '/missing': {} }, absent: ['/d'] });
    expect(problems).toHaveLength(4);
    expect(problems.join('\n')).toMatch(/config Cmd[\s\S]*\/d\/f: content want "g"[\s\S]*\/missing: missing[\s\S]*\/d: should not exist/);
  });
});

async function ociArchive(dir: string, mutate?: (files: Map<string, Buffer>) => void): Promise<string> {
  const layer = await tar([{ name: 'hello', body: 'hi' }]);
  const gz = gzipSync(layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['A=1'], Cmd: null, Labels: {} },
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha(layer)}`] },
      history: [{ created_by: 'COPY hello / # buildkit' }],
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha(gz)}`, size: gz.length }],
    }),
  );
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length }],
    }),
  );
  const files = new Map<string, Buffer>([
    ['oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}')],
    ['index.json', index],
    [`blobs/sha256/${sha(config)}`, config],
    [`blobs/sha256/${sha(manifest)}`, manifest],
    [`blobs/sha256/${sha(gz)}`, gz],
  ]);
  mutate?.(files);
  const file = join(dir, `oci-${files.size}-${Math.random().toString(36).slice(2)}.tar`);
  await writeFile(file, await tar([...files].map(([name, body]) => ({ name, body }))));
  return file;
}

describe('archive readers', () => {
  it('read an OCI archive and normalise its config', async () => {
    const dir = await tmpDir('kiln-harness-');
    const s = await summarize(await readOciArchive(await ociArchive(dir)), 'oci');
    expect(s.config).toEqual({ Env: ['A=1'], architecture: 'amd64', os: 'linux' });
    expect(s.rootfs).toEqual([{ path: '/hello', type: 'file', mode: '0644', uid: 0, gid: 0, size: 2, sha256: sha('hi') }]);
    expect(s.history).toEqual([{ createdBy: 'COPY hello / # buildkit', emptyLayer: false }]);
  });

  it('reject an OCI archive whose blob does not match its digest', async () => {
    const dir = await tmpDir('kiln-harness-');
    const file = await ociArchive(dir, (files) => {
      for (const [name, body] of files) {
        if (body[0] === 0x1f) files.set(name, gzipSync(Buffer.from('tampered')));
      }
    });
    await expect(readOciArchive(file)).rejects.toThrow(/does not match/);
  });

  it('reject a docker archive whose layer is not the config diff_id', async () => {
    const dir = await tmpDir('kiln-harness-');
    const layer = await tar([{ name: 'x', body: 'x' }]);
    const config = JSON.stringify({ rootfs: { diff_ids: ['sha256:' + '0'.repeat(64)] }, history: [{ created_by: 'x' }] });
    const file = join(dir, 'docker.tar');
    await writeFile(
      file,
      await tar([
        { name: 'manifest.json', body: JSON.stringify([{ Config: 'c.json', Layers: ['l/layer.tar'] }]) },
        { name: 'c.json', body: config },
        { name: 'l/layer.tar', body: layer },
      ]),
    );
    await expect(readDockerArchive(file)).rejects.toThrow(/diff_id/);
  });
});
