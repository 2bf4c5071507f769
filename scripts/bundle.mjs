// `npm run build`, second half: bundles tsc's output (dist/cli/main.js and every kiln module it
// reaches) into dist/bin/kiln.js and a few chunks, which is what the `kiln` command runs.
//
// Why: Node 20 has no compile cache, and resolving, reading and linking ~150 small ES modules was
// about 50 ms of every `kiln` start, which a warm build (embedded or through the daemon) pays in
// full. One file per command keeps that to a few reads. npm packages stay external (resolved from
// node_modules as before: native and WebAssembly modules need their own files), and the dynamic
// imports that keep `kiln --version` light become separate chunks. The input is tsc's JavaScript,
// not the TypeScript, so the bundle has exactly tsc's semantics; dist/bin sits as deep as dist/cli,
// so paths relative to a module (package.json for the version) resolve the same in both.

import { chmodSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(repo, 'dist', 'bin');
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: { kiln: path.join(repo, 'dist', 'cli', 'main.js') },
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  chunkNames: 'chunk-[hash]',
  // tsc's maps are read and chained: stack traces point at src/*.ts.
  sourcemap: 'linked',
  logLevel: 'warning',
});
chmodSync(path.join(outdir, 'kiln.js'), 0o755);
