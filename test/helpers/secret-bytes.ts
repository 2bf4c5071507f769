// Where a secret's bytes could hide: every file under a directory, gzip files (and gzip-compressed
// layers inside tarballs) decompressed. Searching the bytes, not trusting the code.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { killStarted } from './daemon.js';

function contains(buf: Buffer, needle: Buffer): boolean {
  if (buf.includes(needle)) return true;
  if (buf.length > 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      return zlib.gunzipSync(buf).includes(needle);
    } catch {
      return false;
    }
  }
  return false;
}

/** Files under `dir` (or `dir` itself, a file) whose bytes contain `needle`; tarballs are opened. */
export function filesContaining(dir: string, needle: string): string[] {
  const n = Buffer.from(needle);
  const hits: string[] = [];
  const visit = (p: string) => {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p)) visit(path.join(p, e));
      return;
    }
    if (!st.isFile()) return;
    const buf = fs.readFileSync(p);
    if (contains(buf, n)) hits.push(p);
    else if (p.endsWith('.tar') || buf.subarray(257, 262).toString() === 'ustar') {
      const x = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-scan-'));
      try {
        execFileSync('tar', ['-xf', p, '-C', x], { stdio: 'ignore' });
        for (const h of filesContaining(x, needle)) hits.push(`${p}!${path.relative(x, h)}`);
      } catch {
        /* not a tarball after all */
      } finally {
        fs.rmSync(x, { recursive: true, force: true });
      }
    }
  };
  visit(dir);
  return hits;
}

/** A real ssh-agent on a socket in `dir`, with a fresh key loaded. */
/** The afterAll of a secrets test file: kiln processes, then the ssh-agents it started, then its directories. */
export async function cleanUp(dirs: string[], agents: number[]): Promise<void> {
  await killStarted();
  for (const pid of agents) {
    try {
      process.kill(pid);
    } catch {
      /* gone */
    }
  }
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
}

export function startAgent(dir: string, agents: number[]): { socket: string; comment: string } {
  const socket = path.join(dir, 'agent.sock');
  const out = execFileSync('ssh-agent', ['-a', socket]).toString();
  agents.push(Number(/SSH_AGENT_PID=(\d+)/.exec(out)![1]));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kiln-test-key', '-f', path.join(dir, 'key')]);
  execFileSync('ssh-add', [path.join(dir, 'key')], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: 'ignore' });
  return { socket, comment: 'kiln-test-key' };
}

/** A context with the host's ssh-add and its libraries under x/ (the Debian image has no ssh client). */
export function sshContext(dir: string, dockerfile: string): string {
  const ctx = path.join(dir, 'ctx');
  fs.mkdirSync(path.join(ctx, 'x'), { recursive: true });
  fs.copyFileSync('/usr/bin/ssh-add', path.join(ctx, 'x', 'ssh-add'));
  fs.chmodSync(path.join(ctx, 'x', 'ssh-add'), 0o755);
  for (const m of execFileSync('ldd', ['/usr/bin/ssh-add'])
    .toString()
    .matchAll(/=> (\/\S+)/g)) {
    fs.copyFileSync(fs.realpathSync(m[1]!), path.join(ctx, 'x', path.basename(m[1]!)));
  }
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), dockerfile);
  return ctx;
}

export const SECRET_DOCKERFILE = (base: string) => `FROM ${base}
RUN --mount=type=secret,id=fs,mode=0440,uid=12,gid=34 --mount=type=secret,id=es,env=ES_VALUE,required=true \\
    stat -c '%a %u %g' /run/secrets/fs && sha256sum < /run/secrets/fs && printf %s "$ES_VALUE" | sha256sum && \\
    test ! -e /run/secrets/es && cp /run/secrets/fs /dev/null && echo done > /result
RUN --mount=type=secret,id=absent,target=/opt/absent/file if [ -e /opt/absent/file ]; then echo present; else echo absent; fi
RUN test ! -e /run && test ! -e /opt && echo no-stubs
`;
