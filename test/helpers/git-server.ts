// Git repositories served on 127.0.0.1 by git's own servers, for the ADD-of-git tests: `git daemon`
// (git://) and `git http-backend` behind a tiny node HTTP server (http://, optionally with Basic
// auth). Each is started by the test and ended by its PID.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

/** git with no user or system config, a fixed identity and fixed dates (stable shas per content). */
export function gitIn(dir: string, args: string[], input?: string): string {
  return execFileSync('git', args, {
    cwd: dir,
    input,
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'kiln',
      GIT_AUTHOR_EMAIL: 'kiln@example.invalid',
      GIT_COMMITTER_NAME: 'kiln',
      GIT_COMMITTER_EMAIL: 'kiln@example.invalid',
      GIT_AUTHOR_DATE: '2024-01-02T03:04:05Z',
      GIT_COMMITTER_DATE: '2024-01-02T03:04:05Z',
    },
  }).trim();
}

/** A work repository at `dir` (branch main) with `files` committed; returns the commit sha. */
export function initRepo(dir: string, files: Record<string, string>, message = 'initial'): string {
  fs.mkdirSync(dir, { recursive: true });
  gitIn(dir, ['init', '-q', '-b', 'main']);
  return commitFiles(dir, files, message);
}

/** Writes `files` (content, or "->target" for a symlink) and commits them all; returns the sha. */
export function commitFiles(dir: string, files: Record<string, string>, message: string): string {
  for (const [name, content] of Object.entries(files)) {
    const p = path.join(dir, name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.rmSync(p, { force: true });
    if (content.startsWith('->')) fs.symlinkSync(content.slice(2), p);
    else fs.writeFileSync(p, content, { mode: name.endsWith('.sh') ? 0o755 : 0o644 });
  }
  gitIn(dir, ['add', '-A']);
  gitIn(dir, ['commit', '-q', '--allow-empty', '-m', message]);
  return gitIn(dir, ['rev-parse', 'HEAD']);
}

/** Publishes work repository `work` as bare `<base>/<name>` (replacing an earlier copy). */
export function publish(work: string, base: string, name: string): string {
  const bare = path.join(base, name);
  fs.rmSync(bare, { recursive: true, force: true });
  gitIn(base, ['clone', '-q', '--bare', '--no-local', work, bare]);
  // Fetching a commit by sha, as BuildKit does for a commit ref.
  gitIn(bare, ['config', 'uploadpack.allowReachableSHA1InWant', 'true']);
  return bare;
}

/** Pushes `work`'s branches and tags to its published copy (moves branches there). */
export function push(work: string, bare: string): void {
  gitIn(work, ['push', '-q', '--force', '--all', bare]);
  gitIn(work, ['push', '-q', '--force', '--tags', bare]);
}

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not listen on ${port}`);
}

export interface GitServer {
  /** Base URL: `${url}/NAME` is the repository `<base>/NAME`. */
  url: string;
  stop(): Promise<void>;
}

/** `git daemon` exporting every repository under `base`, on 127.0.0.1. */
export async function startGitDaemon(base: string): Promise<GitServer> {
  const port = await freePort();
  const child = spawn(
    'git',
    ['daemon', '--reuseaddr', '--export-all', '--enable=upload-pack', `--base-path=${base}`, '--listen=127.0.0.1', `--port=${port}`, base],
    {
      stdio: 'ignore',
      env: { PATH: process.env.PATH, HOME: base, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
    },
  );
  await waitForPort(port, child);
  return {
    url: `git://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null || child.pid === undefined) return;
      const gone = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      await gone;
    },
  };
}

/**
 * `git http-backend` (smart HTTP) for the repositories under `base`, through a node HTTP server on
 * 127.0.0.1; with `auth`, requests need that Basic user:password. `requests` counts what came in.
 */
export async function startHttpBackend(base: string, auth?: { user: string; password: string }): Promise<GitServer & { requests: string[] }> {
  const requests: string[] = [];
  const want = auth ? 'Basic ' + Buffer.from(`${auth.user}:${auth.password}`).toString('base64') : undefined;
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    // The scheme is case-insensitive (BuildKit sends "basic ...").
    if (want !== undefined && req.headers.authorization?.replace(/^basic /i, 'Basic ') !== want) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end();
      return;
    }
    const u = new URL(req.url ?? '/', 'http://x');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        GIT_PROJECT_ROOT: base,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: decodeURIComponent(u.pathname),
        QUERY_STRING: u.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) } : {}),
        REMOTE_ADDR: '127.0.0.1',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const i = line.indexOf(':');
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === 'status') status = Number(v.split(' ')[0]);
        else res.setHeader(k, v);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on('end', () => {
      if (!headersDone) res.writeHead(500);
      res.end();
    });
    cgi.on('error', () => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/**
 * sshd on 127.0.0.1 letting `root` in with the key whose public half is `authorizedKey` (git over
 * ssh runs `git-upload-pack` through it). Its host key, config and pid file live in `dir`.
 */
export async function startSshd(dir: string, authorizedKey: string): Promise<GitServer & { port: number }> {
  const port = await freePort();
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
  fs.writeFileSync(path.join(dir, 'authorized_keys'), authorizedKey, { mode: 0o600 });
  fs.writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_key')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      '',
    ].join('\n'),
  );
  // sshd's privilege separation directory (Debian's service makes it at boot).
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: 'ignore' });
  await waitForPort(port, child);
  return {
    port,
    url: `ssh://root@127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode !== null || child.pid === undefined) return;
      const gone = new Promise((r) => child.once('exit', r));
      process.kill(child.pid, 'SIGTERM');
      await gone;
    },
  };
}
