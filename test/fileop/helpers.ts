// Shared fixtures for the COPY/ADD tests: a context directory and a destination rootfs with its own
// /etc/passwd and /etc/group (names that do not exist on the host, so a host lookup would fail).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { copy } from '../../src/fileop/copy.js';
import type { CopySource, CopySpec, CopySummary } from '../../src/fileop/types.js';

export interface Fixture {
  base: string;
  ctx: string;
  rootfs: string;
  write(rel: string, content?: string, dir?: string): string;
  run(spec: Partial<CopySpec>, source?: CopySource): Promise<CopySummary>;
  dst(rel: string): string;
  cleanup(): void;
}

export function makeFixture(): Fixture {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fileop-'));
  const ctx = path.join(base, 'ctx');
  const rootfs = path.join(base, 'rootfs');
  fs.mkdirSync(ctx);
  fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nkilnuser:x:4321:4322::/home/kiln:/bin/sh\n');
  fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nkilngroup:x:4322:\nkilnstaff:x:50:\n');
  const write = (rel: string, content = rel, dir = ctx) => {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
    return p;
  };
  return {
    base,
    ctx,
    rootfs,
    write,
    dst: (rel) => path.join(rootfs, rel),
    run: (spec, source) =>
      copy({
        spec: {
          instruction: 'COPY',
          sources: [],
          dest: '/',
          destIsDir: false,
          location: { file: 'Dockerfile', line: 3, endLine: 3 },
          ...spec,
        },
        source: source ?? { kind: 'context', dir: ctx },
        destRoot: rootfs,
      }),
    cleanup: () => fs.rmSync(base, { recursive: true, force: true }),
  };
}
