// Where a daemon listens: unix sockets (mode 0660, a chosen group) and TCP, which is TLS with client
// certificates checked against a CA, as dockerd and buildkitd do it. Plain TCP is refused unless it
// is on loopback and explicitly asked for: anyone who can reach the API can run builds as root.

import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import { lookupGroup } from '../fsutil/rootfs-users.js';

export { DEFAULT_SOCKET, formatAddress, parseAddress, type ListenAddress, type TlsFiles } from './address.js';
import { formatAddress, type ListenAddress, type TlsFiles } from './address.js';

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));
}

export interface ServerSettings {
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
  insecureTcp: boolean;
  maxHeaderBytes: number;
}

/** Reads the TLS files (all three, or none), naming the one that cannot be read. */
export function readTls(files: TlsFiles): ServerSettings['tls'] {
  const given = [files.ca, files.cert, files.key].filter((f) => f !== undefined).length;
  if (given === 0) return undefined;
  if (given !== 3) throw new Error('TLS needs all of --tlscacert, --tlscert and --tlskey');
  const read = (flag: string, file: string) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new Error(`${flag} ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  };
  return { ca: read('--tlscacert', files.ca!), cert: read('--tlscert', files.cert!), key: read('--tlskey', files.key!) };
}

/** Refuses an address the settings cannot serve safely, before anything starts. */
export function checkAddress(a: ListenAddress, s: ServerSettings): void {
  if (a.kind !== 'tcp' || s.tls) return;
  if (!s.insecureTcp)
    throw new Error(
      `${formatAddress(a)}: TCP is served only with TLS (--tlscacert, --tlscert, --tlskey); for a loopback address without TLS, add --insecure-tcp`,
    );
  if (!isLoopback(a.host)) throw new Error(`${formatAddress(a)}: --insecure-tcp is allowed on loopback addresses only (127.0.0.1, ::1)`);
}

/** The node server for one address: https requiring a client certificate from the CA on TLS TCP. */
export function serverFactory(a: ListenAddress, s: ServerSettings) {
  return (handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): http.Server => {
    const base = { maxHeaderSize: s.maxHeaderBytes };
    const server =
      a.kind === 'tcp' && s.tls
        ? https.createServer(
            { ...base, ca: s.tls.ca, cert: s.tls.cert, key: s.tls.key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
            handler,
          )
        : http.createServer(base, handler);
    // Uploads and builds are long: no whole-request deadline, but headers must come promptly.
    server.requestTimeout = 0;
    server.headersTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    return server as http.Server;
  };
}

/**
 * Makes a unix socket path ready to listen on: its directory exists, and a socket file left by a
 * killed daemon is removed, but one a live daemon answers on is not taken over.
 */
export async function prepareSocketPath(socket: string): Promise<void> {
  await fsp.mkdir(path.dirname(socket), { recursive: true, mode: 0o755 });
  const st = await fsp.lstat(socket).catch(() => undefined);
  if (!st) return;
  if (!st.isSocket()) throw new Error(`${socket} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(socket);
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });
  if (live) throw new Error(`${socket}: another daemon is listening there`);
  await fsp.rm(socket, { force: true });
}

/** Mode 0660, owned by root and `group` (name or number, from this host's /etc/group), as dockerd's socket. */
export async function secureSocket(socket: string, group: string | undefined): Promise<void> {
  let gid = 0;
  if (group !== undefined) {
    try {
      // The host's own group database, read as a rootfs's is for COPY --chown: "/" is the root.
      gid = (await lookupGroup('/', group)).gid;
    } catch {
      throw new Error(`--group ${group}: no such group in /etc/group`);
    }
  }
  await fsp.chown(socket, 0, gid);
  await fsp.chmod(socket, 0o660);
}
