// Containers left behind by a kiln process that was killed mid-step (SIGKILL gives it no chance to
// clean up; `runc run` and its container outlive it). Whoever next owns the kiln root calls this:
// every container in the root's runc state is stale then, and keeps a snapshot mounted until killed.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { runcCall } from './run.js';

export async function sweepStaleContainers(stateDir: string, runc = 'runc'): Promise<string[]> {
  const runcRoot = path.join(path.resolve(stateDir), 'runc');
  // runc keeps a directory per container under its root: none there, nothing to reap, and no runc
  // process to start (this runs before every embedded build).
  const entries = await fsp.readdir(runcRoot).catch(() => [] as string[]);
  if (entries.length === 0) {
    await fsp.rm(path.join(path.resolve(stateDir), 'bundles'), { recursive: true, force: true });
    return [];
  }
  const list = await runcCall(runc, ['--root', runcRoot, 'list', '--quiet']);
  if (list.code !== 0) return []; // no state yet
  const ids = list.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  for (const id of ids) {
    await runcCall(runc, ['--root', runcRoot, 'kill', id, 'KILL']);
    // delete -f waits for the init process to go and removes the container's cgroup and state.
    await runcCall(runc, ['--root', runcRoot, 'delete', '--force', id]);
  }
  // Bundles of those containers (config.json, /etc files) are ours to remove too.
  await fsp.rm(path.join(path.resolve(stateDir), 'bundles'), { recursive: true, force: true });
  return ids;
}
