// One instruction of a stage -> its steps, applied to the stage's State: BuildKit's dispatch() in
// dockerfile2llb. RUN and COPY/ADD have files of their own (dispatch-run.ts, dispatch-copy.ts);
// the image-config instructions (ENV, LABEL, EXPOSE, CMD...) are here.

import { posix } from 'node:path';
import { formatDuration, goQuote, goQuoteRune, goQuoteSlice, goSlice } from './gofmt.js';
import type { Parsed } from './instructions.js';
import { type Linter, looksSecret, suggest } from './lint.js';
import { processWord, processWords } from './shell-lex.js';
import type { SourceLocation, Step } from './types.js';
import { NON_ENV_ARGS, type State, clone, envSet, envGet, type DispatchCtx } from './stage-state.js';
import { dispatchRun } from './dispatch-run.js';
import { dispatchCopy } from './dispatch-copy.js';

export function dispatch(ctx: DispatchCtx, st: State, c: Parsed, fromOnBuild: boolean): Step[] {
  const n = c.node;
  const line = n.startLine;
  const location: SourceLocation = { file: ctx.file, line, endLine: n.endLine };
  const original = n.original.trim();
  const base = fromOnBuild ? { location, original, fromOnBuild: true as const } : { location, original };
  const { lint, err } = ctx;
  const lookup = (k: string) => envGet(st.env, k);
  const declared = () => new Set(st.buildArgs.map((a) => a.key));

  const reportUnmatched = (unmatched: Set<string>) => {
    if (unmatched.size === 0) return;
    const args = declared();
    for (const v of unmatched) {
      if (args.has(v) || NON_ENV_ARGS.has(v)) continue;
      lint.run(
        'UndefinedVar',
        location,
        v,
        suggest(
          v,
          st.env.map(([k]) => k),
        ),
      );
    }
  };
  const expand = (w: string): string => {
    let r;
    try {
      r = processWord(w, lookup, ctx.escape);
    } catch (e) {
      throw err(line, (e as Error).message);
    }
    reportUnmatched(r.unmatched);
    return r.result;
  };
  const failAt = (msg: string): never => {
    throw err(line, msg);
  };

  switch (c.kind) {
    case 'env': {
      const pairs = c.pairs.map((p) => ({ key: expand(p.key), value: expand(p.value), noDelim: p.noDelim }));
      for (const p of pairs) {
        if (p.noDelim) lint.run('LegacyKeyValueFormat', location, n.cmd);
        if (looksSecret(p.key)) lint.run('SecretsUsedInArgOrEnv', location, 'ENV', p.key);
        envSet(st.env, p.key, p.value);
        st.argKeys.delete(p.key);
        envSet(st.config.env, p.key, p.value);
      }
      const vars: [string, string][] = pairs.map((p) => [p.key, p.value]);
      return [{ ...base, kind: 'env', vars, createdBy: 'ENV ' + pairs.map((p) => `${p.key}=${p.value}`).join(' ') }];
    }
    case 'label': {
      const pairs = c.pairs.map((p) => ({ key: expand(p.key), value: expand(p.value), noDelim: p.noDelim }));
      for (const p of pairs) {
        if (p.noDelim) lint.run('LegacyKeyValueFormat', location, n.cmd);
        st.config.labels[p.key] = p.value;
      }
      return [{ ...base, kind: 'label', labels: pairs.map((p) => [p.key, p.value]), createdBy: 'LABEL ' + pairs.map((p) => `${p.key}=${p.value}`).join(' ') }];
    }
    case 'arg': {
      const result: { name: string; value?: string }[] = [];
      for (const a of c.args) {
        if (looksSecret(a.key)) lint.run('SecretsUsedInArgOrEnv', location, 'ARG', a.key);
        ctx.consumed.add(a.key);
        let value: string | undefined;
        if (ctx.given.has(a.key)) value = ctx.given.get(a.key);
        else if (a.value !== undefined) value = expand(a.value);
        else value = envGet(ctx.globalArgs, a.key);
        if (value !== undefined && !NON_ENV_ARGS.has(a.key)) {
          envSet(st.env, a.key, value);
          st.argKeys.add(a.key);
        }
        st.buildArgs.push(value === undefined ? { key: a.key } : { key: a.key, value });
        result.push(value === undefined ? { name: a.key } : { name: a.key, value });
      }
      const createdBy = 'ARG ' + result.map((r) => (r.value === undefined ? r.name : `${r.name}=${r.value}`)).join(' ');
      return [{ ...base, kind: 'arg', args: result, createdBy }];
    }
    case 'run':
      return [dispatchRun(ctx, st, c, base, expand, failAt)];
    case 'copy':
    case 'add':
      return [dispatchCopy(ctx, st, c, base, expand, reportUnmatched, failAt)];
    case 'workdir': {
      const p = expand(c.path);
      if (!st.workdirSet && !p.startsWith('/')) lint.run('WorkdirRelativePath', location, p);
      st.workdirSet = true;
      // As BuildKit's system.NormalizeWorkdir: an absolute path is kept as written ("/a//b/" stays,
      // in the config and the history), a relative one is joined to the current workdir (which
      // cleans it), an empty one (an unset variable) keeps the current workdir.
      const parent = st.config.workingDir || '/';
      const absParent = parent.startsWith('/') ? parent : posix.join('/', parent).replace(/(.)\/+$/, '$1');
      // Go's path.Join cleans, trailing slash included.
      const joined = (q: string) => posix.join(absParent, q).replace(/(.)\/+$/, '$1');
      const wd = p === '' ? absParent : p.startsWith('/') ? p : joined(p);
      st.config.workingDir = wd;
      // The directory made is the cleaned path.
      const made = posix.normalize(wd);
      const clean = made.length > 1 ? made.replace(/\/+$/, '') : made;
      return [{ ...base, kind: 'workdir', path: clean, user: st.config.user, createdBy: 'WORKDIR ' + wd }];
    }
    case 'user': {
      const u = expand(c.user);
      st.config.user = u;
      return [{ ...base, kind: 'user', user: u, createdBy: 'USER ' + u }];
    }
    case 'volume': {
      const vols = c.volumes.map(expand);
      for (const v of vols) {
        if (v === '') failAt('VOLUME specified can not be an empty string');
        st.config.volumes.push(v);
      }
      return [{ ...base, kind: 'volume', volumes: vols, createdBy: 'VOLUME ' + goSlice(vols) }];
    }
    case 'expose': {
      const words: string[] = [];
      for (const p of c.ports) {
        try {
          words.push(...processWords(p, lookup, ctx.escape).words);
        } catch (e) {
          failAt((e as Error).message);
        }
      }
      const ports = new Set<string>();
      for (const w of words) for (const p of parsePortSpec(w, lint, location, failAt)) ports.add(p);
      const sorted = [...ports].sort();
      st.config.exposedPorts.push(...sorted);
      return [{ ...base, kind: 'expose', ports: sorted, createdBy: 'EXPOSE map[' + sorted.map((p) => `${p}:{}`).join(' ') + ']' }];
    }
    case 'stopsignal': {
      const sig = expand(c.signal);
      validateSignal(sig, failAt);
      st.config.stopSignal = sig;
      return [{ ...base, kind: 'stopsignal', signal: sig, createdBy: 'STOPSIGNAL ' + sig }];
    }
    case 'shell':
      st.config.shell = [...c.shell];
      // BuildKit writes Shell to the config whatever it is, even ["/bin/sh", "-c"].
      st.config.shellSet = true;
      st.shellSet = true;
      return [{ ...base, kind: 'shell', shell: [...c.shell], createdBy: 'SHELL ' + goSlice(c.shell) }];
    case 'cmd':
    case 'entrypoint': {
      const prev = ctx.trackers[c.kind];
      if (prev) lint.run('MultipleInstructionsDisallowed', { file: ctx.file, line: prev, endLine: prev }, n.cmd.toUpperCase());
      ctx.trackers[c.kind] = line;
      let args = c.cmdLine;
      if (c.prependShell) {
        if (!st.shellSet) lint.run('JSONArgsRecommended', location, n.cmd.toUpperCase());
        args = [...st.config.shell, args.join(' ')];
      }
      if (c.kind === 'cmd') {
        st.config.cmd = args;
        ctx.cmdSet.value = true;
        return [{ ...base, kind: 'cmd', cmd: args, createdBy: 'CMD ' + goQuoteSlice(args) }];
      }
      st.config.entrypoint = args;
      // Docker resets CMD when ENTRYPOINT is set, unless this stage set CMD itself.
      if (!ctx.cmdSet.value) delete st.config.cmd;
      return [{ ...base, kind: 'entrypoint', entrypoint: args, createdBy: 'ENTRYPOINT ' + goQuoteSlice(args) }];
    }
    case 'healthcheck': {
      const prev = ctx.trackers.healthcheck;
      if (prev) lint.run('MultipleInstructionsDisallowed', { file: ctx.file, line: prev, endLine: prev }, n.cmd.toUpperCase());
      ctx.trackers.healthcheck = line;
      const h = c.healthcheck;
      st.config.healthcheck = clone(h);
      const d = (v?: number) => goQuote(formatDuration(v ?? 0));
      const createdBy = `HEALTHCHECK &{${goQuoteSlice(h.test)} ${d(h.intervalNs)} ${d(h.timeoutNs)} ${d(h.startPeriodNs)} ${d(h.startIntervalNs)} ${goQuoteRune(h.retries ?? 0)}}`;
      return [{ ...base, kind: 'healthcheck', healthcheck: clone(h), createdBy }];
    }
    case 'maintainer':
      st.config.author = c.maintainer;
      return [{ ...base, kind: 'maintainer', author: c.maintainer, createdBy: 'MAINTAINER ' + c.maintainer }];
    case 'onbuild':
      st.config.onBuild.push(c.expression);
      // BuildKit records no history entry for ONBUILD: an empty createdBy means "no history".
      return [{ ...base, kind: 'onbuild', trigger: c.expression, createdBy: '' }];
    case 'from':
      failAt('FROM inside a stage');
  }
  return [];
}

