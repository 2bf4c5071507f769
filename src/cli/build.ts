// `kiln build`: flags to a BuildRequest, the result to the terminal.

import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { embeddedClient, type BuildRequest } from '../client/client.js';
import type { LintFinding } from '../frontend/types.js';

const HELP = `Usage: kiln build [options] CONTEXT

Options:
  -f, --file FILE          Dockerfile to use (default: CONTEXT/Dockerfile; "-" reads stdin)
  -t, --tag NAME:TAG       Name the image (repeatable)
      --target STAGE       Build this stage and what it needs
      --build-arg K=V      Set a build argument; "K" alone takes K from the environment (repeatable)
      --dry-run            Print the step graph as JSON and exit; run nothing
  -h, --help               This help
`;

export class UsageError extends Error {}

export interface ParsedBuildArgs {
  request: BuildRequest;
  tags: string[];
}

/** Flags to a request. Pure apart from reading the Dockerfile, so it is easy to test. */
export function parseBuildArgs(argv: string[], env: NodeJS.ProcessEnv = process.env, readStdin = () => readFileSync(0, 'utf8')): ParsedBuildArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        file: { type: 'string', short: 'f' },
        tag: { type: 'string', short: 't', multiple: true },
        target: { type: 'string' },
        'build-arg': { type: 'string', multiple: true },
        'dry-run': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) throw new UsageError('');
  if (positionals.length !== 1) throw new UsageError(`"kiln build" requires exactly 1 argument (the context), got ${positionals.length}`);
  const contextDir = path.resolve(positionals[0]!);
  let st;
  try {
    st = statSync(contextDir);
  } catch {
    throw new UsageError(`unable to prepare context: path "${positionals[0]}" not found`);
  }
  if (!st.isDirectory()) throw new UsageError(`unable to prepare context: "${positionals[0]}" is not a directory`);

  const dockerfile = readDockerfile(values.file, contextDir, readStdin);

  const buildArgs: Record<string, string | undefined> = {};
  for (const arg of values['build-arg'] ?? []) {
    const eq = arg.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid build arg "${arg}": empty name`);
    // As docker: "--build-arg K" takes K's value from the environment, and is unset if it has none.
    if (eq < 0) buildArgs[arg] = env[arg];
    else buildArgs[arg.slice(0, eq)] = arg.slice(eq + 1);
  }

  return {
    request: { contextDir, dockerfile, buildArgs, target: values.target, dryRun: values['dry-run'] ?? false },
    tags: values.tag ?? [],
  };
}

function readDockerfile(file: string | undefined, contextDir: string, readStdin: () => string): { name: string; text: string } {
  if (file === '-') return { name: 'Dockerfile', text: readStdin() };
  const p = file === undefined ? path.join(contextDir, 'Dockerfile') : path.resolve(file);
  try {
    return { name: file ?? 'Dockerfile', text: readFileSync(p, 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `failed to read Dockerfile: open ${p}: no such file or directory` : `failed to read Dockerfile ${p}: ${(err as Error).message}`);
  }
}

export function formatFinding(f: LintFinding): string {
  return `${f.level === 'error' ? 'ERROR' : 'WARN'}: ${f.rule}: ${f.message} (${f.location.file} line ${f.location.line})`;
}

export async function buildCommand(argv: string[]): Promise<number> {
  let parsed: ParsedBuildArgs;
  try {
    parsed = parseBuildArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message) process.stderr.write(`kiln build: ${err.message}\n\n`);
      process.stderr.write(HELP);
      return err.message ? 1 : 0;
    }
    throw err;
  }
  const client = embeddedClient();
  try {
    const result = await client.build(parsed.request);
    for (const w of result.warnings) process.stderr.write(formatFinding(w) + '\n');
    if (result.graph.unusedBuildArgs.length > 0) {
      process.stderr.write(`[Warning] One or more build-args [${result.graph.unusedBuildArgs.join(' ')}] were not consumed\n`);
    }
    if (result.warnings.some((w) => w.level === 'error')) {
      process.stderr.write('kiln build: lint violations are errors here (# check=error=true)\n');
      return 1;
    }
    if (parsed.request.dryRun) process.stdout.write(JSON.stringify(result.graph, null, 2) + '\n');
    return 0;
  } catch (err) {
    process.stderr.write(`ERROR: ${(err as Error).message}\n`);
    return 1;
  }
}
