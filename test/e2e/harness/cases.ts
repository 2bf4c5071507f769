// The differential cases: testdata/differential/<name>/ holds a Dockerfile, the build context, and
// optionally case.json (CaseSpec below). The case directory is the build context.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Expectation } from './expect.js';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CASES_DIR = join(REPO_ROOT, 'testdata', 'differential');

export interface CaseSpec {
  /** What the case covers, one line. */
  description?: string;
  /** Dockerfile name inside the case directory (default "Dockerfile"). */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  target?: string;
  /** The build must fail, and kiln's output must match this regular expression. */
  expectFailure?: string;
  /** For a failing case: what Docker's output must match (default: Docker must just fail too). */
  dockerFailure?: string;
  /** Docker 20.10's BuildKit cannot build this offline: only `expect` judges kiln's image. */
  kilnOnly?: boolean;
  /** Asserted on every image the case produces: Docker's (proving the assertion) and kiln's. */
  expect?: Expectation;
  /** Leave these out of the comparison, each with a reason in `why`. */
  ignore?: { history?: boolean; paths?: string[]; why?: string };
}

export interface DiffCase {
  name: string;
  dir: string;
  dockerfile: string; // absolute
  spec: CaseSpec;
}

export function loadCase(name: string): DiffCase {
  const dir = join(CASES_DIR, name);
  const specFile = join(dir, 'case.json');
  let spec: CaseSpec = {};
  if (existsSync(specFile)) {
    try {
      spec = JSON.parse(readFileSync(specFile, 'utf8')) as CaseSpec;
    } catch (e) {
      throw new Error(`${specFile}: invalid JSON: ${(e as Error).message}`);
    }
  }
  if (spec.kilnOnly && !spec.expect && !spec.expectFailure) {
    throw new Error(`${specFile}: a kilnOnly case needs "expect" or "expectFailure": nothing else judges it`);
  }
  const dockerfile = join(dir, spec.dockerfile ?? 'Dockerfile');
  if (!existsSync(dockerfile)) throw new Error(`${name}: no ${relative(REPO_ROOT, dockerfile)}`);
  return { name, dir, dockerfile, spec };
}

export function listCases(): DiffCase[] {
  return readdirSync(CASES_DIR, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map(loadCase);
}

/**
 * A digest of everything in the case directory that can change a build: names, types, permission
 * bits, contents and link targets (mtimes cannot: neither builder keeps them in what we compare).
 */
export function hashCaseDir(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      const rel = relative(dir, p);
      if (st.isSymbolicLink()) h.update(`L ${rel} ${readlinkSync(p)}\0`);
      else if (st.isDirectory()) {
        h.update(`D ${rel} ${(st.mode & 0o7777).toString(8)}\0`);
        walk(p);
      } else if (st.isFile()) {
        h.update(`F ${rel} ${(st.mode & 0o7777).toString(8)} ${st.size}\0`);
        h.update(readFileSync(p));
      } else h.update(`O ${rel} ${st.mode.toString(8)}\0`);
    }
  };
  walk(dir);
  return h.digest('hex');
}
