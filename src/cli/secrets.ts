// `kiln build --secret` and `--ssh`, as buildx reads them. Parsing is pure; reading the values (a
// file, an environment variable) and finding agent sockets happens once the build is about to start.

import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { BuildRequest, SshForward } from '../client/client.js';
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
        if (v !== 'file' && v !== 'env') throw new UsageError(`invalid --secret ${JSON.stringify(value)}: unsupported secret type ${JSON.stringify(v)} (file or env)`);
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
  if (spec.id === undefined || !ID.test(spec.id)) throw new UsageError(`invalid --secret ${JSON.stringify(value)}: an id is required (letters, digits, "_", "-", ".", "/")`);
  if (spec.file === undefined && spec.env === undefined) spec.env = spec.id;
  return spec as SecretSpec;
}

/** `default` | `ID` | `ID=SOCKET[,SOCKET]`. */
export function parseSshFlag(value: string): SshSpec {
  const eq = value.indexOf('=');
  const id = eq < 0 ? value : value.slice(0, eq);
  if (!ID.test(id)) throw new UsageError(`invalid --ssh ${JSON.stringify(value)}: want default, ID or ID=SOCKET`);
  const paths = eq < 0 ? [] : value.slice(eq + 1).split(',').filter((p) => p !== '');
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

/** The agent socket of each --ssh (default: $SSH_AUTH_SOCK); it must be a unix socket. */
export function resolveSsh(specs: readonly SshSpec[], env: NodeJS.ProcessEnv): SshForward[] {
  return specs.map((s) => {
    if (s.paths.length > 1) throw new UsageError(`--ssh ${s.id}: one agent socket per id (got ${s.paths.length})`);
    const socket = s.paths[0] ?? env.SSH_AUTH_SOCK;
    if (!socket) throw new UsageError(`--ssh ${s.id}: no agent socket given and SSH_AUTH_SOCK is not set`);
    let st;
    try {
      st = statSync(socket);
    } catch (err) {
      throw new UsageError(`--ssh ${s.id}: ${socket}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!st.isSocket()) throw new UsageError(`--ssh ${s.id}: ${socket} is not an agent socket (key files are not supported: load the key into an ssh-agent and pass its socket)`);
    return { id: s.id, socket: path.resolve(socket) };
  });
}
