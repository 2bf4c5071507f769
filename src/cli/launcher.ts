// The `kiln` command itself: `npm run build` compiles this file to dist/bin/kiln.js (CommonJS, in a
// directory whose package.json says so: no ES module loader at start), beside the bundle of the
// whole command line (dist/bin/kiln.cjs, made by scripts/bundle.mjs), and this runs that bundle
// with V8's code cache.
//
// Why: Node 20 has no compile cache (module.enableCompileCache came with Node 22), and compiling
// kiln's JavaScript on every start was about 40 ms of a warm build, embedded or through a daemon
// (a cached hello build: 0.18 s without the cache, 0.14 s with it). So the bundle is compiled as a
// vm.Script given the code V8 produced for it last time: one cache file per command (a build and
// `kiln images` run different code) and Node version and architecture, under .code-cache/ beside
// the bundle (a build through a daemon runs the client's code, an embedded one the server's: two
// files). It is written at the end of the first run of that command that exits with 0, and
// written again whenever V8 rejects it: V8 checks the source, its own version and its flags, so a
// rebuilt bundle or another Node never runs stale code. A directory we cannot write (kiln run by
// a user without rights to its install) only costs the cache; KILN_CODE_CACHE_DIR names another
// place for it, used only when it is this user's and nobody else can write it (trusted() says why).
// KILN_CODE_CACHE=off compiles afresh and writes nothing.
//
// The bundle holds no import(): Node 20 loses a cached script's dynamic-import callback, so
// scripts/bundle.mjs turns them all into require() and refuses a bundle that still has one.
//
// Only Node's built-in modules here, and the default socket's path (a constant): this must stay a
// few lines that load in no time.

import * as fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vm from 'node:vm';
import { DEFAULT_SOCKET } from '../server/address.js';

/** The commands whose code differs enough to deserve their own cache (cli/main.ts dispatches them). */
const COMMANDS = new Set(['build', 'images', 'load', 'run', 'daemon', 'du', 'prune']);
/** The commands that run as a daemon's client or embedded (client/connect.ts chooses). */
const CLIENT_COMMANDS = new Set(['build', 'images', 'du', 'prune']);

const here = path.dirname(fileURLToPath(import.meta.url));
const bundle = path.join(here, 'kiln.cjs');
const useCache = process.env.KILN_CODE_CACHE !== 'off';
const cacheDir = process.env.KILN_CODE_CACHE_DIR || path.join(here, '.code-cache');
const cacheFile = path.join(cacheDir, `${cacheKey(process.argv.slice(2))}-${process.version}-${process.arch}.bin`);

let cached: Buffer | undefined;
if (useCache && trusted(cacheDir)) {
  try {
    cached = fs.readFileSync(cacheFile);
  } catch {
    // none yet: this run makes it
  }
}

const script = new vm.Script(Module.wrap(fs.readFileSync(bundle, 'utf8')), {
  filename: bundle,
  cachedData: cached,
});

if (useCache && (cached === undefined || script.cachedDataRejected === true)) {
  process.once('exit', (code) => {
    if (code === 0) saveCache(script);
  });
}

const mod = { exports: {} };
(script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void)(
  mod.exports,
  createRequire(bundle),
  mod,
  bundle,
  here,
);

function cacheKey(args: string[]): string {
  const command = args.find((a) => COMMANDS.has(a)) ?? 'other';
  return CLIENT_COMMANDS.has(command) && likelyThroughDaemon(args) ? `${command}-remote` : command;
}

/**
 * connect.ts's choice, guessed without asking the daemon (a wrong guess costs only speed: V8 takes
 * either cache, they just hold different functions): a daemon named, or none named, no root given
 * and a socket at the default path.
 */
function likelyThroughDaemon(args: string[]): boolean {
  const given = (flag: string) => args.some((a) => a === flag || a.startsWith(`${flag}=`));
  if (process.env.KILN_HOST || given('--addr')) return true;
  if (given('--root') || process.env.KILN_ROOT !== undefined) return false;
  try {
    return fs.lstatSync(process.env.KILN_DEFAULT_SOCKET || DEFAULT_SOCKET).isSocket();
  } catch {
    return false;
  }
}

/**
 * Whether code found in `dir` may be run: a real directory of this user that nobody else can write.
 * A code cache is code (V8 runs what it holds, and its checks guard against staleness, not against
 * someone who writes one on purpose), so one from a place others can write is never read, and
 * none is written there.
 */
function trusted(dir: string): boolean {
  try {
    const st = fs.lstatSync(dir);
    return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/** Writes the code V8 has compiled so far (more than at start: functions compile when first run). */
function saveCache(compiled: vm.Script): void {
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(cacheDir, { recursive: true, mode: 0o755 });
    if (!trusted(cacheDir)) return;
    fs.writeFileSync(tmp, compiled.createCachedData(), { mode: 0o644, flag: 'wx' });
    fs.renameSync(tmp, cacheFile);
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}
