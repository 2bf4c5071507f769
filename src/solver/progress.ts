// Progress events: what the solver tells the world while it builds. Plain data so the daemon can
// stream them; the cli renders them (plain, tty, rawjson, quiet).

export type VertexStatus = 'started' | 'cached' | 'done' | 'error';

export interface VertexEvent {
  type: 'vertex';
  /** Stable number of the vertex within this build (BuildKit's "#5"). */
  id: number;
  /** "[build 2/4] RUN make", "[internal] load metadata for docker.io/library/busybox:latest". */
  name: string;
  status: VertexStatus;
  /** Milliseconds since the vertex started (done / error). */
  durationMs?: number;
  /** Why the step ran instead of coming from the cache (issue: cache explanations). */
  reason?: string;
  error?: string;
}

export interface LogEvent {
  type: 'log';
  id: number;
  stream: 'stdout' | 'stderr';
  /** Milliseconds since the vertex started, for BuildKit-style "#5 0.512 text" lines. */
  atMs: number;
  data: string;
}

export interface MessageEvent {
  type: 'message';
  level: 'info' | 'warning';
  text: string;
}

export type ProgressEvent = VertexEvent | LogEvent | MessageEvent;
export type ProgressSink = (event: ProgressEvent) => void;

/** BuildKit's default limit of one step's log (both streams together): 2 MiB. */
export const DEFAULT_LOG_LIMIT_BYTES = 2 * 1024 * 1024;

/** "2MiB" as BuildKit writes the limit in its clipping line. */
function limitText(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)}MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return `${bytes}B`;
}

/**
 * Numbers vertices in the order they are first announced and times them. Each vertex's log is
 * clipped at `logLimitBytes` (-1: no limit), as BuildKit clips it: what passes the limit is dropped,
 * after one line saying so, so a step printing gigabytes costs neither memory nor a flooded
 * terminal, daemon stream or history. (A failed RUN's error still quotes its real last lines: the
 * executor keeps that tail itself.)
 */
export class ProgressTracker {
  private next = 1;
  private readonly logLimit: number;
  constructor(
    private readonly sink: ProgressSink,
    opts: { logLimitBytes?: number } = {},
  ) {
    this.logLimit = opts.logLimitBytes ?? DEFAULT_LOG_LIMIT_BYTES;
  }

  message(level: MessageEvent['level'], text: string): void {
    this.sink({ type: 'message', level, text });
  }

  /**
   * Runs `fn` as one vertex: done when it resolves, error (and the error rethrown) when it rejects.
   * A vertex with another ending (cached, a failure that is only a warning) uses start().
   */
  async step<T>(name: string, fn: (v: VertexHandle) => Promise<T>): Promise<T> {
    const v = this.start(name);
    try {
      const r = await fn(v);
      v.done();
      return r;
    } catch (err) {
      v.fail(err);
      throw err;
    }
  }

  /** Announces a vertex and returns its handle. */
  start(name: string): VertexHandle {
    const id = this.next++;
    const started = Date.now();
    const sink = this.sink;
    sink({ type: 'vertex', id, name, status: 'started' });
    let ended = false;
    const end = (status: VertexStatus, extra: Partial<VertexEvent> = {}) => {
      if (ended) return;
      ended = true;
      sink({ type: 'vertex', id, name, status, durationMs: Date.now() - started, ...extra });
    };
    const limit = this.logLimit;
    let logged = 0;
    let clipped = false;
    // Whether what was passed on so far ends a line: the clipping notice always starts one.
    let atLineStart = true;
    const log = (stream: 'stdout' | 'stderr', data: string) => {
      if (clipped) return;
      const atMs = Date.now() - started;
      if (limit >= 0) {
        const bytes = Buffer.byteLength(data);
        if (logged + bytes > limit) {
          clipped = true;
          const room = limit - logged;
          const kept = room > 0 ? Buffer.from(data).subarray(0, room).toString('utf8') : '';
          const sep = (kept === '' ? atLineStart : kept.endsWith('\n')) ? '' : '\n';
          sink({ type: 'log', id, stream, atMs, data: `${kept}${sep}[output clipped, log limit ${limitText(limit)} reached]\n` });
          return;
        }
        logged += bytes;
      }
      if (data !== '') atLineStart = data.endsWith('\n');
      sink({ type: 'log', id, stream, atMs, data });
    };
    return {
      id,
      log,
      cached: () => end('cached'),
      done: (reason) => end('done', reason ? { reason } : {}),
      fail: (err) => end('error', { error: err instanceof Error ? err.message : String(err) }),
    };
  }
}

export interface VertexHandle {
  id: number;
  log(stream: 'stdout' | 'stderr', data: string): void;
  cached(): void;
  done(reason?: string): void;
  fail(err: unknown): void;
}
