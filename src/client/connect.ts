// Which KilnClient a command uses: a daemon when one is named (--addr, KILN_HOST), else the daemon on
// the default socket when one answers there (a daemon owns its root, so an embedded build would only
// wait for its lock), else an embedded server in this process.

import * as fsp from 'node:fs/promises';
import { DEFAULT_SOCKET, type TlsFiles } from '../server/address.js';
import type { KilnClient } from './client.js';
import { remoteClient } from './remote.js';
import { splitAddresses } from './sticky.js';
import { endpoint, send, type Endpoint } from './transport.js';

export interface ConnectOptions {
  /** --root: an explicit root means embedded mode on it (unless a daemon is named too). */
  root?: string;
  env: NodeJS.ProcessEnv;
}

/**
 * The daemons named by the environment (KILN_HOST, with KILN_TLS_CACERT/CERT/KEY), if any: one
 * address, or several separated by commas (a fleet: each build goes to the daemon its context
 * picks, see sticky.ts). The TLS files are the same for all.
 */
export function namedDaemons(env: NodeJS.ProcessEnv): Endpoint[] | undefined {
  const addrs = splitAddresses(env.KILN_HOST ?? '');
  if (addrs.length === 0) return undefined;
  const tls: TlsFiles = { ca: env.KILN_TLS_CACERT || undefined, cert: env.KILN_TLS_CERT || undefined, key: env.KILN_TLS_KEY || undefined };
  return addrs.map((addr) => endpoint(addr, tls));
}

export async function connect(opts: ConnectOptions): Promise<KilnClient> {
  const named = namedDaemons(opts.env);
  if (named) return remoteClient(named);
  if (opts.root === undefined && opts.env.KILN_ROOT === undefined) {
    const socket = opts.env.KILN_DEFAULT_SOCKET || DEFAULT_SOCKET;
    if (await answers(socket)) return remoteClient(endpoint(`unix://${socket}`));
  }
  // Loaded only here: the embedded server is most of kiln's code, and a remote client needs none of it.
  const { embeddedClient } = await import('./embedded.js');
  return embeddedClient(opts.root !== undefined ? { root: opts.root } : {});
}

/** A daemon answers /_ping on this socket (quickly: this runs before every command). */
async function answers(socket: string): Promise<boolean> {
  const st = await fsp.lstat(socket).catch(() => undefined);
  if (!st?.isSocket()) return false;
  try {
    const res = await send(endpoint(`unix://${socket}`), 'GET', '/_ping', { connectTimeoutMs: 1000, signal: AbortSignal.timeout(2000) });
    res.resume();
    return res.statusCode === 200;
  } catch {
    return false;
  }
}
