// A real `kiln daemon` process for tests (the compiled binary, as a user starts it) and a kiln client
// process talking to it. Everything listens on a unix socket in a temporary directory, or on loopback.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { testEnv } from './env.js';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const KILN = path.join(REPO, 'dist', 'bin', 'kiln.js');
/** The `kiln` command as installed (package.json "bin"): the sh script that starts KILN. */
export const KILN_COMMAND = path.join(REPO, 'dist', 'bin', 'kiln');

export interface DaemonProc {
  proc: ChildProcess;
  pid: number;
  root: string;
  /** The unix socket it serves on. */
  socket: string;
  addr: string;
  /** Its log so far (stderr). */
  log(): string;
  /** SIGTERM and wait for the exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface DaemonStartOptions {
  root?: string;
  /** Extra daemon.json keys (the registry mirror for the test registry is always there). */
  config?: Record<string, unknown>;
  args?: string[];
  /** Listen on this socket (default: a new one in a temporary directory). */
  socket?: string;
}

/** Every daemon and client process a test started, so a failing test leaves none running. */
const started = new Set<ChildProcess>();

/** Kills (SIGKILL) whatever this file's processes are still running; for afterAll. */
export async function killStarted(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const p of started) {
    if (p.exitCode === null && p.signalCode === null) {
      waits.push(new Promise((r) => p.once('exit', r)));
      p.kill('SIGKILL');
    }
  }
  started.clear();
  await Promise.all(waits);
}

/** A fresh directory under the OS temp dir, removed by the caller. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Starts `kiln daemon` and resolves once it answers /_ping. */
export async function startDaemon(opts: DaemonStartOptions = {}): Promise<DaemonProc> {
  const dir = tempDir('kiln-daemon-');
  const root = opts.root ?? path.join(dir, 'root');
  const socket = opts.socket ?? path.join(dir, 'kiln.sock');
  const config = path.join(dir, 'daemon.json');
  fs.writeFileSync(config, JSON.stringify({ 'registry-mirrors': [`http://${testEnv().registry}`], ...opts.config }));
  const proc = spawn(KILN_COMMAND, ['daemon', '--root', root, '--addr', `unix://${socket}`, '--config', config, ...(opts.args ?? [])], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, KILN_CONFIG: config },
  });
  started.add(proc);
  let log = '';
  proc.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : null))),
  );
  const d: DaemonProc = {
    proc,
    pid: proc.pid!,
    root,
    socket,
    addr: `unix://${socket}`,
    log: () => log,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`kiln daemon exited at start: ${log}`);
    if (await ping(socket)) return d;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`kiln daemon did not answer within 20 s: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function ping(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath: socket, path: '/_ping', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => (req.destroy(), resolve(false)));
  });
}

/**
 * The smallest well-formed POST /v1/builds body (a synced context that does not exist), with
 * `fields` laid over it: for tests of what the daemon accepts or refuses in a request.
 */
export function minimalBuildRequest(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    context: { type: 'synced', id: 'x', session: 'y' },
    dockerfile: { name: 'Dockerfile', text: 'FROM scratch\n' },
    buildArgs: {},
    labels: {},
    outputs: [],
    network: 'host',
    noCache: false,
    pull: false,
    dryRun: false,
    ...fields,
  };
}

/** One HTTP request to the daemon's socket, body read whole. */
export function request(
  socket: string,
  method: string,
  urlPath: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path: urlPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export interface ClientRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the kiln client (`dist/bin/kiln ARGS`, the installed command) to completion. */
export function kilnClient(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string; timeoutMs?: number } = {},
): Promise<ClientRun> {
  const child = spawnClient(args, opts);
  return child.done;
}

/** Starts the kiln client; `done` resolves when it exits. */
export function spawnClient(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string | Buffer; cwd?: string; timeoutMs?: number } = {},
): { proc: ChildProcess; done: Promise<ClientRun> } {
  const proc = spawn(KILN_COMMAND, args, {
    cwd: opts.cwd ?? REPO,
    env: { ...process.env, BUILDKIT_PROGRESS: '', ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: opts.timeoutMs ?? 300_000,
  });
  started.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  proc.stdin!.on('error', () => undefined);
  proc.stdin!.end(opts.input ?? '');
  const done = new Promise<ClientRun>((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
  return { proc, done };
}

/** Mount points below `dir` (what a build left mounted). */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(dir + '/')));
}

/** Processes whose command line mentions `text` (runc containers of a root, say). */
export function processesMentioning(text: string): number[] {
  const out: number[] = [];
  for (const pid of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(text) && Number(pid) !== process.pid) out.push(Number(pid));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Makes a build context directory from a map of relative paths to contents. */
export function makeContext(files: Record<string, string>): string {
  const dir = tempDir('kiln-ctx-');
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
  return dir;
}

/** Resident set size of a process now and at its peak, in bytes (from /proc). */
export function rss(pid: number): { now: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { now: kb('VmRSS'), peak: kb('VmHWM') };
}

/**
 * A unix-socket proxy in front of the daemon that counts the bytes clients send through it: what
 * really crossed the socket, not what the client says it sent.
 */
export async function countingProxy(target: string): Promise<{ addr: string; sent(): number; reset(): void; close(): Promise<void> }> {
  const net = await import('node:net');
  const socket = path.join(tempDir('kiln-proxy-'), 'proxy.sock');
  let sent = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    client.on('data', (c: Buffer) => (sent += c.length));
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => (client.destroy(), upstream.destroy());
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    addr: `unix://${socket}`,
    sent: () => sent,
    reset: () => void (sent = 0),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
