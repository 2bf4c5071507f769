// The certificates kiln's TLS clients trust: Node's bundled roots, plus those of the file
// KILN_EXTRA_CA_CERTS names.
//
// Why kiln reads that file and not Node: the `kiln` command (src/cli/kiln.sh) hands
// NODE_EXTRA_CA_CERTS over as KILN_EXTRA_CA_CERTS, because Node 20 parses it, with all of its
// bundled roots, at every start (35-40 ms) though most kiln commands open no TLS connection. So
// the file is read here, once, on the first TLS connection, and trusted as Node would have trusted
// it: in addition to the bundled roots, with a warning (and the bundled roots alone) when it
// cannot be read. Like Node's, it does not apply where a CA is given explicitly (the daemon
// client's --tlscacert).

import type * as Tls from 'node:tls';

const CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

let loaded: { file: string; context: Promise<Tls.SecureContext | undefined> } | undefined;

/**
 * The secure context for kiln's TLS clients: undefined when KILN_EXTRA_CA_CERTS is unset (Node's
 * default trust), else one context with the bundled roots and the file's certificates, made on
 * the first call and shared by every connection after it (a context per connection would parse
 * some 150 roots each time).
 */
export function clientSecureContext(env: NodeJS.ProcessEnv = process.env): Promise<Tls.SecureContext | undefined> {
  const file = env.KILN_EXTRA_CA_CERTS ?? '';
  if (file === '') return Promise.resolve(undefined);
  if (loaded?.file !== file) loaded = { file, context: makeContext(file) };
  return loaded.context;
}

async function makeContext(file: string): Promise<Tls.SecureContext | undefined> {
  const tls = await import('node:tls');
  const { X509Certificate } = await import('node:crypto');
  const fs = await import('node:fs/promises');
  let pems: string[];
  try {
    pems = ((await fs.readFile(file, 'utf8')).match(CERTIFICATE) ?? []).filter((pem) => {
      try {
        new X509Certificate(pem);
        return true;
      } catch {
        return false;
      }
    });
    if (pems.length === 0) throw new Error('no certificate in it');
  } catch (err) {
    // Node's own words for a NODE_EXTRA_CA_CERTS it cannot use, so the message is familiar.
    process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${(err as Error).message}`);
    return undefined;
  }
  return tls.createSecureContext({ ca: [...tls.rootCertificates, ...pems] });
}
