// `kiln build --secret` and `--ssh`, as buildx reads them. Parsing is pure; reading the values (a
// file, an environment variable) and finding agent sockets happens once the build is about to start.

import { existsSync, readFileSync, statSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { SshForward } from '../client/client.js';
import { UsageError } from './usage.js';

/** One --secret: where its value comes from. */
export interface SecretSpec {
  id: string;
  /** A file on this host. */
  file?: string;
  /** An environment variable. */
  env?: string;
}

/** One --ssh: an id and its agent sockets (none: $SSH_AUTH_SOCK). */
export interface SshSpec {
  id: string;
  paths: string[];
}

const ID = /^[A-Za-z0-9_.-][A-Za-z0-9_.\-/]{0,254}$/;

/**
 * `id=ID,src=PATH` | `id=ID,env=VAR` | `id=ID` (the variable ID) | `type=file|env,...`
 * (buildx's `type=env,src=VAR` names the variable with src).
 */
export function parseSecretFlag(value: string): SecretSpec {
  let type: 'file' | 'env' | undefined;
  const spec: Partial<SecretSpec> = {};
  let src: string | undefined;
  for (const field of value.split(',')) {
    const eq = field.indexOf('=');
    if (eq < 0) throw new UsageError(`invalid --secret ${JSON.stringify(value)}: ${JSON.stringify(field)} is not KEY=VALUE`);
    const key = field.slice(0, eq).trim().toLowerCase();
    const v = field.slice(eq + 1);
    switch (key) {
      case 'type':
        if (v !== 'file' && v !== 'env')
          throw new UsageError(`invalid --secret ${JSON.stringify(value)}: unsupported secret type ${JSON.stringify(v)} (file or env)`);
        type = v;
        break;
      case 'id':
        spec.id = v;
        break;
      case 'src':
      case 'source':
        src = v;
        break;
      case 'env':
        spec.env = v;
        break;
      default:
        throw new UsageError(`invalid --secret ${JSON.stringify(value)}: unexpected key ${JSON.stringify(key)} (id, type, src, env)`);
    }
  }
  if (type === 'env' && spec.env === undefined) spec.env = src;
  else if (src !== undefined) spec.file = src;
  if (spec.id === undefined && spec.file !== undefined) spec.id = path.basename(spec.file);
  if (spec.id === undefined || !ID.test(spec.id))
    throw new UsageError(`invalid --secret ${JSON.stringify(value)}: an id is required (letters, digits, "_", "-", ".", "/")`);
  if (spec.file === undefined && spec.env === undefined) spec.env = spec.id;
  return spec as SecretSpec;
}

/** `default` | `ID` | `ID=SOCKET[,SOCKET]`. */
export function parseSshFlag(value: string): SshSpec {
  const eq = value.indexOf('=');
  const id = eq < 0 ? value : value.slice(0, eq);
  if (!ID.test(id)) throw new UsageError(`invalid --ssh ${JSON.stringify(value)}: want default, ID or ID=SOCKET`);
  const paths =
    eq < 0
      ? []
      : value
          .slice(eq + 1)
          .split(',')
          .filter((p) => p !== '');
  return { id, paths };
}

/**
 * The values of the secrets, base64, by id. A file that cannot be read is an error; a variable that
 * is not set leaves the secret out (a step that requires it fails, as with BuildKit).
 */
export function loadSecrets(specs: readonly SecretSpec[], env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of specs) {
    if (s.file !== undefined) {
      try {
        out[s.id] = readFileSync(s.file).toString('base64');
      } catch (err) {
        // The error names the file, never its content.
        throw new UsageError(`--secret id=${s.id}: cannot read ${s.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    } else {
      const v = env[s.env!];
      if (v !== undefined) out[s.id] = Buffer.from(v, 'utf8').toString('base64');
    }
  }
  return out;
}

/** What each --ssh names: an agent socket (default: $SSH_AUTH_SOCK), or private key files. */
export type SshSource = { id: string; socket: string } | { id: string; keys: string[] };

export function resolveSsh(specs: readonly SshSpec[], env: NodeJS.ProcessEnv): SshSource[] {
  return specs.map((s) => {
    const paths = s.paths.length > 0 ? s.paths : env.SSH_AUTH_SOCK ? [env.SSH_AUTH_SOCK] : [];
    if (paths.length === 0) throw new UsageError(`--ssh ${s.id}: no agent socket or key file given and SSH_AUTH_SOCK is not set`);
    const kinds = paths.map((p) => {
      try {
        const st = statSync(p);
        if (st.isSocket()) return 'socket';
        if (st.isFile()) return 'key';
        throw new UsageError(`--ssh ${s.id}: ${p} is neither an agent socket nor a key file`);
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw new UsageError(`--ssh ${s.id}: ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    });
    if (kinds.every((k) => k === 'key')) return { id: s.id, keys: paths.map((p) => path.resolve(p)) };
    if (paths.length > 1) throw new UsageError(`--ssh ${s.id}: one agent socket per id, or key files only (got ${paths.length} paths)`);
    return { id: s.id, socket: path.resolve(paths[0]!) };
  });
}

/**
 * Key files given to --ssh are served by a private ssh-agent of this build (as buildx runs an agent
 * for them): started in a directory only this user can enter, the keys added, stopped after the build.
 * A key that needs a passphrase cannot be added here (nothing can ask for it): the error says so.
 */
export async function sshForwards(sources: readonly SshSource[], env: NodeJS.ProcessEnv): Promise<{ forwards: SshForward[]; stop: () => Promise<void> }> {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops) await s();
  };
  const forwards: SshForward[] = [];
  try {
    for (const src of sources) {
      if ('socket' in src) {
        forwards.push({ id: src.id, socket: src.socket });
        continue;
      }
      // Loaded only for key files: every build imports this module, few start an agent.
      const { spawn, spawnSync } = await import('node:child_process');
      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-ssh-'));
      const socket = path.join(dir, 'agent.sock');
      const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: ['ignore', 'ignore', 'ignore'] });
      stops.push(async () => {
        agent.kill();
        await fsp.rm(dir, { recursive: true, force: true });
      });
      const started = await new Promise<boolean>((resolve) => {
        agent.once('error', () => resolve(false));
        const deadline = Date.now() + 5000;
        const poll = () => {
          if (existsSync(socket)) resolve(true);
          else if (Date.now() > deadline || agent.exitCode !== null) resolve(false);
          else setTimeout(poll, 20);
        };
        poll();
      });
      if (!started) throw new UsageError(`--ssh ${src.id}: could not start ssh-agent for its key files (is openssh-client installed?)`);
      for (const key of src.keys) {
        const added = spawnSync('ssh-add', ['-q', key], {
          env: { ...env, SSH_AUTH_SOCK: socket, SSH_ASKPASS: '', DISPLAY: '' },
          stdio: ['ignore', 'ignore', 'pipe'],
          timeout: 10_000,
        });
        if (added.status !== 0) {
          throw new UsageError(
            `--ssh ${src.id}: cannot load the key ${key} (a key with a passphrase must be loaded into your own ssh-agent): ${added.stderr.toString().trim() || `ssh-add exited ${added.status}`}`,
          );
        }
      }
      forwards.push({ id: src.id, socket });
    }
    return { forwards, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
