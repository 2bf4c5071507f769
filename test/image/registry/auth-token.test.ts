// The bearer-token flow against docker-registry configured with `auth: token`, and a small token
// server in this test that signs JWTs with a key whose self-signed certificate is the registry's
// rootcertbundle (openssl makes both).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import * as path from 'node:path';
import { ContentStore } from '../../../src/cache/content-store.js';
import { RegistryClient, RegistryError, type TransferEvent } from '../../../src/image/registry/index.js';
import { parsePlatform } from '../../../src/oci/index.js';
import { freePort, makeImage, startRegistry, tempDir, type RunningRegistry } from './helpers.js';

const SERVICE = 'kiln-test-registry';
const ISSUER = 'kiln-test-issuer';
const USER = 'builder';
const PASS = 'token-pass';
const amd64 = parsePlatform('linux/amd64');

interface TokenRequest {
  account?: string;
  authorized: boolean;
  scopes: string[];
  service: string | null;
}

let reg: RunningRegistry;
let work: string;
let store: ContentStore;
let tokenServer: Server;
const requests: TokenRequest[] = [];
let responseField: 'token' | 'access_token' = 'token';

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

beforeAll(async () => {
  work = await tempDir('kiln-token-');
  const keyPath = path.join(work, 'key.pem');
  const certPath = path.join(work, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=kiln-token-issuer'],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(await fs.readFile(keyPath));
  const certDer = new X509Certificate(await fs.readFile(certPath)).raw;

  // Grants: anonymous may pull "public/*"; the user may pull and push anything.
  tokenServer = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const authz = req.headers.authorization;
    let account: string | undefined;
    if (authz) {
      const [user, pass] = Buffer.from(authz.replace(/^Basic /, ''), 'base64')
        .toString()
        .split(':');
      if (user !== USER || pass !== PASS) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"bad credentials"}');
        return;
      }
      account = user;
    }
    const scopes = url.searchParams.getAll('scope');
    requests.push({ account, authorized: !!account, scopes, service: url.searchParams.get('service') });
    const access = scopes.map((s) => {
      const [type, name, actions] = s.split(':') as [string, string, string];
      const wanted = actions.split(',');
      const granted = account ? wanted : name.startsWith('public/') ? wanted.filter((a) => a === 'pull') : [];
      return { type, name, actions: granted };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = { iss: ISSUER, sub: account ?? '', aud: SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ [responseField]: token, expires_in: 300 }));
  });
  const tokenPort = await freePort();
  await new Promise<void>((r) => tokenServer.listen(tokenPort, '127.0.0.1', r));
  reg = await startRegistry({ kind: 'token', realm: `http://127.0.0.1:${tokenPort}/token`, service: SERVICE, issuer: ISSUER, rootCertBundle: certPath });
  store = new ContentStore(path.join(work, 'store'));
});
afterAll(async () => {
  await reg?.stop();
  await new Promise((r) => tokenServer?.close(r));
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const creds = (): Record<string, { username: string; password: string }> => ({ [reg.host]: { username: USER, password: PASS } });

describe('bearer token auth', () => {
  it('pushes with a token for the user and pulls anonymously with an anonymous token', async () => {
    const img = await makeImage(store, amd64, { 't.txt': 'token flow' });
    requests.length = 0;
    const pushed = await new RegistryClient({ credentials: creds(), dockerConfigPath: false }).push(`${reg.host}/public/app:1`, img, store);
    expect(pushed.digest).toBe(img.digest);
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => r.account === USER && r.service === SERVICE)).toBe(true);
    expect(requests.flatMap((r) => r.scopes)).toContain('repository:public/app:pull,push');
    // One token serves the whole push: the client caches it per scope set.
    expect(requests.length).toBeLessThanOrEqual(2);

    requests.length = 0;
    responseField = 'access_token'; // some token servers answer OAuth-style
    const dst = new ContentStore(path.join(work, 'anon'));
    const image = await new RegistryClient({ dockerConfigPath: false }).pull(`${reg.host}/public/app:1`, dst, { platform: amd64 });
    responseField = 'token';
    expect(image.digest).toBe(img.digest);
    expect(await dst.has(image.manifest.layers[0]!.digest)).toBe(true);
    expect(requests.every((r) => !r.authorized)).toBe(true);
    expect(requests.flatMap((r) => r.scopes)).toEqual(expect.arrayContaining(['repository:public/app:pull']));
  });

  it('refuses an anonymous push, naming the registry and repository', async () => {
    const img = await makeImage(store, amd64, { 'x.txt': 'not allowed' });
    const err = await new RegistryClient({ dockerConfigPath: false }).push(`${reg.host}/public/denied:1`, img, store).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as RegistryError).status).toBe(401);
    expect((err as Error).message).toContain(`registry ${reg.host} repository public/denied`);
  });

  it('reads credentials from a docker config.json and mounts across repositories with a pull scope on the source', async () => {
    const img = await makeImage(store, amd64, { 'm.txt': 'mount under token auth' });
    const cfg = path.join(work, 'docker-config.json');
    await fs.writeFile(cfg, JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${USER}:${PASS}`).toString('base64') } } }));
    const client = new RegistryClient({ dockerConfigPath: cfg });
    await client.push(`${reg.host}/team/base:1`, img, store);
    requests.length = 0;
    const events: TransferEvent[] = [];
    await client.push(`${reg.host}/team/app:1`, img, store, { onEvent: (e) => events.push(e) });
    expect(events.filter((e) => e.kind === 'mounted')).toHaveLength(2);
    expect(requests.some((r) => r.scopes.includes('repository:team/base:pull') && r.scopes.includes('repository:team/app:pull,push'))).toBe(true);
  });

  it('reports a token server refusing the credentials', async () => {
    const err = await new RegistryClient({ credentials: { [reg.host]: { username: USER, password: 'nope' } } })
      .resolve(`${reg.host}/public/app:1`)
      .catch((e: unknown) => e);
    expect((err as Error).message).toMatch(new RegExp(`registry ${reg.host}.*token server http://127\\.0\\.0\\.1:\\d+/token answered 401 for user ${USER}`));
  });
});
