// Daemon addresses as users write them (unix:///path.sock, tcp://HOST:PORT). Apart from listen.ts so
// that a client, which only parses an address, does not load the server's http/https/TLS modules.

import * as path from 'node:path';

export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export const DEFAULT_SOCKET = '/run/kiln/kiln.sock';

export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

/** "unix:///run/kiln/kiln.sock", "tcp://0.0.0.0:1234", "tcp://[::1]:1234". */
export function parseAddress(addr: string): ListenAddress {
  if (addr.startsWith('unix://')) {
    const p = addr.slice('unix://'.length);
    if (!path.isAbsolute(p)) throw new Error(`address ${addr}: a unix socket path must be absolute`);
    return { kind: 'unix', path: p };
  }
  const m = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(addr);
  if (m) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new Error(`address ${addr}: port out of range`);
    return { kind: 'tcp', host: m[1]!.replace(/^\[|\]$/g, ''), port };
  }
  throw new Error(`address ${JSON.stringify(addr)}: want unix:///path/to.sock or tcp://HOST:PORT`);
}

export function formatAddress(a: ListenAddress): string {
  return a.kind === 'unix' ? `unix://${a.path}` : `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
