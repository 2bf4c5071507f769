// Parsed nodes -> typed instructions with their flags checked (BuildKit's instructions/parse.go).
// Nothing here expands variables: that depends on the stage state and happens in convert.ts.

import { fail } from './errors.js';
import { Flags } from './flags.js';
import { chompHeredocContent, parseHeredoc, type Heredoc, type Node } from './parser.js';
import { parseDuration } from './gofmt.js';
import type { Healthcheck } from './types.js';

export type Instruction =
  | { kind: 'from'; base: string; name?: string; nameAsWritten?: string; asKeyword?: string; platform?: string }
  | {
      kind: 'run';
      cmdLine: string[];
      prependShell: boolean;
      files: Heredoc[];
      mounts: string[];
      network?: string;
      security?: string;
    }
  | { kind: 'cmd' | 'entrypoint'; cmdLine: string[]; prependShell: boolean }
  | { kind: 'env' | 'label'; pairs: { key: string; value: string; noDelim: boolean }[] }
  | { kind: 'arg'; args: { key: string; value?: string }[] }
  | { kind: 'maintainer'; maintainer: string }
  | { kind: 'expose'; ports: string[] }
  | { kind: 'volume'; volumes: string[] }
  | { kind: 'user'; user: string }
  | { kind: 'workdir'; path: string }
  | { kind: 'shell'; shell: string[] }
  | { kind: 'stopsignal'; signal: string }
  | { kind: 'healthcheck'; healthcheck: Healthcheck }
  | { kind: 'onbuild'; expression: string }
  | {
      kind: 'copy' | 'add';
      sources: string[];
      contents: { path: string; data: string; expand: boolean }[];
      dest: string;
      from?: string;
      chown?: string;
      chmod?: string;
      link: boolean;
      parents: boolean;
      exclude: string[];
      checksum?: string;
      keepGitDir: boolean;
      unpack?: boolean;
    };

export type Parsed = Instruction & { node: Node };

const known = new Set([
  'add',
  'arg',
  'cmd',
  'copy',
  'entrypoint',
  'env',
  'expose',
  'from',
  'healthcheck',
  'label',
  'maintainer',
  'onbuild',
  'run',
  'shell',
  'stopsignal',
  'user',
  'volume',
  'workdir',
]);

export function isKnownInstruction(lower: string): boolean {
  return known.has(lower);
}

function handleJSONArgs(args: string[], json: boolean): string[] {
  if (args.length === 0) return [];
  return json ? args : [args.join(' ')];
}

function exactlyOne(node: Node, name: string): string {
  if (node.args.length !== 1) fail(`${name} requires exactly one argument`);
  return node.args[0];
}