/** One EXPOSE word -> "port/proto" entries (go-connections nat.ParsePortSpec for EXPOSE). */
function parsePortSpec(spec: string, lint: Linter, location: SourceLocation, failAt: (m: string) => never): string[] {
  let raw = spec;
  const slash = raw.indexOf('/');
  let proto = 'tcp';
  if (slash >= 0) {
    const p = raw.slice(slash + 1);
    raw = raw.slice(0, slash);
    if (p !== '') proto = p;
  }
  if (proto !== proto.toLowerCase()) lint.run('ExposeProtoCasing', location, spec);
  proto = proto.toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(proto)) failAt(`EXPOSE ${spec}: invalid proto: ${proto}`);
  if (raw.includes(':')) {
    // "ip:hostPort:containerPort" is accepted (the container port is exposed) but discouraged.
    lint.run('ExposeInvalidFormat', location, spec);
    raw = raw.slice(raw.lastIndexOf(':') + 1);
  }
  const m = /^(\d+)(?:-(\d+))?$/.exec(raw);
  if (!m) failAt(`EXPOSE ${spec}: invalid containerPort: ${raw}`);
  const start = Number(m[1]);
  const end = m[2] !== undefined ? Number(m[2]) : start;
  if (start > 65535 || end > 65535) failAt(`EXPOSE ${spec}: invalid containerPort: ${raw}`);
  if (end < start) failAt(`EXPOSE ${spec}: invalid range specified for container port: ${raw}`);
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

