// The three builders behind one interface: kiln (embedded mode, its compiled CLI), Docker's
// BuildKit (the test daemon) and buildah. Each keeps its images in its own local store, and each
// knows what "cold" means for itself: no build cache, the base image present.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { check, run, type RunResult } from './proc.js';
import type { Workload } from './workloads.js';

export type BuilderId = 'kiln' | 'buildkit' | 'buildah';
export const BUILDER_IDS: readonly BuilderId[] = ['kiln', 'buildkit', 'buildah'];

export const BUILDER_LABELS: Readonly<Record<BuilderId, string>> = {
  kiln: 'kiln (embedded)',
  buildkit: 'BuildKit (docker)',
  buildah: 'buildah',
};

export type Probe = { ok: true; version: string } | { ok: false; reason: string };

/** Where a workload's context is on disk. */
export interface Context {
  dir: string;
  dockerfile: string;
}

export interface Builder {
  readonly id: BuilderId;
  /** Whether the builder is installed and answers, and its version. */
  probe(): Promise<Probe>;
  /** Makes the base image present and the build cache empty (untimed). */
  resetCold(w: Workload): Promise<void>;
  /** One timed build of W, storing the image in the builder's local store under imageName(W). */
  build(w: Workload, ctx: Context): Promise<RunResult>;
  /** One timed export of the image built last to an OCI (or, for Docker, docker-format) tarball. */
  exportImage(w: Workload, ctx: Context, dest: string): Promise<RunResult>;
  /** Removes what the benchmark left in the builder's stores. */
  cleanup(): Promise<void>;
}

export const BUILD_TIMEOUT_MS = 20 * 60_000;
const SETUP_TIMEOUT_MS = 10 * 60_000;
const PROBE_TIMEOUT_MS = 30_000;

export function imageName(w: Workload): string {
  return `kiln-bench/${w.name}:latest`;
}

function firstLine(r: RunResult): string {
  return r.output.trim().split('\n')[0] ?? '';
}

// ---- kiln ------------------------------------------------------------------------------------

export interface KilnOptions {
  /** The compiled CLI, dist/cli/main.js. */
  cli: string;
  /** A directory of the benchmark's own (roots, configs). */
  work: string;
  /** host:port of the registry kiln uses as its Docker Hub mirror. */
  registry: string;
}

/**
 * kiln in embedded mode: one process per build, state in a --root directory. Cold = a fresh root
 * into which a throw-away build (FROM base + RUN true) pulled and unpacked the base image: the base
 * is present as it is in Docker's and buildah's stores, no step of the workload is cached.
 */
export class KilnBuilder implements Builder {
  readonly id = 'kiln' as const;
  private readonly roots = new Map<string, string>();
  private generation = 0;
  private readonly config: string;

  constructor(private readonly opts: KilnOptions) {
    this.config = path.join(opts.work, 'kiln-config.json');
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, KILN_CONFIG: this.config, BUILDKIT_PROGRESS: '' };
  }

  private cmd(root: string, args: string[]): string[] {
    return [process.execPath, this.opts.cli, '--root', root, ...args];
  }

  async probe(): Promise<Probe> {
    await fsp.mkdir(this.opts.work, { recursive: true });
    await fsp.writeFile(this.config, JSON.stringify({ 'registry-mirrors': [`http://${this.opts.registry}`] }));
    try {
      await fsp.access(this.opts.cli);
    } catch {
      return { ok: false, reason: `${this.opts.cli} is missing (npm run build)` };
    }
    const r = await run([process.execPath, this.opts.cli, '--version'], { timeoutMs: PROBE_TIMEOUT_MS });
    return r.code === 0 ? { ok: true, version: firstLine(r) } : { ok: false, reason: `kiln --version failed: ${firstLine(r)}` };
  }

  rootOf(w: Workload): string | undefined {
    return this.roots.get(w.name);
  }

  async resetCold(w: Workload): Promise<void> {
    const old = this.roots.get(w.name);
    if (old) await removeTree(old);
    const root = path.join(this.opts.work, `root-${w.name}-${++this.generation}`);
    const prep = path.join(this.opts.work, `prep-${w.name}`);
    await fsp.mkdir(prep, { recursive: true });
    await fsp.writeFile(path.join(prep, 'Dockerfile'), `FROM ${w.base}\nRUN true\n`);
    this.roots.set(w.name, root);
    await check(this.cmd(root, ['build', '--progress', 'plain', '-f', path.join(prep, 'Dockerfile'), prep]), {
      env: this.env(),
      timeoutMs: SETUP_TIMEOUT_MS,
    });
  }

  private root(w: Workload): string {
    const r = this.roots.get(w.name);
    if (!r) throw new Error(`kiln: no root for ${w.name} yet (resetCold first)`);
    return r;
  }

  build(w: Workload, ctx: Context): Promise<RunResult> {
    return run(this.cmd(this.root(w), ['build', '-t', imageName(w), '--progress', 'plain', '-f', ctx.dockerfile, ctx.dir]), {
      env: this.env(),
      timeoutMs: BUILD_TIMEOUT_MS,
      rssFile: path.join(this.opts.work, 'time.out'),
    });
  }

  /** A build whose every step is cached, exporting an OCI layout tarball: what `kiln` offers for "export". */
  exportImage(w: Workload, ctx: Context, dest: string): Promise<RunResult> {
    return run(this.cmd(this.root(w), ['build', '--progress', 'plain', '-o', `type=oci,dest=${dest}`, '-f', ctx.dockerfile, ctx.dir]), {
      env: this.env(),
      timeoutMs: BUILD_TIMEOUT_MS,
      rssFile: path.join(this.opts.work, 'time.out'),
    });
  }

  async cleanup(): Promise<void> {
    for (const root of this.roots.values()) await removeTree(root);
    this.roots.clear();
  }
}

