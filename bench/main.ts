// `npm run bench`: kiln against Docker's BuildKit and buildah on generated workloads. Brings the test
// environment up (registry, dockerd), runs, prints a table, writes JSON, and leaves the machine as it
// found it: temporary directory removed, images it built removed, the environment down if it started it.

import { existsSync, readFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, USAGE, UsageError, type BenchArgs } from './args.js';
import { BUILDER_LABELS, BuildahBuilder, DockerBuilder, KilnBuilder, KilnDaemonBuilder, removeTree, type Builder } from './builders.js';
import { killRunning, run } from './proc.js';
import {
  checkTargets,
  formatBuilders,
  formatDaemon,
  formatTable,
  formatTargets,
  summarizeCells,
  uploadSummary,
  type BenchResults,
  type BuilderStatus,
  type Cell,
  type DaemonReport,
  type Machine,
} from './report.js';
import { Interrupted, runWorkload } from './runner.js';
import { testEnvUp, type TestEnvHandle } from './testenv.js';
import { contextDigest, WORKLOADS, writeContext, type ContextFile } from './workloads.js';

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

/** The repository: the nearest directory above this file whose package.json is kiln's. */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'kiln') return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no kiln package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

function machine(): Machine {
  const cpus = os.cpus();
  let osName = os.type();
  try {
    osName = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // keep os.type()
  }
  return {
    cores: cpus.length,
    memoryBytes: os.totalmem(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    kernel: os.release(),
    os: osName,
    node: process.version,
    loadavgStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/**
 * A private copy of kiln's compiled code (dist/ without the harness, package.json, a link to
 * node_modules): other developers rebuild dist/ while they work, and a benchmark must measure one
 * kiln from its first run to its last.
 */
async function snapshotKiln(repo: string, dest: string): Promise<string> {
  const dist = path.join(repo, 'dist');
  const cli = path.join(dest, 'dist', 'bin', 'kiln');
  // Not compiled (npm run build failed): the probe then reports kiln as missing.
  if (!existsSync(path.join(dist, 'bin', 'kiln'))) return cli;
  const skip = path.join(dist, 'bench');
  await fsp.cp(dist, path.join(dest, 'dist'), { recursive: true, filter: (src) => src !== skip && !src.endsWith('.map') });
  await fsp.copyFile(path.join(repo, 'package.json'), path.join(dest, 'package.json'));
  await fsp.symlink(path.join(repo, 'node_modules'), path.join(dest, 'node_modules'));
  return cli;
}

/** The commit kiln was built from, and how many files under src/ differ from it. */
async function kilnRevision(repo: string): Promise<string> {
  const head = await run(['git', '-C', repo, 'rev-parse', '--short', 'HEAD'], { timeoutMs: 30_000 });
  const dirty = await run(['git', '-C', repo, 'status', '--porcelain', '--', 'src'], { timeoutMs: 30_000 });
  if (head.code !== 0) return 'unknown';
  const n = dirty.output.split('\n').filter((l) => l.trim() !== '').length;
  return `${head.output.trim()}${n > 0 ? ` + ${n} uncommitted file${n === 1 ? '' : 's'} under src/` : ''}`;
}

const NOTES = [
  'Times are wall clock from starting the client command to its exit; dockerd runs all along, kiln (embedded) starts a Node process per build.',
  'cold: kiln gets a fresh --root into which a throw-away build (FROM base + RUN true) pulled and unpacked the base; Docker gets `docker builder prune -af` and the previous image removed; buildah gets every image but the bases removed. Base images stay in all three.',
  'kiln -t (no push) keeps uncompressed layers, as Docker 20.10 (graph-driver store) and buildah (containers/storage) do; a push or an archive compresses them once and keeps the blobs.',
  'export: kiln = a fully cached build with -o type=oci (its gzip blobs made by the warm-up and kept); Docker = `docker save` (docker format, uncompressed: 20.10 has no OCI export without buildx); buildah = `buildah push IMG oci-archive:F` (compresses every layer each time).',
  'kiln runs from a copy of dist/ made for the run, started as the installed `kiln` command (dist/bin/kiln: it hands NODE_EXTRA_CA_CERTS, when set, to kiln instead of Node, which would parse it at every start); its V8 code cache (dist/bin/.code-cache) is written there by the first run of each command (a warm-up).',
  'buildah bud runs stages one after the other unless given --jobs; it is run as the brief says, without --jobs.',
  "Before each timed run the bench runs sync (untimed): what the previous run left dirty in the page cache is written out first, so no builder pays for another's writeback.",
  "kiln peak RSS is GNU time's maximum resident set size of the largest process of the build (the kiln Node process, worker threads included).",
  "kiln (daemon): one `kiln daemon` (its own --root and socket, the same registry mirror as embedded kiln); each build is a `kiln build --addr` client process, timed from its start to its exit. The client reaches the daemon through a counting proxy in the bench process (a second unix socket piped to the daemon's), which measures the bytes each build sends on the socket.",
  'kiln (daemon) cold: a running daemon cannot be given a fresh root, so each cold run restarts the daemon on a fresh root, makes the base present with the same throw-away build as embedded kiln (FROM base + RUN true, through the daemon), then times the build. warm, edit and export then run against that daemon.',
  'kiln (daemon) memory: VmRSS and VmHWM from /proc/PID/status of the last daemon process, read after the last scenario, before SIGTERM.',
  "concurrent: four different builds (FROM busybox, RUN echo N <nonce> && sleep 2, one context each) started at the same moment; the time is from the first start to the last exit. Each run rewrites the RUNs with a new nonce, so no run is a cache hit. kiln (embedded): four processes on one root, which wait for each other's lock; kiln (daemon): four clients of one daemon; Docker: four `docker build`; buildah: four `buildah bud` on one storage.",
  'The machine is shared with other developers; the load average at start and end is recorded.',
];

async function main(args: BenchArgs): Promise<number> {
  const repo = repoRoot();
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping the running command and cleaning up`);
    killRunning();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = new Date();
  const mach = machine();
  let env: TestEnvHandle | undefined;
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-bench-'));
  const builders: Builder[] = [];
  try {
    env = await testEnvUp(repo, log);
    // After `up`, which compiles dist/.
    const kilnCli = await snapshotKiln(repo, path.join(work, 'kiln-app'));
    const revision = await kilnRevision(repo);
    const daemon = new KilnDaemonBuilder({ cli: kilnCli, work: path.join(work, 'kiln-daemon'), registry: env.registry });
    const all: Builder[] = [
      new KilnBuilder({ cli: kilnCli, work: path.join(work, 'kiln'), registry: env.registry }),
      daemon,
      new DockerBuilder({ docker: env.docker, host: env.dockerHost }),
      new BuildahBuilder({ buildah: '/usr/bin/buildah', runc: '/usr/sbin/runc', work: path.join(work, 'buildah'), registry: env.registry }),
    ];
    const statuses: BuilderStatus[] = [];
    for (const b of all) {
      const label = BUILDER_LABELS[b.id];
      if (!args.builders.includes(b.id)) {
        statuses.push({ id: b.id, label, available: false, reason: 'not selected (--builders)' });
        continue;
      }
      const p = await b.probe();
      if (p.ok) {
        statuses.push({ id: b.id, label, available: true, version: b.id.startsWith('kiln') ? `${p.version} (${revision})` : p.version });
        builders.push(b);
      } else {
        statuses.push({ id: b.id, label, available: false, reason: `missing: ${p.reason}` });
        log(`${label} is missing: ${p.reason}`);
      }
    }
    if (builders.length === 0) throw new Error('no builder available');

    const exportDir = path.join(work, 'export');
    await fsp.mkdir(exportDir, { recursive: true });
    const cells: Cell[] = [];
    const workloads: BenchResults['workloads'] = [];
    for (const name of args.workloads) {
      const w = WORKLOADS[name];
      const dir = path.join(work, 'ctx', name);
      const files: ContextFile[] = [...w.files(args.seed)];
      await writeContext(dir, files);
      workloads.push({ name, description: w.description, files: files.length, contextDigest: contextDigest(files) });
      log(`${name}: ${w.description} (${files.length} context files)`);
      cells.push(
        ...(await runWorkload(w, { dir, dockerfile: path.join(dir, 'Dockerfile') }, builders, {
          warmups: args.warmups,
          runs: args.runs,
          seed: args.seed,
          exportDir,
          log,
          interrupted: () => interrupted,
        })),
      );
      // The exported tarballs of a workload are not needed any more (bigfile's are ~1.5 GB).
      await fsp.rm(exportDir, { recursive: true, force: true });
      await fsp.mkdir(exportDir, { recursive: true });
      await fsp.rm(dir, { recursive: true, force: true });
    }

    mach.loadavgEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
    const { results, ratios } = summarizeCells(cells);
    let daemonReport: DaemonReport | undefined;
    if (builders.includes(daemon)) {
      // Stopped here rather than in cleanup: its memory after the run goes into the results.
      await daemon.stop();
      const last = daemon.instances.at(-1);
      daemonReport = { instances: daemon.instances };
      if (last?.memory) daemonReport.final = last.memory;
      const upload = uploadSummary(results);
      if (upload) daemonReport.upload = upload;
      log(`kiln daemon log: ${daemon.logFile}${args.keep ? '' : ' (removed with the temporary directory; --keep keeps it)'}`);
    }
    const targets = checkTargets(results, daemonReport?.upload);
    const doc: BenchResults = {
      schema: 1,
      date: started.toISOString(),
      mode: args.quick ? 'quick' : 'full',
      warmups: args.warmups,
      runs: args.runs,
      seed: args.seed,
      machine: mach,
      builders: statuses,
      workloads,
      results,
      ratios,
      targets,
      notes: NOTES,
    };
    if (daemonReport) doc.daemon = daemonReport;
    const out = path.resolve(args.out);
    await fsp.writeFile(out, JSON.stringify(doc, null, 2) + '\n');

    const memGiB = (mach.memoryBytes / 2 ** 30).toFixed(1);
    const lines = [
      `kiln benchmark, ${doc.mode} run (${args.warmups} warm-up, ${args.runs} counted per scenario), ${started.toISOString().slice(0, 10)}`,
      `machine: ${mach.cores} cores (${mach.cpuModel}), ${memGiB} GiB, ${mach.os}, Linux ${mach.kernel}, Node ${mach.node}; load average ${mach.loadavgStart.join(' ')} at start, ${mach.loadavgEnd.join(' ')} at end`,
      '',
      formatTable(results, ratios, statuses),
      '',
      'Seconds: median (min–max) of the counted runs; ratios are of medians (below 1: kiln is faster).',
      '',
      formatBuilders(statuses),
    ];
    if (daemonReport) lines.push(formatDaemon(daemonReport));
    if (targets.length > 0) lines.push('', 'Targets (medians of this run):', formatTargets(targets));
    const failed = results.filter((r) => r.error);
    if (failed.length > 0) {
      lines.push('', 'Failures:');
      for (const f of failed) lines.push(`- ${f.error!.split('\n')[0]}`);
    }
    lines.push('', `JSON: ${out}`);
    process.stdout.write(lines.join('\n') + '\n');
    return failed.length > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof Interrupted || interrupted) {
      log('interrupted: no results written');
      return 130;
    }
    throw err;
  } finally {
    for (const b of builders) {
      await b.cleanup().catch((e: Error) => log(`warning: ${b.id} cleanup: ${e.message}`));
    }
    if (args.keep) log(`kept ${work}`);
    else await removeTree(work).catch((e: Error) => log(`warning: removing ${work}: ${e.message}`));
    await env?.down();
  }
}

let args: BenchArgs;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  throw err;
}
if (args.help) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
main(args).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`bench: error: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
