// The counting proxy against a real echo server on a unix socket: bytes pass through unchanged both
// ways, each direction is counted on its own, several connections add up, close() ends them.
import { mkdtemp, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startCountingProxy, type CountingProxy } from '../../bench/proxy.js';

/** Sends DATA on a new connection to SOCKET, ends its side, and resolves with all it got back. */
function exchange(socket: string, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ path: socket, allowHalfOpen: true });
    const got: Buffer[] = [];
    c.on('data', (b: Buffer) => got.push(b));
    // 'close' rather than 'end': a connection the proxy destroys may close without an end.
    c.once('close', () => resolve(Buffer.concat(got)));
    c.once('error', reject);
    c.end(data);
  });
}

describe('startCountingProxy', () => {
  let dir = '';
  let echo: net.Server;
  let proxy: CountingProxy | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bench-proxy-'));
    // Echoes every byte, and answers "bye" once the client has ended its side (as an HTTP server
    // replies after a request whose sender half-closed).
    echo = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', (b: Buffer) => s.write(b));
      s.once('end', () => s.end('bye'));
      s.on('error', () => undefined); // the proxy dropping a connection (close()) is expected here
    });
    await new Promise<void>((r) => echo.listen(join(dir, 'echo.sock'), r));
  });

  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    await new Promise<void>((r) => echo.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  it('passes bytes through unchanged and counts each direction', async () => {
    proxy = await startCountingProxy(join(dir, 'proxy.sock'), join(dir, 'echo.sock'));
    const payload = Buffer.alloc(3 * 1024 * 1024 + 7, 'abc'); // several chunks, backpressure included
    const back = await exchange(proxy.path, payload);
    expect(back.subarray(0, payload.length).equals(payload)).toBe(true);
    expect(back.subarray(payload.length).toString()).toBe('bye');
    expect(proxy.clientToTarget()).toBe(payload.length);
    expect(proxy.targetToClient()).toBe(payload.length + 3);
  });

  it('adds up connections, so a build is the difference of two readings', async () => {
    proxy = await startCountingProxy(join(dir, 'proxy.sock'), join(dir, 'echo.sock'));
    await exchange(proxy.path, Buffer.from('first'));
    const before = proxy.clientToTarget();
    await Promise.all([exchange(proxy.path, Buffer.from('12345')), exchange(proxy.path, Buffer.from('678'))]);
    expect(before).toBe(5);
    expect(proxy.clientToTarget() - before).toBe(8);
  });

  it('replaces a stale socket file, and a client of a dead target sees its connection end', async () => {
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(join(dir, 'proxy.sock'), r));
    // Closed without unlinking the file: what a killed process leaves.
    stale.close();
    proxy = await startCountingProxy(join(dir, 'proxy.sock'), join(dir, 'nobody.sock'));
    const back = await exchange(proxy.path, Buffer.from('x')).catch(() => Buffer.from('error'));
    expect(['', 'error']).toContain(back.toString());
  });

  it('close() drops open connections and stops listening', async () => {
    proxy = await startCountingProxy(join(dir, 'proxy.sock'), join(dir, 'echo.sock'));
    const c = net.connect(proxy.path);
    await new Promise<void>((r) => c.once('connect', () => r()));
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    await proxy.close();
    await closed;
    proxy = undefined;
    await expect(exchange(join(dir, 'proxy.sock'), Buffer.from('x'))).rejects.toThrow();
  });
});
