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

/** Copies the rootfs into `dest` (created if missing), keeping modes, owners, links and xattrs. */
export async function exportLocal(rootfs: string, dest: string): Promise<void> {
  await fsp.mkdir(dest, { recursive: true });
  // cp -a never follows symlinks inside the source, so a hostile image cannot make it read the host.
  await run('cp', ['-a', '--no-target-directory', '--reflink=auto', rootfs + '/.', path.resolve(dest)]);
}

/** Writes the rootfs as one tarball at `dest` (through a temporary file). */
export async function exportTar(rootfs: string, dest: string): Promise<void> {
  const abs = path.resolve(dest);
  const tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.kiln-tmp-${process.pid}`);
  try {
    await run('tar', ['--create', '--file', tmp, '--directory', rootfs, '--numeric-owner', '--xattrs', '--xattrs-include=*', '--sort=name', '.']);
    await fsp.rename(tmp, abs);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
