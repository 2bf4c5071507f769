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

/** Numbers vertices in the order they are first announced and times them. */
export class ProgressTracker {
  private next = 1;
  constructor(private readonly sink: ProgressSink) {}

  message(level: MessageEvent['level'], text: string): void {
    this.sink({ type: 'message', level, text });
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
    return {
      id,
      log: (stream, data) => sink({ type: 'log', id, stream, atMs: Date.now() - started, data }),
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
