import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { endpointsFor, isInsecureRegistry, lookupCredentials, parseWWWAuthenticate } from '../../../src/image/registry/index.js';
import { tempDir } from './helpers.js';

describe('endpoints', () => {
  it('puts mirrors before Docker Hub and uses them only for docker.io', () => {
    const cfg = { mirrors: ['https://mirror.example/', 'http://127.0.0.1:5001/prefix/'] };
    expect(endpointsFor('docker.io', cfg)).toEqual([
      { base: 'https://mirror.example', domain: 'docker.io', mirror: true },
      { base: 'http://127.0.0.1:5001/prefix', domain: 'docker.io', mirror: true },
      { base: 'https://registry-1.docker.io', domain: 'docker.io', mirror: false },
    ]);
    expect(endpointsFor('ghcr.io', cfg)).toEqual([{ base: 'https://ghcr.io', domain: 'ghcr.io', mirror: false }]);
    expect(() => endpointsFor('docker.io', { mirrors: ['ftp://x'] })).toThrow(/only http and https/);
  });

  it.each([
    ['localhost:5000', {}, true],
    ['localhost', {}, true],
    ['127.0.0.1:5000', {}, true],
    ['127.4.5.6', {}, true],
    ['[::1]:5000', {}, true],
    ['registry.example:5000', {}, false],
    ['registry.example:5000', { insecureRegistries: ['registry.example:5000'] }, true],
    ['registry.example:5000', { insecureRegistries: ['registry.example'] }, true],
    ['registry.example:5000', { insecureRegistries: ['other.example'] }, false],
    ['10.1.2.3:5000', { insecureRegistries: ['10.0.0.0/8'] }, true],
    ['11.1.2.3:5000', { insecureRegistries: ['10.0.0.0/8'] }, false],
    ['[fd00::1]:5000', { insecureRegistries: ['fd00::/8'] }, true],
    ['128.0.0.1', {}, false],
  ])('%s with %j is insecure: %s', (domain, cfg, want) => {
    expect(isInsecureRegistry(domain, cfg)).toBe(want);
    expect(endpointsFor(domain, cfg)[0]!.base.startsWith(want ? 'http://' : 'https://')).toBe(true);
  });
});

describe('WWW-Authenticate', () => {
  it('parses bearer and basic challenges', () => {
    expect(parseWWWAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } },
    ]);
    expect(parseWWWAuthenticate('Basic realm="x y"')).toEqual([{ scheme: 'basic', params: { realm: 'x y' } }]);
    expect(parseWWWAuthenticate('Bearer realm=https://a/token, error="insufficient_scope", scope="repository:a:pull,push"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://a/token', error: 'insufficient_scope', scope: 'repository:a:pull,push' } },
    ]);
    expect(parseWWWAuthenticate('Negotiate, Basic realm="r"')).toEqual([
      { scheme: 'negotiate', params: {} },
      { scheme: 'basic', params: { realm: 'r' } },
    ]);
    expect(parseWWWAuthenticate('Bearer realm="with \\"quote\\""')[0]!.params.realm).toBe('with "quote"');
  });
});

describe('docker config credentials', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('kiln-dockercfg-');
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('finds auths by host, URL and Docker Hub legacy key, and prefers explicit credentials', async () => {
    const file = path.join(dir, 'config.json');
    await fs.writeFile(
      file,
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: Buffer.from('hubuser:hub:pass').toString('base64') },
          'reg.example:5000': { username: 'u', password: 'p' },
          'https://other.example': { auth: Buffer.from('o:q').toString('base64') },
        },
      }),
    );
    expect(lookupCredentials('docker.io', { dockerConfigPath: file })).toEqual({ username: 'hubuser', password: 'hub:pass' });
    expect(lookupCredentials('reg.example:5000', { dockerConfigPath: file })).toEqual({ username: 'u', password: 'p' });
    expect(lookupCredentials('other.example', { dockerConfigPath: file })).toEqual({ username: 'o', password: 'q' });
    expect(lookupCredentials('nobody.example', { dockerConfigPath: file })).toBeUndefined();
    expect(lookupCredentials('docker.io', { dockerConfigPath: file, credentials: { 'docker.io': { username: 'x', password: 'y' } } })).toEqual({
      username: 'x',
      password: 'y',
    });
    expect(lookupCredentials('docker.io', { dockerConfigPath: path.join(dir, 'missing.json') })).toBeUndefined();
    expect(lookupCredentials('docker.io', { dockerConfigPath: false })).toBeUndefined();
  });

  it('names the file when it is broken', async () => {
    const file = path.join(dir, 'broken.json');
    await fs.writeFile(file, '{nope');
    expect(() => lookupCredentials('docker.io', { dockerConfigPath: file })).toThrow(`docker config ${file}`);
    await fs.writeFile(file, JSON.stringify({ auths: { 'docker.io': { auth: Buffer.from('nocolon').toString('base64') } } }));
    expect(() => lookupCredentials('docker.io', { dockerConfigPath: file })).toThrow(/is not base64 of user:password/);
  });
});
