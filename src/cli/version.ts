// kiln's version, from package.json (read on demand so `kiln --version` stays cheap).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function kilnVersion(): string {
  const pkgPath = fileURLToPath(new URL('../../package.json', import.meta.url));
  return (JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string }).version;
}
