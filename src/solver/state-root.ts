// Where kiln keeps everything: one root directory. Two roots never share state, so tests and CI
// workers can run side by side.

import * as os from 'node:os';
import * as path from 'node:path';

export function defaultRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_ROOT) return path.resolve(env.KILN_ROOT);
  if (process.getuid?.() === 0) return '/var/lib/kiln';
  return path.join(env.XDG_DATA_HOME ?? path.join(os.homedir(), '.local', 'share'), 'kiln');
}

/** The rooms' directories under a root. */
export function rootLayout(root: string) {
  const r = path.resolve(root);
  return {
    root: r,
    content: path.join(r, 'content'),
    snapshots: path.join(r, 'snapshots'),
    records: path.join(r, 'records'),
    images: path.join(r, 'images.json'),
    executor: path.join(r, 'executor'),
    cacheMounts: path.join(r, 'cache-mounts'),
    tmp: path.join(r, 'tmp'),
  };
}

export type RootLayout = ReturnType<typeof rootLayout>;
