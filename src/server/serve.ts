// `kiln daemon`: starts the Daemon on its root, serves the HTTP API on every address, and stops
// cleanly on SIGTERM/SIGINT (no new work, running builds get a grace period, then are cancelled;
// the root is released consistent). A SIGKILLed daemon leaves what the next start reaps.

import type { FastifyInstance } from 'fastify';
import { createApi } from './http-api.js';
import { createDockerApi } from './docker-api.js';
import { Daemon, type DaemonLog, type LogLine } from './daemon.js';
import { loadConfig, type KilnConfig } from './config.js';
import type { Entitlement } from './api.js';
import { checkAddress, formatAddress, parseAddress, prepareSocketPath, readTls, secureSocket, serverFactory, type TlsFiles } from './listen.js';

export interface ServeOptions {
  root: string;
  addresses: string[];
  /** Where to serve the Docker Engine API subset (builds and images), under the same rules. */
  dockerAddresses?: string[];
  /** The daemon.json to read (flags below win over it). */
  configFile?: string;
  group?: string;
  tls: TlsFiles;
  insecureTcp: boolean;
  logFormat: 'text' | 'json';
  version: string;
  /** Overrides of daemon.json keys given as flags. */
  overrides?: Partial<KilnConfig['daemon']>;
  /** Entitlements builds may be granted, besides daemon.json's (--allow-insecure-entitlement). */
  allowEntitlements?: Entitlement[];
  /** Where log lines go (default stderr). */
  out?: NodeJS.WritableStream;
}

export interface RunningDaemon {
  daemon: Daemon;
  addresses: string[];
  /** The Docker API's addresses (TCP with the port bound). */
  dockerAddresses: string[];
  /** Stops as SIGTERM does; resolves when the root is released. */
  stop(): Promise<void>;
}

export function makeLogger(format: 'text' | 'json', out: NodeJS.WritableStream = process.stderr): DaemonLog {
  return (line: LogLine) => {
    const time = new Date().toISOString();
    if (format === 'json') {
      out.write(JSON.stringify({ time, level: line.msg === 'internal error' ? 'error' : 'info', ...line }) + '\n');
      return;
    }
    const { msg, ...fields } = line;
    const kv = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) ? v : JSON.stringify(v)}`);
    out.write(`${time} ${msg}${kv.length ? ' ' + kv.join(' ') : ''}\n`);
  };
}

export async function serve(opts: ServeOptions): Promise<RunningDaemon> {
  const log = makeLogger(opts.logFormat, opts.out);
  const env = opts.configFile !== undefined ? { ...process.env, KILN_CONFIG: opts.configFile } : process.env;
  const config = loadConfig(env);
  config.daemon = { ...config.daemon, ...opts.overrides };
  config.allowedEntitlements = [...new Set([...(config.allowedEntitlements ?? []), ...(opts.allowEntitlements ?? [])])];
  const settings = { tls: readTls(opts.tls), insecureTcp: opts.insecureTcp, maxHeaderBytes: config.daemon.maxHeaderBytes };
  const addresses = opts.addresses.map(parseAddress);
  if (addresses.length === 0) throw new Error('no address to listen on');
  const dockerAddresses = (opts.dockerAddresses ?? []).map(parseAddress);
  // Every address is checked before the root is taken, so a bad flag changes nothing.
  for (const a of [...addresses, ...dockerAddresses]) checkAddress(a, settings);

  const daemon = await Daemon.start({ root: opts.root, config, log });
  const apps: FastifyInstance[] = [];
  // Requests answered before the start line is written (a client polling /_ping gets in as soon as
  // the last socket listens) are logged after it, so the log reads in the order things happened.
  let held: LogLine[] | undefined = [];
  const doorLog: DaemonLog = (line) => (held ? void held.push(line) : log(line));
  const doors = [...addresses.map((a) => ({ a, make: createApi })), ...dockerAddresses.map((a) => ({ a, make: createDockerApi }))];
  try {
    // The Docker doors open before kiln's own: clients (and tests) take kiln's socket answering
    // /_ping as "the daemon is up", so by then every door must be open.
    for (let i = doors.length - 1; i >= 0; i--) {
      const { a, make } = doors[i]!;
      const app = make({ daemon, log: doorLog, serverFactory: serverFactory(a, settings), version: opts.version });
      if (a.kind === 'unix') {
        await prepareSocketPath(a.path);
        await app.listen({ path: a.path });
        await secureSocket(a.path, opts.group);
      } else {
        await app.listen({ host: a.host, port: a.port });
      }
      apps[i] = app;
    }
  } catch (err) {
    await Promise.all(apps.filter(Boolean).map((a) => a.close()));
    await daemon.shutdown(0);
    throw err;
  }
  const allShown = doors.map(({ a }, i) => {
    if (a.kind === 'unix') return formatAddress(a);
    const bound = apps[i]!.server.address();
    return formatAddress({ ...a, port: typeof bound === 'object' && bound ? bound.port : a.port });
  });
  const shown = allShown.slice(0, addresses.length);
  const dockerShown = allShown.slice(addresses.length);
  log({
    msg: 'kiln daemon serving',
    root: opts.root,
    addresses: shown,
    ...(dockerShown.length ? { dockerApi: dockerShown } : {}),
    version: opts.version,
    pid: process.pid,
  });
  for (const line of held) log(line);
  held = undefined;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log({ msg: 'kiln daemon stopping' });
      // Stop accepting connections; running builds keep theirs until they end or are cancelled.
      const closed = Promise.all(apps.map((app) => app.close()));
      await daemon.shutdown(config.daemon.shutdownGraceMs);
      // The builds are over; give their handlers a moment to send the last line (the result, or
      // why it was cancelled), closing connections as they fall idle, then drop what is left.
      const deadline = Date.now() + 3000;
      let done = false;
      void closed.then(() => (done = true));
      while (!done && Date.now() < deadline) {
        for (const app of apps) app.server.closeIdleConnections();
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const app of apps) app.server.closeAllConnections();
      await closed;
      log({ msg: 'kiln daemon stopped' });
    })());
  return { daemon, addresses: shown, dockerAddresses: dockerShown, stop };
}
