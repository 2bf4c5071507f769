// Mount-point stubs: runc creates a missing mount destination in the rootfs (an empty directory, or an
// empty file for a file bind such as /etc/hosts), and its missing parents. Those are artefacts of
// running, not of the step, and must not land in the layer. Like BuildKit, we note which destinations
// (and parents) did not exist before the run and, afterwards, remove the ones that are still empty.
// The parent directory's times are put back when its entries are again what they were, so the layer
// diff does not see a changed /etc just because /etc/hosts was mounted.

import { lstatOrUndefined } from '../fsutil/stat.js';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { resolveInRoot } from '../fsutil/rootpath.js';

interface ParentState {
  hostPath: string;
  atime: Date;
  mtime: Date;
  entries: string[];
}

export interface StubRecord {
  /** The rootfs the paths are in. */
  root: string;
  /** Host paths that did not exist before the run, deepest last. */
  missing: string[];
  parents: ParentState[];
}

/** Records which components of each destination are missing in `rootfs` now (call before the run). */
export async function recordStubs(rootfs: string, destinations: string[]): Promise<StubRecord> {
  const root = path.resolve(rootfs);
  const missing = new Set<string>();
  const parents = new Map<string, ParentState>();
  for (const dest of destinations) {
    const comps = dest.split('/').filter((c) => c !== '' && c !== '.');
    let current = '/';
    for (let i = 0; i < comps.length; i++) {
      // Resolve the way runc will (symlinks followed inside the root), one component at a time.
      const host = await resolveInRoot(root, path.posix.join(current, comps[i]!));
      const st = await lstatOrUndefined(host);
      if (st === undefined) {
        const parent = path.dirname(host);
        if (!parents.has(parent)) {
          const pst = await lstatOrUndefined(parent);
          if (pst?.isDirectory()) {
            parents.set(parent, { hostPath: parent, atime: pst.atime, mtime: pst.mtime, entries: (await fsp.readdir(parent)).sort() });
          }
        }
        // Everything below a missing component will be created too.
        let p = host;
        missing.add(p);
        for (const rest of comps.slice(i + 1)) {
          if (rest === '..') break; // runc would resolve this differently; stop recording rather than guess
          p = path.join(p, rest);
          missing.add(p);
        }
        break;
      }
      if (!st.isDirectory()) break;
      current = '/' + path.relative(root, host);
    }
  }
  return { root, missing: [...missing], parents: [...parents.values()] };
}

/**
 * Whether every directory between the rootfs and `host` is still a real directory of the rootfs. The
 * step ran in between: it may have renamed a stub's parent away and put a link to a host directory
 * in its place (BuildKit's CVE-2024-23652), and a path through that link must not be touched. (No
 * container of the build runs while this is checked and used.)
 */
async function stillInside(root: string, host: string): Promise<boolean> {
  const rel = path.relative(root, host);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return false;
  let cur = root;
  for (const part of path.dirname(rel).split(path.sep)) {
    if (part === '.' || part === '') continue;
    cur = path.join(cur, part);
    const st = await lstatOrUndefined(cur);
    if (!st?.isDirectory()) return false; // a link, or no longer a directory: leave it alone
  }
  return true;
}

/** Removes the recorded stubs that are still empty, deepest first; restores parents' times. */
export async function removeStubs(rec: StubRecord): Promise<void> {
  const byDepth = [...rec.missing].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const p of byDepth) {
    if (!(await stillInside(rec.root, p))) continue;
    const st = await lstatOrUndefined(p);
    if (st === undefined) continue;
    try {
      if (st.isDirectory()) await fsp.rmdir(p);
      else if (st.isFile() && st.size === 0) await fsp.unlink(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The step put something there: then it is content, not a stub.
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT' && code !== 'EBUSY') throw err;
    }
  }
  for (const parent of rec.parents) {
    if (parent.hostPath !== rec.root && !(await stillInside(rec.root, parent.hostPath))) continue;
    if (!(await lstatOrUndefined(parent.hostPath))?.isDirectory()) continue; // swapped for a link: not ours to touch
    let entries: string[];
    try {
      entries = (await fsp.readdir(parent.hostPath)).sort();
    } catch {
      continue;
    }
    if (entries.length === parent.entries.length && entries.every((e, i) => e === parent.entries[i])) {
      await fsp.utimes(parent.hostPath, parent.atime, parent.mtime).catch(() => undefined);
    }
  }
}
