// The benchmark's workloads: each a build context generated from a seed (same bytes every run, so
// figures compare across commits and machines) and the scenarios that make sense for it.

import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { intBetween, mulberry32, subSeed, textBytes } from './rng.js';

export const WORKLOAD_NAMES = ['hello', 'bigctx', 'parallel', 'manyfiles', 'bigfile', 'concurrent'] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

/**
 * cold: empty build cache, base image present; warm: nothing changed; edit: one source file changed;
 * concurrent: several builds started at the same moment, timed from the first start to the last exit.
 */
export type Scenario = 'cold' | 'warm' | 'edit' | 'concurrent';

export interface ContextFile {
  /** Slash-separated, relative to the context root. */
  path: string;
  content: Buffer;
}

export interface Workload {
  name: WorkloadName;
  /** One line for the report. */
  description: string;
  /** The base image as the Dockerfile names it (resolved through the local registry). */
  base: string;
  scenarios: readonly Scenario[];
  /** Every file of the context, the Dockerfile included, in a fixed order. */
  files(seed: number): Iterable<ContextFile>;
  /** For the edit scenario: the file to rewrite before round ROUND (a different content each round). */
  edit?(seed: number, round: number): ContextFile;
  /**
   * For the concurrent scenario: how many builds start at once; build I's context is the directory
   * concurrentDir(I) of the workload's files, and its Dockerfile is rewritten before every run with
   * a new NONCE, so no run is a cache hit of an earlier one (every run really sleeps).
   */
  concurrent?: { builds: number; dockerfile(i: number, nonce: string): ContextFile };
}

const BUSYBOX = 'busybox';
const DEBIAN = 'debian:bookworm';

function file(p: string, content: string | Buffer): ContextFile {
  return { path: p, content: typeof content === 'string' ? Buffer.from(content) : content };
}

const hello: Workload = {
  name: 'hello',
  description: 'FROM busybox, one RUN, COPY of a small file, WORKDIR, ENV, CMD',
  base: BUSYBOX,
  scenarios: ['cold', 'warm'],
  *files(seed) {
    yield file(
      'Dockerfile',
      [
        `FROM ${BUSYBOX}`,
        'RUN echo hello > /hello && mkdir -p /data',
        'COPY greeting.txt /data/greeting.txt',
        'WORKDIR /data',
        'ENV GREETING=hello',
        'CMD ["cat", "/data/greeting.txt"]',
        '',
      ].join('\n'),
    );
    yield file('greeting.txt', textBytes(mulberry32(subSeed(seed, 'hello')), 512));
  },
};

/** bigctx's layout: 100 dirs x 100 files under each of src/ and node_modules/, every tenth a .log. */
export const BIGCTX_DIRS = 100;
export const BIGCTX_FILES_PER_DIR = 100;
export const BIGCTX_MIN_SIZE = 200;
export const BIGCTX_MAX_SIZE = 8000;

function bigctxName(top: 'src' | 'node_modules', d: number, f: number): string {
  const ext = f % 10 === 9 ? 'log' : top === 'src' ? 'ts' : 'js';
  return `${top}/d${String(d).padStart(3, '0')}/f${String(f).padStart(3, '0')}.${ext}`;
}

/** The source file the edit scenario rewrites (never ignored). */
export const BIGCTX_EDITED = bigctxName('src', 0, 0);

const bigctx: Workload = {
  name: 'bigctx',
  description: '20,000-file context (half of it in node_modules, every tenth a .log) behind a .dockerignore; COPY . .',
  base: BUSYBOX,
  scenarios: ['cold', 'warm', 'edit'],
  *files(seed) {
    yield file('Dockerfile', [`FROM ${BUSYBOX}`, 'WORKDIR /app', 'COPY . .', 'RUN find /app -type f | wc -l > /count', ''].join('\n'));
    yield file('.dockerignore', ['node_modules', '**/*.log', '!keep.log', ''].join('\n'));
    yield file('keep.log', 'kept: a negated .dockerignore pattern brings it back\n');
    for (const top of ['src', 'node_modules'] as const) {
      const rng = mulberry32(subSeed(seed, `bigctx/${top}`));
      for (let d = 0; d < BIGCTX_DIRS; d++) {
        for (let f = 0; f < BIGCTX_FILES_PER_DIR; f++) {
          const size = intBetween(rng, BIGCTX_MIN_SIZE, BIGCTX_MAX_SIZE);
          yield file(bigctxName(top, d, f), textBytes(rng, size));
        }
      }
    }
  },
  edit(seed, round) {
    const rng = mulberry32(subSeed(seed, `bigctx/edit/${round}`));
    return file(BIGCTX_EDITED, Buffer.concat([Buffer.from(`// edit ${round}\n`), textBytes(rng, intBetween(rng, BIGCTX_MIN_SIZE, BIGCTX_MAX_SIZE))]));
  },
};

