// Shared helpers for the frontend tests: build a graph from Dockerfile text, pick steps, expect errors.
import { expect } from 'vitest';
import { buildGraph, DockerfileError } from '../../src/frontend/index.js';
import type { BuildGraph, FrontendOptions, Stage, Step } from '../../src/frontend/types.js';

export function build(text: string, opts: Partial<FrontendOptions> = {}): BuildGraph {
  return buildGraph(text, { filename: 'Dockerfile', ...opts });
}

/** The target stage of a build. */
export function target(g: BuildGraph): Stage {
  const s = g.stages.find((x) => x.index === g.target);
  if (!s) throw new Error('target stage missing from graph');
  return s;
}

/** Steps of the target stage. */
export function steps(text: string, opts: Partial<FrontendOptions> = {}): Step[] {
  return target(build(text, opts)).steps;
}

/** The only step of `kind` in the target stage (fails if there is not exactly one). */
export function one<K extends Step['kind']>(text: string, kind: K, opts: Partial<FrontendOptions> = {}): Extract<Step, { kind: K }> {
  const found = steps(text, opts).filter((s) => s.kind === kind);
  expect(found, `steps of kind ${kind}`).toHaveLength(1);
  return found[0] as Extract<Step, { kind: K }>;
}

/** Expects a DockerfileError naming the file and the line, with every `parts` in its message. */
export function expectError(text: string, line: number, parts: (string | RegExp)[], opts: Partial<FrontendOptions> = {}): DockerfileError {
  let caught: unknown;
  try {
    build(text, opts);
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a DockerfileError').toBeInstanceOf(DockerfileError);
  const e = caught as DockerfileError;
  expect(e.file).toBe(opts.filename ?? 'Dockerfile');
  expect(e.line).toBe(line);
  expect(e.message.startsWith(`${opts.filename ?? 'Dockerfile'}:${line}: `) || line === 0).toBe(true);
  for (const p of parts) {
    if (typeof p === 'string') expect(e.message).toContain(p);
    else expect(e.message).toMatch(p);
  }
  return e;
}

export const PATH_DEFAULT = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
