// Builds through the real server (embedded mode) on a throw-away kiln root, with the test registry
// as the Docker Hub mirror, so `FROM busybox` resolves exactly as it does for the reference daemon.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BuildServer } from '../../src/server/server.js';
import type { BuildRequest, BuildResult, OutputSpec } from '../../src/server/api.js';
import type { ProgressEvent } from '../../src/solver/progress.js';
import { testEnv } from '../helpers/env.js';

export interface Built {
  result: BuildResult;
  events: ProgressEvent[];
  /** Vertex name -> final status. */
  statuses: Map<string, string>;
  logs: string;
}

export function kilnRoot(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-root-'));
}

export function makeContext(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ctx-'));
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

export function server(root: string, runLimits: { memoryBytes?: number; pids?: number } = {}): BuildServer {
  return new BuildServer({ root, config: { registry: { mirrors: [`http://${testEnv().registry}`] }, maxParallelRuns: 4, runLimits } });
}

export async function build(
  srv: BuildServer,
  contextDir: string,
  opts: Partial<BuildRequest> & { outputs?: OutputSpec[] } = {},
  signal?: AbortSignal,
  /** Sees each event as it comes (when it came can matter), before it is collected. */
  onEvent?: (e: ProgressEvent) => void,
): Promise<Built> {
  const text = opts.dockerfile?.text ?? fs.readFileSync(path.join(contextDir, 'Dockerfile'), 'utf8');
  const events: ProgressEvent[] = [];
  const result = await srv.build(
    {
      context: { type: 'dir', path: contextDir },
      dockerfile: { name: 'Dockerfile', text },
      buildArgs: {},
      dryRun: false,
      outputs: [],
      // The tests compare image IDs and inspect layers, which need the image assembled.
      imageId: true,
      labels: {},
      network: 'host',
      noCache: false,
      pull: false,
      ...opts,
    },
    (e) => {
      onEvent?.(e);
      events.push(e);
    },
    signal,
  );
  const statuses = new Map<string, string>();
  let logs = '';
  for (const e of events) {
    if (e.type === 'vertex' && e.status !== 'started') statuses.set(e.name, e.status);
    if (e.type === 'log') logs += e.data;
  }
  return { result, events, statuses, logs };
}

/** Names of the steps (RUN/COPY/WORKDIR...) that ran rather than came from the cache. */
export function ranSteps(b: Built): string[] {
  return [...b.statuses].filter(([name, st]) => /^\[.*\d+\/\d+\] (RUN|COPY|ADD|WORKDIR)/.test(name) && st === 'done').map(([n]) => n);
}

export function cachedSteps(b: Built): string[] {
  return [...b.statuses].filter(([, st]) => st === 'cached').map(([n]) => n);
}

/** Mount points under `dir` (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  const real = fs.realpathSync(dir);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m && (m === real || m.startsWith(real + '/')));
}