// ---- Docker (BuildKit inside dockerd) --------------------------------------------------------

export interface DockerOptions {
  docker: string;
  host: string;
}

/** Cold = `docker builder prune -af` and the image of the previous run removed; base images kept. */
export class DockerBuilder implements Builder {
  readonly id = 'buildkit' as const;
  private readonly built = new Set<string>();

  constructor(private readonly opts: DockerOptions) {}

  private cmd(args: string[]): string[] {
    return [this.opts.docker, '-H', this.opts.host, ...args];
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, DOCKER_BUILDKIT: '1', BUILDKIT_PROGRESS: 'plain' };
  }

  async probe(): Promise<Probe> {
    try {
      await fsp.access(this.opts.docker);
    } catch {
      return { ok: false, reason: `${this.opts.docker} is not installed` };
    }
    const r = await run(this.cmd(['version', '--format', '{{.Server.Version}}']), { env: this.env(), timeoutMs: PROBE_TIMEOUT_MS });
    return r.code === 0 ? { ok: true, version: `dockerd ${firstLine(r)}` } : { ok: false, reason: `no daemon on ${this.opts.host}: ${firstLine(r)}` };
  }

  async resetCold(w: Workload): Promise<void> {
    const opts = { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS };
    if ((await run(this.cmd(['image', 'inspect', w.base]), opts)).code !== 0) await check(this.cmd(['pull', '-q', w.base]), opts);
    await run(this.cmd(['rmi', '-f', imageName(w)]), opts);
    await check(this.cmd(['builder', 'prune', '-af']), opts);
  }

  build(w: Workload, ctx: Context): Promise<RunResult> {
    this.built.add(imageName(w));
    return run(this.cmd(['build', '--network', 'host', '--progress', 'plain', '-t', imageName(w), '-f', ctx.dockerfile, ctx.dir]), {
      env: this.env(),
      timeoutMs: BUILD_TIMEOUT_MS,
    });
  }

  /** `docker save`: Docker 20.10 has no OCI export without buildx, so this is its docker-format tarball. */
  exportImage(w: Workload, _ctx: Context, dest: string): Promise<RunResult> {
    return run(this.cmd(['save', '-o', dest, imageName(w)]), { env: this.env(), timeoutMs: BUILD_TIMEOUT_MS });
  }

  async cleanup(): Promise<void> {
    for (const name of this.built) await run(this.cmd(['rmi', '-f', name]), { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS });
    this.built.clear();
  }
}

// ---- buildah ----------------------------------------------------------------------------------

export interface BuildahOptions {
  buildah: string;
  runc: string;
  /** buildah's own storage and configuration live here, nowhere else. */
  work: string;
  registry: string;
}

/**
 * buildah with its storage in the benchmark's directory, and a registries.conf of its own that
 * sends docker.io to the local registry as a mirror (so `FROM busybox` works offline, as with the
 * other two). Cold = every image but the base ones removed (built images and the --layers cache).
 */
export class BuildahBuilder implements Builder {
  readonly id = 'buildah' as const;

  constructor(private readonly opts: BuildahOptions) {}

