// SSH agent forwarding for `RUN --mount=type=ssh`: the step gets a unix socket of kiln's own in a
// private directory (never the user's socket path), and each connection to it is piped to a fresh
// connection to the agent (a local socket in embedded mode, the client's agent through the daemon).

import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';

/** An agent the build may use, by `--ssh` id: every call opens one new connection to it. */
export interface SshAgent {
  connect(signal?: AbortSignal): Promise<Duplex>;
}

/** SSH agents by id (`--ssh default`, `--ssh ID=...`). */
export type SshAgents = ReadonlyMap<string, SshAgent>;

/** An agent behind a unix socket on this host. */
export function socketAgent(socketPath: string): SshAgent {
  return {
    connect: () =>
      new Promise((resolve, reject) => {
        const s = net.connect(socketPath);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      }),
  };
}

export interface AgentProxy {
  /** The socket's host path, to bind-mount into the step. */
  socket: string;
  close(): Promise<void>;
}

/**
 * Serves a proxy socket for `agent` in a new private directory under `tmpDir`, owned and moded as
 * the mount asks. `close` stops it, cuts open connections and removes the directory.
 */
export async function serveAgentProxy(
  tmpDir: string,
  agent: SshAgent,
  opts: { mode: number; uid: number; gid: number; signal?: AbortSignal },
): Promise<AgentProxy> {
  await fsp.mkdir(tmpDir, { recursive: true });
  const dir = await fsp.mkdtemp(path.join(tmpDir, 'ssh-'));
  await fsp.chmod(dir, 0o700);
  const socket = path.join(dir, 'agent.sock');
  const open = new Set<Duplex>();
  const server = net.createServer((conn) => {
    open.add(conn);
    conn.on('close', () => open.delete(conn));
    conn.on('error', () => conn.destroy());
    conn.pause();
    agent.connect(opts.signal).then(
      (upstream) => {
        open.add(upstream);
        upstream.on('close', () => {
          open.delete(upstream);
          conn.destroy();
        });
        upstream.on('error', () => upstream.destroy());
        conn.on('close', () => upstream.destroy());
        conn.pipe(upstream);
        upstream.pipe(conn);
        conn.resume();
      },
      () => conn.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const close = async () => {
    for (const s of open) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await fsp.rm(dir, { recursive: true, force: true });
  };
  try {
    await fsp.chown(socket, opts.uid, opts.gid);
    await fsp.chmod(socket, opts.mode);
  } catch (err) {
    await close();
    throw err;
  }
  return { socket, close };
}
