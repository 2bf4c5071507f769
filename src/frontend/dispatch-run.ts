// RUN: its flags (--mount, --network, --security), the command in shell or exec form (heredocs
// too), its environment and the history text BuildKit writes for it.

import { posix } from 'node:path';
import { InstructionError } from './errors.js';
import { goSlice } from './gofmt.js';
import type { Parsed } from './instructions.js';
import { parseMount } from './mounts.js';
import { chompHeredocContent } from './parser.js';
import type { MountFrom, RunMount, RunStep, SourceLocation } from './types.js';
import { PROXY_ARGS, type State, clone, envGet, type DispatchCtx } from './stage-state.js';

function runCommandString(args: string[], st: State): string {
  const parts: string[] = [];
  const idx = new Map<string, number>();
  for (const a of st.buildArgs) {
    const v = envGet(st.env, a.key) ?? a.value ?? '';
    const kv = `${a.key}=${v}`;
    const i = idx.get(a.key);
    if (i !== undefined) parts[i] = kv;
    else {
      idx.set(a.key, parts.length);
      parts.push(kv);
    }
  }
  const prefix = parts.length ? [`|${parts.length}`, ...parts] : [];
  return [...prefix, ...args].join(' ');
}

export function dispatchRun(
  ctx: DispatchCtx,
  st: State,
  c: Parsed & { kind: 'run' },
  base: { location: SourceLocation; original: string; fromOnBuild?: true },
  expand: (w: string) => string,
  failAt: (m: string) => never,
): RunStep {
  const line = c.node.startLine;
  // As written ("/a/../b/"): the executor, like runc, makes what that spelling implies.
  const workdir = st.config.workingDir || '/';
  const mounts: RunMount[] = [];
  let sshCount = 0;
  for (const raw of c.mounts) {
    let m;
    try {
      m = parseMount(raw, expand);
    } catch (e) {
      if (e instanceof InstructionError) failAt(`RUN --mount=${raw}: ${e.message}`);
      throw e;
    }
    const abs = (t: string) => (t.startsWith('/') ? posix.normalize(t) : posix.join('/', workdir, t));
    const from: MountFrom | undefined = m.from ? ctx.resolveFrom(m.from, ctx.stage, line, false, 'RUN --mount from') : undefined;
    switch (m.type) {
      case 'bind':
        mounts.push({
          type: 'bind',
          target: abs(m.target!),
          source: posix.join('/', m.source ?? ''),
          from: from ?? { kind: 'context' },
          readwrite: !m.readonly,
        });
        break;
      case 'cache': {
        const cm: RunMount = {
          type: 'cache',
          target: abs(m.target!),
          id: m.id || m.target!,
          sharing: m.sharing ?? 'shared',
          readonly: m.readonly,
          source: posix.join('/', m.source ?? ''),
          mode: m.mode ?? 0o755,
          uid: m.uid ?? 0,
          gid: m.gid ?? 0,
        };
        if (from) cm.from = from;
        mounts.push(cm);
        break;
      }
      case 'tmpfs':
        mounts.push(m.size !== undefined ? { type: 'tmpfs', target: abs(m.target!), size: m.size } : { type: 'tmpfs', target: abs(m.target!) });
        break;
      case 'secret': {
        const id = m.source || m.id || posix.basename(m.target!);
        // With env= and no target the secret is only an environment variable (target "").
        const target = m.target ? abs(m.target) : m.env !== undefined ? '' : '/run/secrets/' + posix.basename(id);
        const sm: RunMount = { type: 'secret', id, target, required: m.required, mode: m.mode ?? 0o400, uid: m.uid ?? 0, gid: m.gid ?? 0 };
        if (m.env !== undefined) sm.env = m.env;
        mounts.push(sm);
        break;
      }
      case 'ssh':
        mounts.push({
          type: 'ssh',
          id: m.id || 'default',
          target: m.target ? abs(m.target) : `/run/buildkit/ssh_agent.${sshCount}`,
          required: m.required,
          mode: m.mode ?? 0o600,
          uid: m.uid ?? 0,
          gid: m.gid ?? 0,
        });
        sshCount++;
        break;
    }
  }

  const network = c.network ?? 'default';
  if (network !== 'default' && network !== 'none' && network !== 'host') failAt(`unsupported network mode "${network}" (valid: default, none, host)`);
  const security = c.security ?? 'sandbox';
  if (security !== 'sandbox' && security !== 'insecure') failAt(`unsupported security mode "${security}" (valid: sandbox, insecure)`);

  let args = c.cmdLine;
  if (c.files.length > 0) {
    if (args.length !== 1 || !c.prependShell) failAt(`parsing produced an invalid run command: ${goSlice(args)}`);
    const single = /^(\d*)<<(-?)(.+)$/.test(args[0].trim()) && args[0].trim().split(/\s+/).length === 1;
    if (single && c.files.length === 1) {
      const f = c.files[0];
      let data = f.content;
      if (f.chomp) data = chompHeredocContent(data);
      if (f.content.startsWith('#!')) {
        // A script with a shebang: mount it as a file and run it (BuildKit's /dev/pipes trick).
        const target = posix.join('/dev/pipes', f.name);
        mounts.push({ type: 'heredoc', target, content: data, mode: 0o755 });
        args = [target];
      } else {
        args = [data];
      }
    } else {
      let full = args[0];
      for (const f of c.files) full += '\n' + f.content + f.name;
      args = [full];
    }
  }
  if (c.prependShell) args = [...st.config.shell, args.join(' ')];

  const proxyEnv: [string, string][] = [];
  for (const [k, v] of ctx.given) if (PROXY_ARGS.includes(k.toLowerCase())) proxyEnv.push([k, v]);

  const step: RunStep = {
    ...base,
    kind: 'run',
    args,
    shellForm: c.prependShell,
    env: clone(st.config.env),
    buildArgs: st.env.filter(([k]) => st.argKeys.has(k)).map(([k, v]) => [k, v] as [string, string]),
    workdir,
    user: st.config.user,
    mounts,
    network,
    security,
    createdBy: 'RUN ' + runCommandString(args, st) + ' # buildkit',
  };
  if (proxyEnv.length) step.proxyEnv = proxyEnv;
  return step;
}
