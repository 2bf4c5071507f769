// type=local and type=tar: the final root filesystem as a directory or a tarball. The rootfs arrives
// mounted (read-only view) from the snapshotter; these functions only read it.

import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim()}`))));
  });
}

/** With SOURCE_DATE_EPOCH (seconds), BuildKit's local and tar exporters date every file they write at it. */
export interface FilesystemExportOptions {
  epoch?: number;
}

/** Copies the rootfs into `dest` (created if missing), keeping modes, owners, links and xattrs. */
export async function exportLocal(rootfs: string, dest: string, opts: FilesystemExportOptions = {}): Promise<void> {
  await fsp.mkdir(dest, { recursive: true });
  // cp -a never follows symlinks inside the source, so a hostile image cannot make it read the host.
  await run('cp', ['-a', '--no-target-directory', '--reflink=auto', rootfs + '/.', path.resolve(dest)]);
  if (opts.epoch !== undefined) await dateCopies(rootfs, path.resolve(dest), opts.epoch);
}

/**
 * Sets the times of what exportLocal copied (the rootfs's entries, found at the same paths in dest)
 * to `epoch`. Links are dated themselves (lutimes), and the walk descends only into directories that
 * are real directories on both sides, so it never reaches outside dest.
 */
async function dateCopies(rootfs: string, dest: string, epoch: number): Promise<void> {
  async function walk(rel: string): Promise<void> {
    for (const name of await fsp.readdir(path.join(rootfs, rel))) {
      const r = path.join(rel, name);
      const copy = path.join(dest, r);
      const [src, dst] = await Promise.all([fsp.lstat(path.join(rootfs, r)), fsp.lstat(copy).catch(() => undefined)]);
      if (!dst) continue; // not copied (cp -a skips nothing a layer can hold, but do not fail on it)
      if (src.isDirectory() && dst.isDirectory()) await walk(r);
      await fsp.lutimes(copy, epoch, epoch);
    }
  }
  await walk('');
}

/** A file an export adds at the top of the output (an attestation: provenance.json), mode 0600. */
export interface ExtraFile {
  name: string;
  content: string;
}

/**
 * Writes the extra files into `dest` after the rootfs was copied there. An entry of the same name
 * (the image's own, possibly a symlink pointing out of dest) is replaced, never followed: the file
 * is created with O_EXCL, which does not follow a link. With an epoch, they are dated at it.
 */
export async function addLocalFiles(dest: string, files: readonly ExtraFile[], epoch?: number): Promise<void> {
  for (const f of files) {
    const p = path.join(path.resolve(dest), f.name);
    await fsp.rm(p, { recursive: true, force: true });
    await fsp.writeFile(p, f.content, { mode: 0o600, flag: 'wx' });
    if (epoch !== undefined) await fsp.lutimes(p, epoch, epoch);
  }
}

/**
 * Writes the rootfs as one tarball at `dest` (through a temporary file), plus `extra` files at its
 * top, which replace the rootfs's entries of the same name.
 */
export async function exportTar(rootfs: string, dest: string, opts: FilesystemExportOptions = {}, extra: readonly ExtraFile[] = []): Promise<void> {
  const abs = path.resolve(dest);
  const tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.kiln-tmp-${process.pid}`);
  const extraDir = `${tmp}.extra`;
  // With an epoch: every mtime is it, and the pax headers GNU tar adds for xattrs carry neither
  // atime/ctime nor its process ID, so the tarball depends on the files alone.
  const dated = opts.epoch !== undefined ? [`--mtime=@${opts.epoch}`, '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime'] : [];
  try {
    const exclude = extra.map((f) => `--exclude=./${f.name}`);
    await run('tar', [
      '--create',
      '--file',
      tmp,
      '--directory',
      rootfs,
      '--numeric-owner',
      '--xattrs',
      '--xattrs-include=*',
      '--sort=name',
      ...dated,
      ...exclude,
      '.',
    ]);
    if (extra.length) {
      await fsp.mkdir(extraDir, { mode: 0o700 });
      for (const f of extra) await fsp.writeFile(path.join(extraDir, f.name), f.content, { mode: 0o600 });
      await run('tar', [
        '--append',
        '--file',
        tmp,
        '--directory',
        extraDir,
        '--numeric-owner',
        '--owner=0',
        '--group=0',
        ...dated,
        ...extra.map((f) => `./${f.name}`),
      ]);
    }
    await fsp.rename(tmp, abs);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  } finally {
    await fsp.rm(extraDir, { recursive: true, force: true });
  }
}
