// Admission of builds into a daemon: at most `limit` run at once; the others wait in line. Lines are
// kept per client and served in turn (round robin), each first in first out, so a client that sends
// fifty builds delays another client's one build by at most one turn, not by fifty builds.

export interface Slot {
  /** Frees the slot for the next build in line. Idempotent. */
  release(): void;
}

interface Waiter {
  grant: (slot: Slot) => void;
}

export class FairScheduler {
  private running = 0;
  /** Waiting builds per client, in arrival order. */
  private readonly lines = new Map<string, Waiter[]>();
  /** Clients with waiting builds, in the order they get their next turn. */
  private readonly turns: string[] = [];

  constructor(private limit: number) {
    if (!(limit >= 1)) throw new Error(`build concurrency must be at least 1, got ${limit}`);
  }

  get active(): number {
    return this.running;
  }

  get waiting(): number {
    let n = 0;
    for (const line of this.lines.values()) n += line.length;
    return n;
  }

  /**
   * Resolves with a slot when it is this build's turn. `onQueued` is told the number of builds ahead
   * when it has to wait. An aborted signal takes the build out of line (rejecting with its reason).
   */
  acquire(client: string, signal?: AbortSignal, onQueued?: (ahead: number) => void): Promise<Slot> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.running < this.limit && this.waiting === 0) return Promise.resolve(this.grant());
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (slot) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(slot);
        },
      };
      const onAbort = () => {
        const line = this.lines.get(client);
        const i = line?.indexOf(waiter) ?? -1;
        if (line && i >= 0) {
          line.splice(i, 1);
          if (line.length === 0) this.dropClient(client);
        }
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const ahead = this.running >= this.limit ? this.waiting + 1 : this.waiting;
      let line = this.lines.get(client);
      if (!line) {
        line = [];
        this.lines.set(client, line);
        this.turns.push(client);
      }
      line.push(waiter);
      onQueued?.(ahead);
      this.pump();
    });
  }

  private grant(): Slot {
    this.running++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.running--;
        this.pump();
      },
    };
  }

  private pump(): void {
    while (this.running < this.limit && this.turns.length > 0) {
      const client = this.turns.shift()!;
      const line = this.lines.get(client)!;
      const next = line.shift()!;
      if (line.length > 0) this.turns.push(client);
      else this.lines.delete(client);
      next.grant(this.grant());
    }
  }

  private dropClient(client: string): void {
    this.lines.delete(client);
    const i = this.turns.indexOf(client);
    if (i >= 0) this.turns.splice(i, 1);
  }
}
