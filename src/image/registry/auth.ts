// Registry authentication: anonymous, HTTP Basic, and the bearer-token flow that a 401's
// `WWW-Authenticate: Bearer realm=...,service=...,scope=...` asks for (Docker's token spec).
// Credentials come from the RegistryConfig or from Docker's config.json `auths`.

import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BasicCredentials, RegistryConfig } from './config.js';
import { DEFAULT_DOMAIN } from '../reference.js';
import { type HttpResponse, httpRequest } from '../../util/http-request.js';

export interface Challenge {
  scheme: string; // lower-cased: 'basic' | 'bearer' | ...
  params: Record<string, string>; // keys lower-cased
}

/** Parses a WWW-Authenticate header (one or more challenges, quoted or token values). */
export function parseWWWAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = (): void => {
    while (i < s.length && /[\s,]/.test(s[i]!)) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < s.length && /[^\s,=]/.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  while (i < s.length) {
    skipWs();
    const scheme = token();
    if (!scheme) break;
    const params: Record<string, string> = {};
    for (;;) {
      skipWs();
      const save = i;
      const key = token();
      while (i < s.length && s[i] === ' ') i++;
      if (!key || s[i] !== '=') {
        i = save; // not a parameter: the next challenge starts here
        break;
      }
      i++;
      while (i < s.length && s[i] === ' ') i++;
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i++];
        }
        i++;
      } else {
        const start = i;
        while (i < s.length && s[i] !== ',') i++;
        value = s.slice(start, i).trim();
      }
      params[key.toLowerCase()] = value;
    }
    out.push({ scheme: scheme.toLowerCase(), params });
  }
  return out;
}

/** The names a docker config may file a registry's credentials under. */
function authKeysFor(domain: string): string[] {
  if (domain === DEFAULT_DOMAIN) {
    return ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1'];
  }
  return [domain, `https://${domain}`, `http://${domain}`, `https://${domain}/v1/`, `https://${domain}/v2/`];
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
}

function defaultDockerConfigPath(): string {
  const dir = process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

/** Credentials for a registry domain, or undefined for anonymous access. */
export function lookupCredentials(domain: string, config: RegistryConfig): BasicCredentials | undefined {
  const direct = config.credentials?.[domain];
  if (direct) return direct;
  if (config.dockerConfigPath === false) return undefined;
  const file = config.dockerConfigPath ?? defaultDockerConfigPath();
  let parsed: DockerConfigFile;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as DockerConfigFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`docker config ${file}: ${(err as Error).message}`);
  }
  const auths = parsed.auths ?? {};
  for (const key of authKeysFor(domain)) {
    const entry = auths[key];
    if (!entry) continue;
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new Error(`docker config ${file}: auths[${JSON.stringify(key)}].auth is not base64 of user:password`);
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password };
  }
  return undefined;
}

export function basicHeader(c: BasicCredentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/**
 * Remembers, per endpoint origin, how it wants to be authenticated and the bearer tokens it handed
 * out (per set of scopes), so one 401 round trip serves a whole pull or push.
 */
export class Authenticator {
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, CachedToken>();

  constructor(
    private readonly config: RegistryConfig,
    private readonly userAgent: string,
  ) {}

  /** Records the challenge of a 401 answer; returns false if it offers nothing we can answer. */
  learn(origin: string, header: string | null): boolean {
    if (!header) return false;
    const usable = parseWWWAuthenticate(header).find((c) => c.scheme === 'bearer' || c.scheme === 'basic');
    if (!usable) return false;
    this.challenges.set(origin, usable);
    return true;
  }

  knows(origin: string): boolean {
    return this.challenges.has(origin);
  }

  /** The Authorization header for a request needing `scopes`, or undefined to go anonymous. */
  async authorization(origin: string, credsDomain: string, scopes: string[], forceNew = false): Promise<string | undefined> {
    const ch = this.challenges.get(origin);
    if (!ch) return undefined;
    const creds = lookupCredentials(credsDomain, this.config);
    if (ch.scheme === 'basic') {
      if (!creds) throw new Error(`registry ${credsDomain} wants basic authentication and no credentials are configured for it`);
      return basicHeader(creds);
    }
    const allScopes = [...new Set([...scopes, ...(ch.params.scope ? ch.params.scope.split(' ') : [])])].sort();
    const key = `${origin} ${allScopes.join(' ')}`;
    const cached = this.tokens.get(key);
    if (cached && !forceNew && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    const fresh = await this.fetchToken(ch, credsDomain, creds, allScopes);
    this.tokens.set(key, fresh);
    return `Bearer ${fresh.token}`;
  }

  private async fetchToken(ch: Challenge, domain: string, creds: BasicCredentials | undefined, scopes: string[]): Promise<CachedToken> {
    const realm = ch.params.realm;
    if (!realm) throw new Error(`registry ${domain}: bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new Error(`registry ${domain}: bearer realm ${JSON.stringify(realm)} is not a URL`);
    }
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = { 'user-agent': this.userAgent };
    if (creds) {
      url.searchParams.set('account', creds.username);
      headers.authorization = basicHeader(creds);
    }
    let res: HttpResponse;
    try {
      res = await httpRequest(url, { headers });
    } catch (err) {
      throw new Error(`registry ${domain}: token server ${url.origin}: ${(err as Error).message}`, { cause: err });
    }
    const text = await res.text();
    if (!res.ok) {
      throw new Error(
        `registry ${domain}: token server ${url.origin}${url.pathname} answered ${res.status}${creds ? ` for user ${creds.username}` : ' (anonymous)'}: ${text.slice(0, 200)}`,
      );
    }
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      throw new Error(`registry ${domain}: token server ${url.origin} sent no JSON`);
    }
    const token = body.token || body.access_token;
    if (!token) throw new Error(`registry ${domain}: token server ${url.origin} sent neither token nor access_token`);
    // The spec's default lifetime is 60 s; refresh a little early.
    const life = Math.max(10, (typeof body.expires_in === 'number' ? body.expires_in : 60) - 5);
    return { token, expiresAt: Date.now() + life * 1000 };
  }
}
