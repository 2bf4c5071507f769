// A counting proxy between the kiln client and the daemon: a unix socket of our own that pipes every
// connection to the daemon's socket and counts the bytes each way. The bench measures an upload by
// what crosses the socket, not by what the client says it sent (the client cannot count the file
// list, the HTTP framing, or what it re-sends on a retry).

import * as fsp from 'node:fs/promises';
import * as net from 'node:net';

export interface CountingProxy {
  /** The socket clients connect to. */
  readonly path: string;
  /** Bytes received from clients and passed on to the target, since the proxy started. */
  readonly clientToTarget: () => number;
  /** Bytes received from the target and passed back to clients. */
  readonly targetToClient: () => number;
  /** Stops listening and drops the connections still open. */
  close(): Promise<void>;
}

/** Listens on LISTEN (a unix socket path, replaced if a stale one is there) and forwards to TARGET. */
export async function startCountingProxy(listen: string, target: string): Promise<CountingProxy> {
  let up = 0;
  let down = 0;
  const open = new Set<net.Socket>();
  // Half-open both ways: an HTTP client may end its side after the request and still read the reply.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const daemon = net.connect({ path: target, allowHalfOpen: true });
    for (const s of [client, daemon]) {
      open.add(s);
      s.once('close', () => open.delete(s));
    }
    // A 'data' listener next to pipe() sees the same chunks; pipe() still handles backpressure.
    client.on('data', (b: Buffer) => (up += b.length));
    daemon.on('data', (b: Buffer) => (down += b.length));
    client.pipe(daemon);
    daemon.pipe(client);
    // One side failing ends the other, as a direct connection would (and an error, even a second
    // one, must never become an uncaught exception of the benchmark).
    client.on('error', () => daemon.destroy());
    daemon.on('error', () => client.destroy());
  });
  await fsp.rm(listen, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    path: listen,
    clientToTarget: () => up,
    targetToClient: () => down,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
