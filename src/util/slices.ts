// Synchronous file-system work done a slice at a time on the calling thread. The work is a generator
// that yields `undefined` when its slice has run long enough (the driver lets the event loop run,
// then resumes it) or a promise for something that cannot be done synchronously (mknod(1), say).
// A rejected promise is thrown back into the generator at the point it yielded.

export type SlicedWork = Generator<Promise<unknown> | undefined, void, unknown>;

/** A clock for one slice: `due()` is true once `ms` have passed since the slice began. */
export class SliceClock {
  private start = performance.now();
  constructor(private readonly ms: number) {}
  due(): boolean {
    return performance.now() - this.start >= this.ms;
  }
  restart(): void {
    this.start = performance.now();
  }
}

/** Runs `work` to its end, restarting `clock` each time it resumes after a yield. */
export async function runSliced(work: SlicedWork, clock: SliceClock): Promise<void> {
  clock.restart();
  let failure: { err: unknown } | undefined;
  for (;;) {
    const next = failure ? work.throw(failure.err) : work.next();
    failure = undefined;
    if (next.done) return;
    try {
      await (next.value ?? new Promise((resolve) => setImmediate(resolve)));
    } catch (err) {
      failure = { err };
    }
    clock.restart();
  }
}
