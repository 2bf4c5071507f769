// A real, tiny rootfs for executor tests: Debian's static busybox with its applets linked, plus the
// /etc/passwd and /etc/group the user tests need.

import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

export const PASSWD = ['root:x:0:0:root:/root:/bin/sh', 'alice:x:1000:1000:Alice:/home/alice:/bin/sh', 'bob:x:1001:1001::/home/bob:/bin/sh', ''].join('\n');

export const GROUP = ['root:x:0:', 'alice:x:1000:', 'bob:x:1001:', 'staff:x:50:alice', 'audio:x:29:alice,bob', ''].join('\n');

export interface TestRoot {
  /** Holds rootfs/ and state/; removed by cleanup(). */
  dir: string;
  rootfs: string;
  stateDir: string;
  cleanup(): Promise<void>;
}

const BUSYBOX = '/bin/busybox';
let applets: string[] | undefined;

export async function makeRootfs(opts: { etc?: boolean } = {}): Promise<TestRoot> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-exec-'));
  const rootfs = path.join(dir, 'rootfs');
  const stateDir = path.join(dir, 'state');
  await fsp.mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await fsp.copyFile(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
  await fsp.chmod(path.join(rootfs, 'bin', 'busybox'), 0o755);
  applets ??= execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a !== '' && a !== 'busybox');
  for (const a of applets) await fsp.symlink('busybox', path.join(rootfs, 'bin', a));
  await fsp.mkdir(path.join(rootfs, 'tmp'), { mode: 0o1777 });
  await fsp.chmod(path.join(rootfs, 'tmp'), 0o1777);
  if (opts.etc ?? true) {
    await fsp.mkdir(path.join(rootfs, 'etc'));
    await fsp.writeFile(path.join(rootfs, 'etc', 'passwd'), PASSWD);
    await fsp.writeFile(path.join(rootfs, 'etc', 'group'), GROUP);
  }
  return {
    dir,
    rootfs,
    stateDir,
    cleanup: () => fsp.rm(dir, { recursive: true, force: true }),
  };
}
