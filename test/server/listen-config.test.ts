// The daemon's addresses and limits: parsing, and the refusals that protect a shared service.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/server/config.js';
import { checkAddress, formatAddress, isLoopback, parseAddress, secureSocket } from '../../src/server/listen.js';

describe('daemon addresses', () => {
  it('parses unix and tcp addresses, IPv6 in brackets', () => {
    expect(parseAddress('unix:///run/kiln/kiln.sock')).toEqual({ kind: 'unix', path: '/run/kiln/kiln.sock' });
    expect(parseAddress('tcp://127.0.0.1:1234')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 1234 });
    expect(parseAddress('tcp://[::1]:99')).toEqual({ kind: 'tcp', host: '::1', port: 99 });
    expect(formatAddress(parseAddress('tcp://[::1]:99'))).toBe('tcp://[::1]:99');
    expect(() => parseAddress('unix://relative.sock')).toThrow(/must be absolute/);
    expect(() => parseAddress('http://x:1')).toThrow(/want unix:/);
    expect(() => parseAddress('tcp://host:70000')).toThrow(/port out of range/);
  });

  it('serves TCP only with TLS, or plain on loopback with --insecure-tcp', () => {
    const tls = { ca: Buffer.from(''), cert: Buffer.from(''), key: Buffer.from('') };
    const base = { maxHeaderBytes: 16384 };
    expect(() => checkAddress(parseAddress('tcp://0.0.0.0:1'), { ...base, insecureTcp: false })).toThrow(/TCP is served only with TLS/);
    expect(() => checkAddress(parseAddress('tcp://0.0.0.0:1'), { ...base, insecureTcp: true })).toThrow(/loopback addresses only/);
    expect(() => checkAddress(parseAddress('tcp://127.0.0.1:1'), { ...base, insecureTcp: true })).not.toThrow();
    expect(() => checkAddress(parseAddress('tcp://0.0.0.0:1'), { ...base, insecureTcp: false, tls })).not.toThrow();
    expect(() => checkAddress(parseAddress('unix:///x.sock'), { ...base, insecureTcp: false })).not.toThrow();
    expect([isLoopback('127.0.0.2'), isLoopback('::1'), isLoopback('localhost'), isLoopback('10.0.0.1'), isLoopback('128.0.0.1')]).toEqual([
      true,
      true,
      true,
      false,
      false,
    ]);
  });
});

describe("the unix socket's owner", () => {
  it('is root and --group (a name from /etc/group or a number), mode 0660; an unknown group is refused', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-sock-')), 'kiln.sock');
    fs.writeFileSync(file, '');
    await secureSocket(file, 'daemon');
    expect(fs.statSync(file)).toMatchObject({ uid: 0, gid: 1 });
    expect(fs.statSync(file).mode & 0o777).toBe(0o660);
    await secureSocket(file, '4242');
    expect(fs.statSync(file).gid).toBe(4242);
    await secureSocket(file, undefined);
    expect(fs.statSync(file).gid).toBe(0);
    await expect(secureSocket(file, 'no-such-group-kiln')).rejects.toThrow('--group no-such-group-kiln: no such group in /etc/group');
  });
});

describe('daemon limits in daemon.json', () => {
  const write = (obj: unknown) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-config-'));
    fs.writeFileSync(path.join(dir, 'daemon.json'), JSON.stringify(obj));
    return { KILN_CONFIG: path.join(dir, 'daemon.json') };
  };

  it('has defaults, and takes sizes and durations as the gc keys do', () => {
    // A RUN gets at most 2048 processes unless the config says otherwise (Podman's and buildah's default).
    expect(loadConfig(write({})).runLimits.pids).toBe(2048);
    expect(loadConfig(write({ 'run-pids-limit': 10000 })).runLimits.pids).toBe(10000);
    expect(loadConfig(write({})).daemon).toEqual({
      maxConcurrentBuilds: 8,
      maxContextBytes: 8 * 1024 ** 3,
      maxRequestBodyBytes: 64 * 1024 ** 2,
      maxHeaderBytes: 16 * 1024,
      maxConcurrentUploads: 8,
      buildTimeoutMs: 0,
      shutdownGraceMs: 30_000,
    });
    const d = loadConfig(
      write({
        'max-concurrent-builds': 3,
        'max-context-size': '2GB',
        'max-request-body-size': 1048576,
        'max-header-size': '8KB',
        'max-concurrent-uploads': 2,
        'build-timeout': '1h',
        'shutdown-grace': '5s',
      }),
    ).daemon;
    expect(d).toMatchObject({
      maxConcurrentBuilds: 3,
      maxRequestBodyBytes: 1048576,
      maxConcurrentUploads: 2,
      buildTimeoutMs: 3_600_000,
      shutdownGraceMs: 5000,
    });
    expect(d.maxContextBytes).toBeGreaterThan(1.9e9);
    expect(d.maxHeaderBytes).toBeGreaterThan(7000);
  });

  it("takes the step log limit (2 MiB by default, -1 for none, BuildKit's variable too) and the largest --pids-limit", () => {
    expect(loadConfig(write({})).stepLogMaxBytes).toBe(2 * 1024 * 1024);
    expect(loadConfig(write({ 'step-log-max-size': '64KiB' })).stepLogMaxBytes).toBe(64 * 1024);
    expect(loadConfig(write({ 'step-log-max-size': -1 })).stepLogMaxBytes).toBe(-1);
    expect(loadConfig({ ...write({}), BUILDKIT_STEP_LOG_MAX_SIZE: '-1' }).stepLogMaxBytes).toBe(-1);
    expect(() => loadConfig(write({ 'step-log-max-size': 'lots' }))).toThrow(/"step-log-max-size" must be a size/);
    expect(loadConfig(write({})).maxRunPids).toBe(32768);
    expect(loadConfig(write({ 'max-run-pids-limit': 100000 })).maxRunPids).toBe(100000);
  });

  it('names the key and the file of a bad value', () => {
    const env = write({ 'max-context-size': 'lots' });
    expect(() => loadConfig(env)).toThrow(new RegExp(`kiln config ${env.KILN_CONFIG}: "max-context-size" must be a size`));
    expect(() => loadConfig(write({ 'build-timeout': '10 parsecs' }))).toThrow(/"build-timeout" must be a duration/);
    expect(() => loadConfig(write({ 'max-concurrent-builds': 0 }))).toThrow(/"max-concurrent-builds" must be a positive integer/);
  });
});
