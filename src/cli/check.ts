// `kiln build --check`: the Dockerfile's lint findings, as buildx prints them, and nothing built.

import type { LintFinding } from '../client/client.js';

/** "JSONArgsRecommended" -> "json-args-recommended", the rule's page in Docker's documentation. */
export function ruleUrl(rule: string): string {
  const kebab = rule
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1-$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase();
  return `https://docs.docker.com/go/dockerfile/rule/${kebab}/`;
}

/** The Dockerfile lines around a finding, the finding's line marked, as BuildKit shows a source range. */
function snippet(text: string, line: number): string[] {
  const lines = text.split('\n');
  if (line < 1 || line > lines.length) return [];
  const from = Math.max(1, line - 2);
  const to = Math.min(lines.length, line + 2);
  const width = String(to).length;
  const out = ['--------------------'];
  for (let n = from; n <= to; n++) {
    const body = lines[n - 1]!;
    if (n === to && body === '' && n !== line) continue;
    out.push(` ${String(n).padStart(width + 2)} | ${n === line ? '>>> ' : '    '}${body}`);
  }
  out.push('--------------------');
  return out;
}

/** buildx's --check report: a summary line, then each finding with its rule, message and source. */
export function formatCheck(findings: readonly LintFinding[], dockerfileText: string): string {
  if (findings.length === 0) return 'Check complete, no warnings found.\n';
  const n = findings.length;
  const out = [`Check complete, ${n} warning${n === 1 ? ' has' : 's have'} been found!`, ''];
  for (const f of findings) {
    out.push(
      `${f.level === 'error' ? 'ERROR' : 'WARN'}: ${f.rule} - ${ruleUrl(f.rule)}`,
      f.message,
      `${f.location.file}:${f.location.line}`,
      ...snippet(dockerfileText, f.location.line),
      '',
    );
  }
  return out.join('\n');
}