const signals = new Set([
  'ABRT',
  'ALRM',
  'BUS',
  'CHLD',
  'CLD',
  'CONT',
  'FPE',
  'HUP',
  'ILL',
  'INT',
  'IO',
  'IOT',
  'KILL',
  'PIPE',
  'POLL',
  'PROF',
  'PWR',
  'QUIT',
  'SEGV',
  'STKFLT',
  'STOP',
  'SYS',
  'TERM',
  'TRAP',
  'TSTP',
  'TTIN',
  'TTOU',
  'URG',
  'USR1',
  'USR2',
  'VTALRM',
  'WINCH',
  'XCPU',
  'XFSZ',
]);

/** moby/sys/signal.ParseSignal: a number > 0, or a name with or without SIG (RTMIN+n too). */
function validateSignal(sig: string, failAt: (m: string) => never): void {
  if (/^\d+$/.test(sig)) {
    const n = Number(sig);
    if (n === 0 || n >= 2 ** 32) failAt(`Invalid signal: ${sig}`);
    return;
  }
  const name = sig.toUpperCase().replace(/^SIG/, '');
  if (signals.has(name)) return;
  const rt = /^RTM(IN|AX)(?:([+-])(\d+))?$/.exec(name);
  if (rt) {
    const off = rt[3] ? Number(rt[3]) : 0;
    if ((rt[1] === 'IN' && rt[2] !== '-' && off <= 15) || (rt[1] === 'AX' && rt[2] !== '+' && off <= 14)) return;
  }
  failAt(`Invalid signal: ${sig}`);
}
