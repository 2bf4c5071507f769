// `kiln daemon`: flags to ServeOptions, then serve until SIGTERM/SIGINT. The one command that starts
// the server room itself rather than talking to it through a client (as dockerd is to docker).

import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { serve } from '../server/serve.js';
import { defaultRoot } from '../solver/index.js';
import { DEFAULT_SOCKET } from '../server/address.js';
import { parseDuration, parseSize } from '../server/server.js';
import { ENTITLEMENTS, type Entitlement } from '../server/api.js';
import { kilnVersion } from './version.js';

export const DAEMON_HELP = `Usage: kiln daemon [OPTIONS]

Serve kiln's build API (for 'kiln build --addr', KILN_HOST, or the default socket).

Options:
      --addr ADDR            Listen on ADDR (repeatable): unix:///path.sock or tcp://HOST:PORT
                             (default: unix://${DEFAULT_SOCKET})
      --docker-api ADDR      Also serve the Docker Engine API's build and image endpoints on ADDR
                             (repeatable; same rules as --addr), for DOCKER_HOST=ADDR with
                             DOCKER_BUILDKIT=0 docker build, and SDKs such as dockerode
      --root DIR             kiln's state directory (default: $KILN_ROOT, /var/lib/kiln)
      --config FILE          daemon.json to read (default: $KILN_CONFIG, /etc/kiln/daemon.json)
      --group NAME           Group owning the unix sockets (mode 0660; default: root)
      --tlscacert FILE       CA that client certificates must chain to (TCP needs TLS)
      --tlscert FILE         The daemon's certificate
      --tlskey FILE          The daemon's key
      --allow-insecure-entitlement NAME  Let builds that ask (--allow) use network.host or
                             security.insecure (repeatable; also "allowed-entitlements" in daemon.json)
      --insecure-tcp         Allow plain TCP, on a loopback address only (for tests: RUN steps
                             share the host's network, so builds could reach such an API)
      --max-concurrent-builds N   Builds at once; the rest wait, in turn per client
      --max-context-size SIZE     Largest build context accepted (e.g. 8GB)
      --build-timeout DURATION    Cancel a build running longer (e.g. 1h; 0: none)
      --shutdown-grace DURATION   On SIGTERM, how long running builds may finish (default 30s)
      --log-format FORMAT    text or json (one line per request and per build)
  -h, --help                 This help
`;

export async function daemonCommand(argv: string[], io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream } = process): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        addr: { type: 'string', multiple: true },
        'docker-api': { type: 'string', multiple: true },
        root: { type: 'string' },
        config: { type: 'string' },
        group: { type: 'string' },
        tlscacert: { type: 'string' },
        tlscert: { type: 'string' },
        tlskey: { type: 'string' },
        'insecure-tcp': { type: 'boolean' },
        'allow-insecure-entitlement': { type: 'string', multiple: true },
        'max-concurrent-builds': { type: 'string' },
        'max-context-size': { type: 'string' },
        'build-timeout': { type: 'string' },
        'shutdown-grace': { type: 'string' },
        'log-format': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    io.stderr.write(`kiln daemon: ${(err as Error).message}\nSee 'kiln daemon --help'.\n`);
    return 1;
  }
  if (v.help) {
    io.stdout.write(DAEMON_HELP);
    return 0;
  }
  const overrides: Record<string, number> = {};
  try {
    if (v['max-concurrent-builds'] !== undefined) {
      const n = Number(v['max-concurrent-builds']);
      if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--max-concurrent-builds ${v['max-concurrent-builds']}: want a positive integer`);
      overrides.maxConcurrentBuilds = n;
    }
    if (v['max-context-size'] !== undefined) overrides.maxContextBytes = parseSize(v['max-context-size']);
    if (v['build-timeout'] !== undefined) overrides.buildTimeoutMs = parseDuration(v['build-timeout']);
    if (v['shutdown-grace'] !== undefined) overrides.shutdownGraceMs = parseDuration(v['shutdown-grace']);
  } catch (err) {
    io.stderr.write(`kiln daemon: ${(err as Error).message}\n`);
    return 1;
  }
  const entitlements = (v['allow-insecure-entitlement'] ?? []).flatMap((e) => e.split(',')).map((e) => e.trim());
  const unknown = entitlements.find((e) => !(ENTITLEMENTS as readonly string[]).includes(e));
  if (unknown !== undefined) {
    io.stderr.write(`kiln daemon: --allow-insecure-entitlement ${unknown}: want ${ENTITLEMENTS.join(' or ')}\n`);
    return 1;
  }
  const logFormat = v['log-format'] ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json') {
    io.stderr.write(`kiln daemon: --log-format ${logFormat}: want text or json\n`);
    return 1;
  }

  let running;
  try {
    running = await serve({
      root: path.resolve(v.root ?? defaultRoot()),
      addresses: v.addr ?? [`unix://${DEFAULT_SOCKET}`],
      dockerAddresses: v['docker-api'] ?? [],
      configFile: v.config,
      group: v.group,
      tls: { ca: v.tlscacert, cert: v.tlscert, key: v.tlskey },
      insecureTcp: v['insecure-tcp'] ?? false,
      logFormat,
      version: kilnVersion(),
      overrides,
      allowEntitlements: entitlements as Entitlement[],
      out: io.stderr,
    });
  } catch (err) {
    io.stderr.write(`kiln daemon: ${(err as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const onSignal = () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      running.stop().then(resolve, (err: unknown) => {
        io.stderr.write(`kiln daemon: stopping: ${(err as Error).message}\n`);
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return 0;
}
