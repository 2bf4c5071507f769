// The reference side: build a case with Docker 20.10's BuildKit, `docker save` it, summarise it.
//
// Docker's results are cached per case on disk, keyed by everything that can change them (the case
// directory's content, the base images' digests in the test registry, the harness's summary format),
// so a repeated run only rebuilds kiln's side.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { docker, testEnv, tmpDir } from '../../helpers/env.js';
import { hashCaseDir, type DiffCase } from './cases.js';
import { contentPaths } from './expect.js';
import { readDockerArchive } from './image-archive.js';
import { summarize, type ImageSummary } from './summary.js';

/** Bump when ImageSummary or its normalisation changes: old cache entries then stop matching. */
const SUMMARY_FORMAT = '1';

export const REFERENCE_CACHE_DIR = process.env.KILN_DIFF_CACHE_DIR ?? '/var/cache/kiln-testdata/differential';

export type BuildOutcome = { ok: true; summary: ImageSummary } | { ok: false; output: string };

export interface Reference {
  outcome: BuildOutcome;
  key: string;
  cached: boolean;
  cacheFile: string;
}

/** The manifest digest the test registry serves for REPO:TAG (what `FROM` resolves to). */
export async function registryDigest(repo: string, tag: string): Promise<string> {
  const url = `http://${testEnv().registry}/v2/${repo}/manifests/${tag}`;
  const res = await fetch(url, {
    method: 'HEAD',
    headers: {
      Accept: [
        'application/vnd.oci.image.index.v1+json',
        'application/vnd.oci.image.manifest.v1+json',
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.docker.distribution.manifest.list.v2+json',
      ].join(', '),
    },
  }).catch((e: Error) => {
    throw new Error(`HEAD ${url}: ${e.message} (is the test registry up? scripts/testenv.sh up)`);
  });
  const digest = res.headers.get('docker-content-digest');
  if (!res.ok || !digest) throw new Error(`HEAD ${url}: HTTP ${res.status}, digest ${String(digest)}`);
  return digest;
}

let baseDigests: Promise<string> | undefined;

function baseImagesKey(): Promise<string> {
  baseDigests ??= Promise.all([registryDigest('library/busybox', 'latest'), registryDigest('library/debian', 'bookworm')]).then((d) => d.join(' '));
  return baseDigests;
}

export async function referenceKey(c: DiffCase): Promise<string> {
  return createHash('sha256')
    .update(`format ${SUMMARY_FORMAT}\0bases ${await baseImagesKey()}\0case ${hashCaseDir(c.dir)}\0`)
    .digest('hex')
    .slice(0, 32);
}

export function buildArgsFlags(c: DiffCase): string[] {
  const flags: string[] = [];
  for (const [k, v] of Object.entries(c.spec.buildArgs ?? {})) flags.push('--build-arg', `${k}=${v}`);
  if (c.spec.target) flags.push('--target', c.spec.target);
  return flags;
}

async function buildWithDocker(c: DiffCase, key: string): Promise<BuildOutcome> {
  const tag = `kiln-diff/${c.name}:${key.slice(0, 12)}`;
  const build = await docker(['build', '--network', 'host', '--progress', 'plain', '-f', c.dockerfile, '-t', tag, ...buildArgsFlags(c), c.dir], {
    timeoutMs: 600_000,
  });
  if (build.code !== 0) return { ok: false, output: build.stderr + build.stdout };
  try {
    const dir = await tmpDir('kiln-diff-docker-');
    const tar = join(dir, 'image.tar');
    const save = await docker(['save', '-o', tar, tag]);
    if (save.code !== 0) throw new Error(`docker save ${tag} failed: ${save.stderr}`);
    const image = await readDockerArchive(tar);
    return { ok: true, summary: await summarize(image, `docker image of ${c.name}`, contentPaths(c.spec.expect)) };
  } finally {
    await docker(['rmi', tag]);
  }
}

/** Docker's result for a case, from the cache when the case has not changed. */
export async function dockerReference(c: DiffCase): Promise<Reference> {
  const key = await referenceKey(c);
  const cacheFile = join(REFERENCE_CACHE_DIR, `${c.name}-${key}.json`);
  if (existsSync(cacheFile)) {
    return { outcome: JSON.parse(readFileSync(cacheFile, 'utf8')) as BuildOutcome, key, cached: true, cacheFile };
  }
  const outcome = await buildWithDocker(c, key);
  // An unexpected failure may be the daemon's, not the case's: never cache it, retry next run.
  if (!outcome.ok && !c.spec.expectFailure) return { outcome, key, cached: false, cacheFile };
  mkdirSync(REFERENCE_CACHE_DIR, { recursive: true });
  // Older results for this case can never match again: drop them so the cache does not grow.
  for (const f of readdirSync(REFERENCE_CACHE_DIR)) {
    if (f.startsWith(`${c.name}-`) && /^[0-9a-f]{32}\.json$/.test(f.slice(c.name.length + 1))) rmSync(join(REFERENCE_CACHE_DIR, f), { force: true });
  }
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(outcome));
  renameSync(tmp, cacheFile);
  return { outcome, key, cached: false, cacheFile };
}
