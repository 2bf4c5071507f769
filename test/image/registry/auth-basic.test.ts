// Basic authentication against docker-registry with an htpasswd file (bcrypt, as it requires).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ContentStore } from '../../../src/cache/content-store.js';
import { RegistryClient, RegistryError } from '../../../src/image/registry/index.js';
import { parsePlatform } from '../../../src/oci/index.js';
import { makeImage, startRegistry, tempDir, type RunningRegistry } from './helpers.js';

const USER = 'kiln';
const PASS = 's3cret-pass';
// `htpasswd -Bbn kiln s3cret-pass`, used when apache2-utils is not installed.
const FALLBACK_LINE = 'kiln:$2y$05$ajBxTB3SYoDKLRkSZhHSVe3qZDK7lNY9aapD/4TTh29zuyfnghMhS';

let reg: RunningRegistry;
let work: string;
let store: ContentStore;
const amd64 = parsePlatform('linux/amd64');

function htpasswdLine(): string {
  try {
    return execFileSync('htpasswd', ['-Bbn', USER, PASS], { encoding: 'utf8' }).trim();
  } catch {
    return FALLBACK_LINE;
  }
}

beforeAll(async () => {
  work = await tempDir('kiln-basic-');
  const file = path.join(work, 'htpasswd');
  await fs.writeFile(file, htpasswdLine() + '\n');
  reg = await startRegistry({ kind: 'htpasswd', file });
  store = new ContentStore(path.join(work, 'store'));
});
afterAll(async () => {
  await reg?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

async function dockerConfig(name: string, auths: Record<string, unknown>): Promise<string> {
  const p = path.join(work, name);
  await fs.writeFile(p, JSON.stringify({ auths }));
  return p;
}

describe('basic auth (htpasswd)', () => {
  it('refuses anonymous access, naming the registry', async () => {
    const img = await makeImage(store, amd64, { 'a.txt': 'basic' });
    const err = await new RegistryClient({ dockerConfigPath: false }).push(`${reg.host}/private/app:1`, img, store).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(new RegExp(`registry ${reg.host} wants basic authentication and no credentials are configured`));
  });

  it('pushes and pulls with credentials from a docker config.json (base64 auth)', async () => {
    const img = await makeImage(store, amd64, { 'b.txt': 'basic auth works' });
    const cfg = await dockerConfig('config-auth.json', { [reg.host]: { auth: Buffer.from(`${USER}:${PASS}`).toString('base64') } });
    const client = new RegistryClient({ dockerConfigPath: cfg });
    expect((await client.push(`${reg.host}/private/app:2`, img, store)).digest).toBe(img.digest);
    const dst = new ContentStore(path.join(work, 'pulled'));
    const image = await new RegistryClient({ dockerConfigPath: cfg }).pull(`${reg.host}/private/app:2`, dst, { platform: amd64 });
    expect(image.digest).toBe(img.digest);
    expect(await dst.has(image.manifest.layers[0]!.digest)).toBe(true);
  });

  it('accepts username/password entries keyed by URL', async () => {
    const cfg = await dockerConfig('config-userpass.json', { [`https://${reg.host}`]: { username: USER, password: PASS } });
    const image = await new RegistryClient({ dockerConfigPath: cfg }).resolve(`${reg.host}/private/app:2`, { platform: amd64 });
    expect(image.manifest.layers).toHaveLength(1);
  });

  it('reports refused credentials as HTTP 401 from the registry', async () => {
    const err = await new RegistryClient({ credentials: { [reg.host]: { username: USER, password: 'wrong' } } })
      .resolve(`${reg.host}/private/app:2`)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
    expect((err as Error).message).toMatch(new RegExp(`registry ${reg.host} repository private/app: manifest 2: HTTP 401`));
  });
});
