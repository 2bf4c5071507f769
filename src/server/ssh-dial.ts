// SSH agent forwarding through the daemon (docs/api.md, "SSH agents"): when a step connects to its
// agent socket, the daemon asks the build's client, on the build's event stream, to open a
// connection back (`{"type":"ssh-dial","id":SSH_ID,"conn":TOKEN}`); the client opens
// `GET /v1/builds/{BUILD}/ssh/{TOKEN}` with `Upgrade: kiln-ssh`, the daemon answers 101 and the
// connection is from then on the raw byte stream of one agent connection, piped to the step's.

import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { SshAgent, SshAgents } from '../solver/index.js';

/** How long a client has to dial back before the step's agent connection is refused. */
const DIAL_TIMEOUT_MS = 30_000;

export interface SshDialEvent {
  type: 'ssh-dial';
  /** The --ssh id. */
  id: string;
  /** One-time token naming this connection: the path's last segment. */
  conn: string;
}

export const SSH_UPGRADE_PROTOCOL = 'kiln-ssh';

interface Pending {
  build: string;
  resolve(s: Duplex): void;
  reject(err: Error): void;
}

export class SshDials {
  private readonly pending = new Map<string, Pending>();

  /** The agents a build's client offered, each dialling back over `sink`. */
  agentsFor(build: string, ids: readonly string[], sink: (e: SshDialEvent) => void): SshAgents {
    const agents = new Map<string, SshAgent>();
    for (const id of ids) {
      agents.set(id, {
        connect: (signal) =>
          new Promise<Duplex>((resolve, reject) => {
            const conn = randomBytes(16).toString('hex');
            const done = () => {
              clearTimeout(timer);
              signal?.removeEventListener('abort', onAbort);
              this.pending.delete(conn);
            };
            const fail = (err: Error) => (done(), reject(err));
            const onAbort = () => fail(new Error('build cancelled'));
            const timer = setTimeout(() => fail(new Error(`the client did not connect ssh agent ${id} within ${DIAL_TIMEOUT_MS / 1000} s`)), DIAL_TIMEOUT_MS);
            signal?.addEventListener('abort', onAbort, { once: true });
            this.pending.set(conn, { build, resolve: (s) => (done(), resolve(s)), reject: fail });
            sink({ type: 'ssh-dial', id, conn });
          }),
      });
    }
    return agents;
  }

  /**
   * The step waiting for connection `conn` of `build`, to hand the upgraded stream to; undefined
   * when none waits (the caller refuses the request). Each token is taken once.
   */
  claim(build: string, conn: string): ((socket: Duplex) => void) | undefined {
    const p = this.pending.get(conn);
    if (!p || p.build !== build) return undefined;
    this.pending.delete(conn);
    return p.resolve;
  }
}