export const PARALLEL_STAGES = ['a', 'b', 'c', 'd'] as const;

const parallel: Workload = {
  name: 'parallel',
  description: 'four independent stages that each sleep 2 s, a final stage copying from each',
  base: BUSYBOX,
  scenarios: ['cold', 'warm'],
  *files() {
    const lines: string[] = [];
    for (const s of PARALLEL_STAGES) {
      lines.push(`FROM ${BUSYBOX} AS stage-${s}`, `RUN sleep 2 && echo ${s} > /out-${s}`, '');
    }
    lines.push(`FROM ${BUSYBOX}`);
    for (const s of PARALLEL_STAGES) lines.push(`COPY --from=stage-${s} /out-${s} /out-${s}`);
    lines.push('');
    yield file('Dockerfile', lines.join('\n'));
  },
};

export const MANYFILES_DIRS = 300;
export const MANYFILES_PER_DIR = 100;

const manyfiles: Workload = {
  name: 'manyfiles',
  description: 'FROM debian; a RUN writing 30,000 small files in 300 dirs; a RUN deleting a third of them and /usr/share/doc',
  base: DEBIAN,
  scenarios: ['cold', 'warm'],
  *files() {
    // Files are named g<i mod 3>_<i>, so one glob (g0_*) deletes a third of them (34 of each 100):
    // ~10,200 single-file whiteouts plus a whole-directory one.
    yield file(
      'Dockerfile',
      [
        `FROM ${DEBIAN}`,
        `RUN set -e; mkdir /many; for d in $(seq 0 ${MANYFILES_DIRS - 1}); do mkdir /many/d$d; ` +
          `for i in $(seq 0 ${MANYFILES_PER_DIR - 1}); do echo "file $d/$i" > /many/d$d/g$((i % 3))_$i; done; done`,
        'RUN rm -f /many/*/g0_* && rm -rf /usr/share/doc',
        '',
      ].join('\n'),
    );
  },
};

export const BIGFILE_BYTES = 256 * 1024 * 1024;

const bigfile: Workload = {
  name: 'bigfile',
  description: 'FROM debian; a RUN writing 256 MiB from /dev/urandom and 256 MiB of repeated text',
  base: DEBIAN,
  scenarios: ['cold', 'warm'],
  *files() {
    yield file(
      'Dockerfile',
      [
        `FROM ${DEBIAN}`,
        `RUN head -c ${BIGFILE_BYTES} /dev/urandom > /random.bin && ` +
          `yes 'kiln benchmark: the same line again and again, 0123456789' | head -c ${BIGFILE_BYTES} > /text.txt`,
        '',
      ].join('\n'),
    );
  },
};

export const CONCURRENT_BUILDS = 4;

/** The context directory of concurrent build I (0-based), relative to the workload's directory. */
export function concurrentDir(i: number): string {
  return `b${i + 1}`;
}

function concurrentDockerfile(i: number, nonce: string): ContextFile {
  return file(`${concurrentDir(i)}/Dockerfile`, `FROM ${BUSYBOX}\nRUN echo ${i + 1} ${nonce} && sleep 2\n`);
}

const concurrent: Workload = {
  name: 'concurrent',
  description: `${CONCURRENT_BUILDS} different builds started at once, each FROM busybox + RUN echo N && sleep 2, each its own context`,
  base: BUSYBOX,
  scenarios: ['concurrent'],
  *files() {
    for (let i = 0; i < CONCURRENT_BUILDS; i++) {
      yield concurrentDockerfile(i, 'initial');
      yield file(`${concurrentDir(i)}/build.txt`, `build ${i + 1}\n`);
    }
  },
  concurrent: { builds: CONCURRENT_BUILDS, dockerfile: concurrentDockerfile },
};

export const WORKLOADS: Readonly<Record<WorkloadName, Workload>> = { hello, bigctx, parallel, manyfiles, bigfile, concurrent };

/** A digest over every path and content, to check (and record) that a seed gives the same context. */
export function contextDigest(files: Iterable<ContextFile>): string {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(`${f.path}\0${f.content.length}\0`);
    h.update(f.content);
  }
  return `sha256:${h.digest('hex')}`;
}

/** Writes FILES under DIR (which must be empty or missing). */
export async function writeContext(dir: string, files: Iterable<ContextFile>): Promise<void> {
  const made = new Set<string>();
  for (const f of files) {
    const target = path.join(dir, ...f.path.split('/'));
    const parent = path.dirname(target);
    if (!made.has(parent)) {
      await fsp.mkdir(parent, { recursive: true });
      made.add(parent);
    }
    await fsp.writeFile(target, f.content);
  }
}
