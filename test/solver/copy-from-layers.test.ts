// A COPY --from of plain files reads them from the layer of the source stage that a mount would
// show them from, without mounting the stage. What arrives must be what a mount shows: the newest
// layer's version of a file changed in a later step, a file only a lower layer has, its mode, owner
// and times; and what a later step deleted or hid is an error, as through a mount.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { build, kilnRoot, makeContext, server } from './helpers.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) fs.rmSync(d, { recursive: true, force: true });
});
const tracked = <T extends string>(d: T): T => (cleanup.push(d), d);

const STAGE = [
  'FROM busybox AS src',
  'RUN mkdir -p /d/sub /hidden && echo old > /d/changed && echo low > /d/sub/low && echo gone > /d/gone && echo h > /hidden/f && chmod 0604 /d/sub/low && chown 12:34 /d/sub/low && touch -d @1500000000 /d/sub/low',
  'RUN echo new > /d/changed && rm /d/gone && rm -rf /hidden && mkdir /hidden && ln -s sub /d/link',
];

describe('COPY --from of plain files, read from the stage layer', () => {
  it('copies what a mount of the stage shows: the newest version, a lower-layer file with its metadata', async () => {
    const root = tracked(kilnRoot());
    const out = tracked(makeContext({}));
    const ctx = tracked(
      makeContext({
        Dockerfile: [...STAGE, 'FROM busybox', 'COPY --from=src /d/changed /d/sub/low /out/', 'COPY --from=src d/sub/low /single', ''].join('\n'),
      }),
    );
    const srv = server(root);
    try {
      await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
    } finally {
      await srv.close();
    }
    expect(fs.readFileSync(path.join(out, 'out/changed'), 'utf8')).toBe('new\n');
    expect(fs.readFileSync(path.join(out, 'out/low'), 'utf8')).toBe('low\n');
    for (const f of ['out/low', 'single']) {
      const st = fs.lstatSync(path.join(out, f));
      expect(st.mode & 0o7777, f).toBe(0o604);
      expect(st.mtimeMs, f).toBe(1_500_000_000_000);
    }
  });

  it('a file a later step removed, or hid below an opaque directory, is not found; a link on the way is followed', async () => {
    const root = tracked(kilnRoot());
    const srv = server(root);
    try {
      for (const [src, message] of [
        ['/d/gone', /d\/gone.*(not found|no such file)/i],
        ['/hidden/f', /hidden\/f.*(not found|no such file)/i],
      ] as const) {
        const ctx = tracked(makeContext({ Dockerfile: [...STAGE, 'FROM busybox', `COPY --from=src ${src} /x`, ''].join('\n') }));
        await expect(build(srv, ctx)).rejects.toThrow(message);
      }
      const out = tracked(makeContext({}));
      const ctx = tracked(makeContext({ Dockerfile: [...STAGE, 'FROM busybox', 'COPY --from=src /d/link/low /via-link', ''].join('\n') }));
      await build(srv, ctx, { outputs: [{ type: 'local', dest: out }] });
      expect(fs.readFileSync(path.join(out, 'via-link'), 'utf8')).toBe('low\n');
    } finally {
      await srv.close();
    }
  });
});
