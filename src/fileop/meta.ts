// Writing one entry's metadata onto a target, and the small file-system primitives the copier and
// the tar extractor share. Targets are host paths whose parents are already resolved inside the
// rootfs; these helpers never follow a symlink at the target itself (lchown/lutimes, no chmod on
// links, unlink before create).

import { lstatOrUndefined, lstatOrUndefinedSync } from '../fsutil/stat.js';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { promisify } from 'node:util';
import { xattrs } from '../util/lazy-modules.js';

const execFileP = promisify(execFile);

export interface Meta {
  uid: number;
  gid: number;
  /** Permission bits incl. setuid/setgid/sticky; ignored for symlinks. */
  mode: number;
  atime: Date | number;
  mtime: Date | number;
}

/**
 * Owner first, then mode (chown clears setuid/setgid bits), then times (last, so nothing after it
 * bumps the mtime).
 */
export async function applyMeta(target: string, isSymlink: boolean, m: Meta): Promise<void> {
  await fsp.lchown(target, m.uid, m.gid);
  if (!isSymlink) await fsp.chmod(target, m.mode & 0o7777);
  await fsp.lutimes(target, m.atime, m.mtime);
}

/** applyMeta on the calling thread (the copier's synchronous slices). */
export function applyMetaSync(target: string, isSymlink: boolean, m: Meta): void {
  fs.lchownSync(target, m.uid, m.gid);
  if (!isSymlink) fs.chmodSync(target, m.mode & 0o7777);
  fs.lutimesSync(target, m.atime, m.mtime);
}

/** Device numbers from st_rdev (glibc's major/minor). */
export function devNumbers(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  return { major: Number(((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn)), minor: Number((r & 0xffn) | ((r >> 12n) & ~0xffn)) };
}

/** Creates a device node or FIFO. Node has no mknod(2); coreutils' mknod does the call. */
export async function makeNode(target: string, kind: 'char' | 'block' | 'fifo', major = 0, minor = 0): Promise<void> {
  const args = kind === 'fifo' ? [target, 'p'] : [target, kind === 'char' ? 'c' : 'b', String(major), String(minor)];
  try {
    await execFileP('mknod', args);
  } catch (err) {
    throw new Error(`cannot create ${kind} node ${target}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
  }
}

/**
 * Copies extended attributes (e.g. security.capability of a binary from a stage), with synchronous
 * calls (the copier's slices). Attributes the target filesystem refuses are skipped: tmpfs and
 * overlay upper dirs differ in what they accept.
 */
export function copyXattrsSync(src: string, target: string): void {
  let names: string[];
  try {
    names = xattrs().listAttributesSync(src);
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const value = xattrs().getAttributeSync(src, name);
      if (value !== null) xattrs().setAttributeSync(target, name, value);
    } catch {
      // unsupported here (ENOTSUP/EPERM): the copy itself is still correct
    }
  }
}

/** Makes room for a non-directory at `target`: a directory there is an error, anything else goes. */
export async function clearForFile(target: string, shownAs: string): Promise<void> {
  const st = await lstatOrUndefined(target);
  if (st === undefined) return;
  if (st.isDirectory()) throw new Error(`cannot replace directory ${shownAs} with a file`);
  await fsp.unlink(target);
}

/** clearForFile on the calling thread. */
export function clearForFileSync(target: string, shownAs: string): void {
  const st = lstatOrUndefinedSync(target);
  if (st === undefined) return;
  if (st.isDirectory()) throw new Error(`cannot replace directory ${shownAs} with a file`);
  fs.unlinkSync(target);
}