export function parseInstruction(node: Node): Parsed {
  const name = node.lower.toUpperCase();
  if (!known.has(node.lower)) fail(`unknown instruction: ${node.cmd.toUpperCase()}`);
  const flags = new Flags(name, node.flags);
  const done = (i: Instruction): Parsed => ({ ...i, node });

  switch (node.lower) {
    case 'from': {
      flags.string('platform').parse();
      const a = node.args;
      let stage: string | undefined;
      let asKeyword: string | undefined;
      if (a.length === 3 && a[1].toLowerCase() === 'as') {
        stage = a[2].toLowerCase();
        asKeyword = a[1];
        if (!/^[a-z][a-z0-9\-_.]*$/.test(stage)) {
          fail(`invalid name for build stage: ${JSON.stringify(a[2])}, name can't start with a number or contain symbols`);
        }
      } else if (a.length !== 1) {
        fail('FROM requires either one or three arguments');
      }
      return done({ kind: 'from', base: a[0], name: stage, nameAsWritten: stage ? a[2] : undefined, asKeyword, platform: flags.getString('platform') });
    }
    case 'run': {
      flags.strings('mount').string('network').string('security').parse();
      const files = node.heredocs;
      return done({
        kind: 'run',
        cmdLine: handleJSONArgs(node.args, node.json),
        prependShell: !node.json,
        files,
        mounts: flags.getStrings('mount'),
        network: flags.getString('network'),
        security: flags.getString('security'),
      });
    }
    case 'cmd':
    case 'entrypoint':
      flags.parse();
      return done({ kind: node.lower, cmdLine: handleJSONArgs(node.args, node.json), prependShell: !node.json });
    case 'env':
    case 'label': {
      flags.parse();
      if (node.args.length === 0) fail(`${name} requires at least one argument`);
      const pairs = [];
      for (let i = 0; i < node.args.length; i += 2) {
        if (node.args[i] === '') fail(`${name} names can not be blank`);
        pairs.push({ key: node.args[i], value: node.args[i + 1], noDelim: !(node.delims?.[i / 2] ?? true) });
      }
      return done({ kind: node.lower, pairs });
    }
    case 'arg': {
      flags.parse();
      if (node.args.length === 0) fail('ARG requires at least one argument');
      const args = node.args.map((w) => {
        const eq = w.indexOf('=');
        if (eq < 0) return { key: w };
        if (eq === 0) fail('ARG names can not be blank');
        return { key: w.slice(0, eq), value: w.slice(eq + 1) };
      });
      return done({ kind: 'arg', args });
    }
    case 'maintainer':
      flags.parse();
      return done({ kind: 'maintainer', maintainer: exactlyOne(node, name) });
    case 'expose':
      flags.parse();
      if (node.args.length === 0) fail('EXPOSE requires at least one argument');
      return done({ kind: 'expose', ports: [...node.args].sort() });
    case 'volume': {
      flags.parse();
      if (node.args.length === 0) fail('VOLUME requires at least one argument');
      const volumes = node.args.map((v) => {
        const t = v.trim();
        if (t === '') fail('VOLUME specified can not be an empty string');
        return t;
      });
      return done({ kind: 'volume', volumes });
    }
    case 'user':
      flags.parse();
      return done({ kind: 'user', user: exactlyOne(node, name) });
    case 'workdir':
      flags.parse();
      return done({ kind: 'workdir', path: exactlyOne(node, name) });
    case 'stopsignal':
      flags.parse();
      return done({ kind: 'stopsignal', signal: exactlyOne(node, name) });
    case 'shell': {
      flags.parse();
      const shell = handleJSONArgs(node.args, node.json);
      if (shell.length === 0) fail('SHELL requires at least one argument');
      if (!node.json) fail(`SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/bash", "-c"]; got: ${node.original.trim()}`);
      return done({ kind: 'shell', shell });
    }
    case 'healthcheck':
      return done({ kind: 'healthcheck', healthcheck: parseHealthcheck(node, flags) });
    case 'onbuild': {
      flags.parse();
      if (!node.sub) fail('ONBUILD requires at least one argument');
      const trigger = node.sub.lower.toUpperCase();
      if (trigger === 'ONBUILD') fail("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (trigger === 'MAINTAINER' || trigger === 'FROM') fail(`${trigger} isn't allowed as an ONBUILD trigger`);
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, '');
      for (const h of node.heredocs) expression += '\n' + h.content + h.name;
      return done({ kind: 'onbuild', expression });
    }
    case 'copy':
    case 'add': {
      if (node.args.length < 2) {
        fail(`${name} requires at least two arguments, but only one was provided. Destination could not be determined.`);
      }
      flags.string('chown').string('chmod').bool('link').strings('exclude');
      if (node.lower === 'copy') flags.string('from').bool('parents');
      else flags.bool('keep-git-dir').string('checksum').bool('unpack');
      flags.parse();
      const srcs = node.args.slice(0, -1);
      const dest = node.args[node.args.length - 1];
      if (parseHeredoc(dest)) fail(`${name} cannot accept a heredoc as a destination`);
      const byName = new Map(node.heredocs.map((h) => [h.name, h]));
      const sources: string[] = [];
      const contents: { path: string; data: string; expand: boolean }[] = [];
      for (const s of srcs) {
        const h = parseHeredoc(s);
        if (h) {
          let data = byName.get(h.name)?.content ?? '';
          if (h.chomp) data = chompHeredocContent(data);
          contents.push({ path: h.name, data, expand: h.expand });
        } else {
          sources.push(s);
        }
      }
      return done({
        kind: node.lower,
        sources,
        contents,
        dest,
        from: flags.getString('from'),
        chown: flags.getString('chown'),
        chmod: flags.getString('chmod'),
        link: flags.getBool('link'),
        parents: flags.getBool('parents'),
        exclude: flags.getStrings('exclude'),
        checksum: flags.getString('checksum'),
        keepGitDir: flags.getBool('keep-git-dir'),
        unpack: flags.used('unpack') ? flags.getBool('unpack') : undefined,
      });
    }
  }
  fail(`unknown instruction: ${node.cmd.toUpperCase()}`);
}

function parseInterval(flags: Flags, name: string): number | undefined {
  const v = flags.getString(name);
  if (v === undefined || v === '') return undefined;
  let ns: number;
  try {
    ns = parseDuration(v);
  } catch (e) {
    fail(`HEALTHCHECK --${name}: ${(e as Error).message}`);
  }
  if (ns === 0) return undefined;
  if (ns < 1e6) fail(`Interval "${name}" cannot be less than 1ms`);
  return ns;
}

function parseHealthcheck(node: Node, flags: Flags): Healthcheck {
  if (node.args.length === 0) fail('HEALTHCHECK requires at least one argument');
  const typ = node.args[0].toUpperCase();
  const args = node.args.slice(1);
  if (typ === 'NONE') {
    if (args.length !== 0) fail('HEALTHCHECK NONE takes no arguments');
    // BuildKit does not look at the flags of HEALTHCHECK NONE at all.
    return { test: ['NONE'] };
  }
  flags.string('interval').string('timeout').string('start-period').string('start-interval').string('retries').parse();
  if (typ !== 'CMD') fail(`Unknown type ${JSON.stringify(typ)} in HEALTHCHECK (try CMD)`);
  const cmd = handleJSONArgs(args, node.json);
  if (cmd.length === 0) fail('Missing command after HEALTHCHECK CMD');
  const hc: Healthcheck = { test: [node.json ? 'CMD' : 'CMD-SHELL', ...cmd] };
  const interval = parseInterval(flags, 'interval');
  const timeout = parseInterval(flags, 'timeout');
  const startPeriod = parseInterval(flags, 'start-period');
  const startInterval = parseInterval(flags, 'start-interval');
  if (interval !== undefined) hc.intervalNs = interval;
  if (timeout !== undefined) hc.timeoutNs = timeout;
  if (startPeriod !== undefined) hc.startPeriodNs = startPeriod;
  if (startInterval !== undefined) hc.startIntervalNs = startInterval;
  const r = flags.getString('retries');
  if (r !== undefined && r !== '') {
    if (!/^[+-]?\d+$/.test(r)) fail(`HEALTHCHECK --retries: invalid number ${JSON.stringify(r)}`);
    const n = Number(r);
    if (n < 0) fail(`--retries cannot be negative (${n})`);
    if (n > 2 ** 31 - 1) fail(`HEALTHCHECK --retries: value out of range ${JSON.stringify(r)}`);
    hc.retries = n;
  }
  return hc;
}
