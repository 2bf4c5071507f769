// KILN_EXTRA_CA_CERTS: the certificates the `kiln` command takes over from NODE_EXTRA_CA_CERTS
// (src/cli/kiln.sh) are trusted by kiln's TLS clients, in addition to Node's bundled roots, and a
// file that cannot be used only costs a warning. Against a loopback https server whose certificate
// a test CA signed.
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { clientSecureContext } from '../../src/util/extra-ca.js';
import { httpRequest } from '../../src/util/http-request.js';
import { makeTestTls } from '../helpers/tls.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-extra-ca-'));
const certs = makeTestTls(dir);
let server: https.Server;
let port = 0;
const savedEnv = process.env.KILN_EXTRA_CA_CERTS;

beforeAll(async () => {
  server = https.createServer({ cert: fs.readFileSync(certs.cert), key: fs.readFileSync(certs.key) }, (_req, res) => res.end('trusted'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  if (savedEnv === undefined) delete process.env.KILN_EXTRA_CA_CERTS;
  else process.env.KILN_EXTRA_CA_CERTS = savedEnv;
  await new Promise((r) => server.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The outcome of a TLS handshake with the test server under `secureContext` (Node's default when undefined). */
function handshake(secureContext: tls.SecureContext | undefined): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...(secureContext ? { secureContext } : {}) }, () => {
      socket.end();
      resolve('authorized');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('KILN_EXTRA_CA_CERTS', () => {
  it("trusts the file's certificates, where Node's default trust refuses the server", async () => {
    expect(await clientSecureContext({})).toBeUndefined();
    expect(await handshake(undefined)).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    // The file a company hands out: other text around the PEM block, as ca-certificates writes it.
    const bundle = path.join(dir, 'bundle.pem');
    fs.writeFileSync(bundle, `# kiln test bundle\n${fs.readFileSync(certs.ca, 'utf8')}\n`);
    const context = await clientSecureContext({ KILN_EXTRA_CA_CERTS: bundle });
    expect(context).toBeDefined();
    expect(await handshake(context)).toBe('authorized');
    // Made once per file, not per connection.
    expect(await clientSecureContext({ KILN_EXTRA_CA_CERTS: bundle })).toBe(context);
  });

  it('warns as Node does, and keeps the default trust, when the file is missing or holds no certificate', async () => {
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const missing = path.join(dir, 'missing.pem');
      expect(await clientSecureContext({ KILN_EXTRA_CA_CERTS: missing })).toBeUndefined();
      expect(String(warn.mock.calls[0]?.[0])).toMatch(new RegExp(`^Ignoring extra certs from \`${missing}\`, load failed: ENOENT`));
      const junk = path.join(dir, 'junk.pem');
      fs.writeFileSync(junk, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
      expect(await clientSecureContext({ KILN_EXTRA_CA_CERTS: junk })).toBeUndefined();
      expect(String(warn.mock.calls[1]?.[0])).toBe(`Ignoring extra certs from \`${junk}\`, load failed: no certificate in it`);
    } finally {
      warn.mockRestore();
    }
  });

  it("reaches httpRequest's https connections (the registry client's and ADD <url>'s)", async () => {
    process.env.KILN_EXTRA_CA_CERTS = certs.ca;
    const res = await httpRequest(`https://127.0.0.1:${port}/v2/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('trusted');
  });
});
