// `npm run build`, second half: bundles tsc's output (dist/cli/main.js and every kiln module it
// reaches) into one CommonJS file, dist/bin/kiln.cjs, and puts the launcher (src/cli/launcher.ts,
// compiled, as CommonJS) beside it as dist/bin/kiln.js, which the `kiln` command (dist/bin/kiln,
// from src/cli/kiln.sh) runs.
//
// Why one file: resolving, reading and linking ~150 small ES modules was about 50 ms of every
// `kiln` start. Why CommonJS: the launcher compiles the bundle as a vm.Script with V8's code cache
// (Node 20 has no compile cache for modules; launcher.ts says more), and a script is what V8 can
// cache. The dynamic imports that keep `kiln --version` light stay lazy: esbuild turns each
// imported module into an init function that runs on first import, and import() of a package or
// a built-in into require().
//
// Packages: those Node can require() stay external (resolved from node_modules as before: native
// and WebAssembly modules need their own files, piscina starts workers from its own); ES-only ones
// (p-queue, minimatch) cannot be required from CommonJS in Node 20, so they are bundled. The input
// is tsc's JavaScript, not the TypeScript, so the bundle has exactly tsc's semantics; dist/bin sits
// as deep as dist/cli, so paths relative to a module (package.json for the version) resolve the
// same in both, and import.meta.url becomes the bundle's own URL.

import { chmodSync, copyFileSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdir = path.join(repo, 'dist', 'bin');
const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8'));

/** True when Node 20 can require() the package: it is not ES-only. */
function requirable(name) {
  // Read by path: an ES-only package may not export its package.json.
  const meta = JSON.parse(readFileSync(path.join(repo, 'node_modules', name, 'package.json'), 'utf8'));
  if (meta.type !== 'module') return true;
  const hasRequire = (e) => e !== null && typeof e === 'object' && ('require' in e || Object.values(e).some(hasRequire));
  return hasRequire(meta.exports);
}
const external = Object.keys(pkg.dependencies ?? {}).filter(requirable);

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
const bundle = path.join(outdir, 'kiln.cjs');
await build({
  entryPoints: [path.join(repo, 'dist', 'cli', 'main.js')],
  outfile: bundle,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: [...external, ...external.map((e) => `${e}/*`)],
  inject: [path.join(repo, 'scripts', 'bundle-import-meta.js')],
  // import() becomes require(): Node 20 loses the dynamic-import callback of a script compiled
  // with cached data (launcher.ts), and everything imported dynamically can be required.
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': 'bundleUrl' },
  // tsc's maps are read and chained: stack traces point at src/*.ts.
  sourcemap: 'linked',
  logLevel: 'warning',
});
// The launcher wraps the bundle in a function: a `#!` line (from main.ts) would not parse there.
// It becomes an empty line, so the source map's line numbers still hold.
const code = readFileSync(bundle, 'utf8');
if (code.startsWith('#!')) writeFileSync(bundle, code.slice(code.indexOf('\n')));
const dynamic = code.match(/.*\bimport\(.*/);
if (dynamic) throw new Error(`dist/bin/kiln.cjs still has an import(), which fails under the code cache: ${dynamic[0].trim()}`);

// The launcher, as CommonJS too, in a directory whose package.json says so: Node then starts it
// without its ES module loader (resolving, reading and linking asynchronously cost ~10 ms of every
// `kiln` start, for one file with no imports but built-ins).
await build({
  entryPoints: [path.join(repo, 'dist', 'cli', 'launcher.js')],
  outfile: path.join(outdir, 'kiln.js'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  inject: [path.join(repo, 'scripts', 'bundle-import-meta.js')],
  define: { 'import.meta.url': 'bundleUrl' },
  banner: { js: '#!/usr/bin/env node' },
  logLevel: 'warning',
});
writeFileSync(path.join(outdir, 'package.json'), '{ "type": "commonjs" }\n');
chmodSync(path.join(outdir, 'kiln.js'), 0o755);

// The `kiln` command itself (package.json "bin"): a few lines of sh that start the launcher with
// NODE_EXTRA_CA_CERTS handed over to kiln, which Node 20 would otherwise parse at every start
// (src/cli/kiln.sh says why).
copyFileSync(path.join(repo, 'src', 'cli', 'kiln.sh'), path.join(outdir, 'kiln'));
chmodSync(path.join(outdir, 'kiln'), 0o755);
