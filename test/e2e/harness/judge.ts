// One differential case from start to verdict: Docker's reference (cached), kiln's build, the
// comparison, and the case's own expectations. Throws an Error whose message is the readable report.
import { join } from 'node:path';
import { tmpDir } from '../../helpers/env.js';
import type { DiffCase } from './cases.js';
import { compareSummaries, formatDifferences } from './compare.js';
import { dockerReference, type Reference } from './docker-reference.js';
import { checkExpectation, contentPaths } from './expect.js';
import { readOciArchive } from './image-archive.js';
import { kilnBuild } from './kiln.js';
import { summarize, type ImageSummary } from './summary.js';

export interface KilnSetup {
  root: string; // --root shared by the cases of one test file (so base images are pulled once)
  config: string; // KILN_CONFIG
}

/** Only the reference side: build (or load from cache) Docker's result and check it. */
export const DOCKER_ONLY = process.env.KILN_DIFF_DOCKER_ONLY === '1';

function tail(text: string, lines = 40): string {
  const all = text.trimEnd().split('\n');
  return (all.length > lines ? ['...', ...all.slice(-lines)] : all).join('\n');
}

/** Docker's side must be what the case says, or the case itself is wrong. */
export async function checkReference(c: DiffCase): Promise<Reference> {
  const ref = await dockerReference(c);
  const o = ref.outcome;
  const where = `case ${c.name} (Docker reference${ref.cached ? `, cached in ${ref.cacheFile}` : ''})`;
  if (c.spec.expectFailure) {
    if (o.ok) throw new Error(`${where}: Docker built the image but the case expects a failure`);
    if (c.spec.dockerFailure && !new RegExp(c.spec.dockerFailure).test(o.output)) {
      throw new Error(`${where}: Docker's error does not match /${c.spec.dockerFailure}/:\n${tail(o.output)}`);
    }
    return ref;
  }
  if (!o.ok) throw new Error(`${where}: docker build failed:\n${tail(o.output)}`);
  if (c.spec.expect) {
    const problems = checkExpectation(o.summary, c.spec.expect);
    if (problems.length > 0) throw new Error(`${where}: the case's "expect" is wrong against Docker's image:\n  ${problems.join('\n  ')}`);
  }
  return ref;
}

export async function buildWithKiln(c: DiffCase, setup: KilnSetup): Promise<{ summary?: ImageSummary; output: string; code: number }> {
  const dir = await tmpDir('kiln-diff-kiln-');
  const out = join(dir, 'image.tar');
  const res = await kilnBuild({
    root: setup.root,
    config: setup.config,
    dockerfile: c.dockerfile,
    context: c.dir,
    output: `type=oci,dest=${out}`,
    buildArgs: c.spec.buildArgs,
    target: c.spec.target,
  });
  const output = res.stderr + res.stdout;
  if (res.code !== 0) return { output, code: res.code };
  const image = await readOciArchive(out);
  return { summary: await summarize(image, `kiln image of ${c.name}`, contentPaths(c.spec.expect)), output, code: 0 };
}

export async function judgeCase(c: DiffCase, setup: KilnSetup): Promise<void> {
  const ref = c.spec.kilnOnly ? undefined : await checkReference(c);
  if (DOCKER_ONLY) return;

  const kiln = await buildWithKiln(c, setup);
  const where = `case ${c.name}`;
  if (c.spec.expectFailure) {
    if (kiln.code === 0) throw new Error(`${where}: kiln built the image but the case expects a failure matching /${c.spec.expectFailure}/`);
    if (!new RegExp(c.spec.expectFailure).test(kiln.output)) {
      throw new Error(`${where}: kiln failed, but its output does not match /${c.spec.expectFailure}/:\n${tail(kiln.output)}`);
    }
    return;
  }
  if (!kiln.summary) throw new Error(`${where}: kiln build failed (exit ${kiln.code}):\n${tail(kiln.output)}`);

  const report: string[] = [];
  if (ref?.outcome.ok) {
    const diffs = compareSummaries(ref.outcome.summary, kiln.summary, {
      ignoreHistory: c.spec.ignore?.history,
      ignorePaths: c.spec.ignore?.paths,
    });
    if (diffs.length > 0) report.push(formatDifferences(diffs));
  }
  if (c.spec.expect) {
    const problems = checkExpectation(kiln.summary, c.spec.expect);
    if (problems.length > 0) report.push(`expectations (case.json "expect"): ${problems.length} failed\n  ${problems.join('\n  ')}`);
  }
  if (report.length > 0) throw new Error(`${where}: kiln's image differs\n${report.join('\n')}`);
}
