// The daemon's admission of builds: a limit at once, clients served in turn, FIFO within a client.
import { describe, expect, it } from 'vitest';
import { FairScheduler, type Slot } from '../../src/server/scheduler.js';

/** Lets pending promise callbacks run. */
const tick = () => new Promise((r) => setImmediate(r));

describe('FairScheduler', () => {
  it('admits up to the limit at once; the next waits until a slot is released', async () => {
    const s = new FairScheduler(2);
    const a = await s.acquire('x');
    const b = await s.acquire('y');
    let third: Slot | undefined;
    const ahead: number[] = [];
    void s.acquire('z', undefined, (n) => ahead.push(n)).then((slot) => (third = slot));
    await tick();
    expect(third).toBeUndefined();
    expect(ahead).toEqual([1]);
    expect([s.active, s.waiting]).toEqual([2, 1]);
    a.release();
    a.release(); // idempotent: does not free a second slot
    await tick();
    expect(third).toBeDefined();
    expect([s.active, s.waiting]).toEqual([2, 0]);
    b.release();
    third!.release();
    expect(s.active).toBe(0);
  });

  it('serves waiting clients in turn: one client with many builds cannot starve another', async () => {
    const s = new FairScheduler(1);
    const first = await s.acquire('busy');
    const order: string[] = [];
    // Each build, once admitted, notes its turn and finishes a moment later.
    const wait = (client: string, tag: string) =>
      s.acquire(client).then((slot) => {
        order.push(tag);
        setImmediate(() => slot.release());
      });
    const pending = [wait('busy', 'busy-1'), wait('busy', 'busy-2'), wait('busy', 'busy-3'), wait('quiet', 'quiet-1'), wait('other', 'other-1')];
    await tick();
    first.release();
    await Promise.all(pending);
    expect(order).toEqual(['busy-1', 'quiet-1', 'other-1', 'busy-2', 'busy-3']);
  });

  it('an aborted wait leaves the line and rejects with the reason; the others keep their turn', async () => {
    const s = new FairScheduler(1);
    const held = await s.acquire('a');
    const ac = new AbortController();
    const gone = s.acquire('b', ac.signal);
    let next: Slot | undefined;
    void s.acquire('c').then((slot) => (next = slot));
    ac.abort(new Error('client went away'));
    await expect(gone).rejects.toThrow('client went away');
    expect(s.waiting).toBe(1);
    held.release();
    await tick();
    expect(next).toBeDefined();
    await expect(s.acquire('d', AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
  });

  it('refuses a limit below one', () => {
    expect(() => new FairScheduler(0)).toThrow(/at least 1/);
  });
});