  private cmd(args: string[]): string[] {
    const w = this.opts.work;
    return [this.opts.buildah, '--root', path.join(w, 'storage'), '--runroot', path.join(w, 'run'), '--storage-driver', 'overlay', ...args];
  }

  private env(): NodeJS.ProcessEnv {
    return { ...process.env, CONTAINERS_REGISTRIES_CONF: path.join(this.opts.work, 'registries.conf'), BUILDAH_ISOLATION: 'oci' };
  }

  async probe(): Promise<Probe> {
    await fsp.mkdir(this.opts.work, { recursive: true });
    await fsp.writeFile(path.join(this.opts.work, 'registries.conf'), buildahRegistriesConf(this.opts.registry));
    const v = await run([this.opts.buildah, '--version'], { timeoutMs: PROBE_TIMEOUT_MS });
    if (v.code !== 0) return { ok: false, reason: `${this.opts.buildah} --version failed: ${firstLine(v)}` };
    const s = await run(this.cmd(['images']), { env: this.env(), timeoutMs: PROBE_TIMEOUT_MS });
    if (s.code !== 0) return { ok: false, reason: `buildah cannot open its storage: ${firstLine(s)}` };
    return { ok: true, version: firstLine(v) };
  }

  private async imageIds(ref?: string): Promise<string[]> {
    // -a (intermediate images too) only when listing everything: buildah refuses it with a name.
    const r = await check(this.cmd(['images', '-q', '--no-trunc', ...(ref ? [ref] : ['-a'])]), { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS });
    return r.output.split('\n').map((l) => l.trim()).filter((l) => /^(sha256:)?[0-9a-f]{64}$/.test(l));
  }

  async resetCold(w: Workload): Promise<void> {
    const opts = { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS };
    await check(this.cmd(['rm', '-a']), opts);
    if ((await run(this.cmd(['inspect', '--type', 'image', w.base]), opts)).code !== 0) await check(this.cmd(['pull', '-q', w.base]), opts);
    const keep = new Set<string>();
    for (const base of ['busybox', 'debian:bookworm']) {
      if ((await run(this.cmd(['inspect', '--type', 'image', base]), opts)).code === 0) for (const id of await this.imageIds(base)) keep.add(id);
    }
    const drop = (await this.imageIds()).filter((id) => !keep.has(id));
    if (drop.length > 0) await check(this.cmd(['rmi', '-f', ...drop]), opts);
    await run(this.cmd(['rmi', '--prune']), opts);
  }

  build(w: Workload, ctx: Context): Promise<RunResult> {
    return run(
      this.cmd(['bud', '--layers', `--runtime=${this.opts.runc}`, '--network', 'host', '-t', imageName(w), '-f', ctx.dockerfile, ctx.dir]),
      { env: this.env(), timeoutMs: BUILD_TIMEOUT_MS },
    );
  }

  exportImage(w: Workload, _ctx: Context, dest: string): Promise<RunResult> {
    return run(this.cmd(['push', '-q', imageName(w), `oci-archive:${dest}`]), { env: this.env(), timeoutMs: BUILD_TIMEOUT_MS });
  }

  async cleanup(): Promise<void> {
    const opts = { env: this.env(), timeoutMs: SETUP_TIMEOUT_MS };
    await run(this.cmd(['rm', '-a']), opts);
    await run(this.cmd(['rmi', '-a', '-f']), opts);
    await removeTree(this.opts.work);
  }
}

/** registries.conf for buildah: short names search docker.io, and docker.io is mirrored by REGISTRY (plain HTTP). */
export function buildahRegistriesConf(registry: string): string {
  return [
    'unqualified-search-registries = ["docker.io"]',
    'short-name-mode = "permissive"',
    '',
    '[[registry]]',
    'prefix = "docker.io"',
    'location = "docker.io"',
    '',
    '[[registry.mirror]]',
    `location = "${registry}"`,
    'insecure = true',
    '',
  ].join('\n');
}

// ---- helpers ----------------------------------------------------------------------------------

/**
 * rm -rf of a directory of ours, after lazily unmounting anything still mounted below it (overlay
 * snapshots of an interrupted build, buildah's private bind of its storage). Never follows a mount.
 */
export async function removeTree(dir: string): Promise<void> {
  const abs = path.resolve(dir);
  const mounts = (await fsp.readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => unescapeMount(l.split(' ')[4] ?? ''))
    .filter((m) => m === abs || m.startsWith(abs + '/'))
    // Deepest first.
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run(['umount', '-l', m], { timeoutMs: 60_000 });
  await fsp.rm(abs, { recursive: true, force: true });
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}
