// Build checks (BuildKit's frontend/dockerfile/linter): rule names and messages as BuildKit words
// them, configured by the `# check=skip=A,B;error=true` directive.

import type { LintFinding, SourceLocation } from './types.js';

export const rules = {
  StageNameCasing: (name: string) => `Stage name '${name}' should be lowercase`,
  FromAsCasing: (from: string, as: string) => `'${as}' and '${from}' keywords' casing do not match`,
  NoEmptyContinuation: () => 'Empty continuation line',
  ConsistentInstructionCasing: (cmd: string, casing: string) => `Command '${cmd}' should match the case of the command majority (${casing})`,
  DuplicateStageName: (name: string) => `Duplicate stage name ${JSON.stringify(name)}, stage names should be unique`,
  ReservedStageName: (name: string) => `Stage name should not use the same name as reserved stage ${JSON.stringify(name)}`,
  JSONArgsRecommended: (instr: string) => `JSON arguments recommended for ${instr} to prevent unintended behavior related to OS signals`,
  MaintainerDeprecated: () => 'Maintainer instruction is deprecated in favor of using label',
  UndefinedArgInFrom: (arg: string, suggest?: string) => `FROM argument '${arg}' is not declared` + (suggest ? ` (did you mean ${suggest}?)` : ''),
  WorkdirRelativePath: (wd: string) => `Relative workdir ${JSON.stringify(wd)} can have unexpected results if the base image changes`,
  UndefinedVar: (v: string, suggest?: string) => `Usage of undefined variable '$${v}'` + (suggest ? ` (did you mean $${suggest}?)` : ''),
  MultipleInstructionsDisallowed: (instr: string) =>
    `Multiple ${instr} instructions should not be used in the same stage because only the last one will be used`,
  LegacyKeyValueFormat: (cmd: string) => `"${cmd} key=value" should be used instead of legacy "${cmd} key value" format`,
  RedundantTargetPlatform: (v: string) => `Setting platform to predefined ${v} in FROM is redundant as this is the default behavior`,
  SecretsUsedInArgOrEnv: (instr: string, key: string) => `Do not use ARG or ENV instructions for sensitive data (${instr} ${JSON.stringify(key)})`,
  InvalidDefaultArgInFrom: (base: string) => `Default value for ARG ${base} results in empty or invalid base image name`,
  FromPlatformFlagConstDisallowed: (p: string) => `FROM --platform flag should not use constant value ${JSON.stringify(p)}`,
  ExposeProtoCasing: (port: string) => `Defined protocol '${port}' in EXPOSE instruction should be lowercase`,
  ExposeInvalidFormat: (port: string) => `EXPOSE instruction should not define an IP address or host-port mapping, found '${port}'`,
} as const;

export type RuleName = keyof typeof rules;

export interface LintConfig {
  skipAll: boolean;
  skip: Set<string>;
  error: boolean;
}

/** Parses the value of `# check=...` (BuildKit's ParseLintOptions). Throws on a malformed value. */
export function parseCheckDirective(value: string | undefined): LintConfig {
  const cfg: LintConfig = { skipAll: false, skip: new Set(), error: false };
  const s = (value ?? '').trim();
  if (s === '') return cfg;
  for (const part of s.split(';').slice(0, 3)) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new Error(`invalid check option "${part}"`);
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 'skip') {
      if (v === 'all') cfg.skipAll = true;
      else for (const r of v.split(',')) cfg.skip.add(r.trim());
    } else if (k === 'error') {
      const b = goParseBool(v);
      if (b === undefined) throw new Error(`failed to parse check option "${part}": invalid syntax`);
      cfg.error = b;
    } else if (k === 'experimental') {
      // Experimental rules are not implemented; accepting the option keeps such files building.
    } else {
      throw new Error(`invalid check option "${k}"`);
    }
  }
  return cfg;
}

function goParseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

export class Linter {
  readonly findings: LintFinding[] = [];
  private readonly seen = new Set<string>();

  constructor(private readonly cfg: LintConfig) {}

  run<R extends RuleName>(rule: R, location: SourceLocation, ...args: Parameters<(typeof rules)[R]>): void {
    if (this.cfg.skipAll || this.cfg.skip.has(rule)) return;
    const message = (rules[rule] as (...a: unknown[]) => string)(...args);
    // The same stage can be visited twice (ONBUILD re-resolution); report each finding once.
    const key = `${rule}\0${location.line}\0${message}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.findings.push({ rule, message, location, level: this.cfg.error ? 'error' : 'warning' });
  }

  sorted(): LintFinding[] {
    return this.findings
      .map((f, i) => ({ f, i }))
      .sort((a, b) => a.f.location.line - b.f.location.line || a.i - b.i)
      .map((x) => x.f);
  }
}

/** Closest name within a small edit distance, for "did you mean" hints. */
export function suggest(val: string, options: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const o of options) {
    if (o === val) continue;
    const d = levenshtein(val, o);
    if (d < bestDist) {
      bestDist = d;
      best = o;
    }
  }
  // Only close matches are useful: at most a third of the name, at least one edit.
  if (best !== undefined && bestDist <= Math.max(1, Math.floor(val.length / 3))) return best;
  return undefined;
}

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

const secretTokens = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const allowTokens = /(?:_|^)(?:public)(?:_|$)/i;

export function looksSecret(key: string): boolean {
  return secretTokens.test(key) && !allowTokens.test(key);
}
