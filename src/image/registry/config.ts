// Which URLs serve a registry domain: mirrors first for Docker Hub (daemon.json `registry-mirrors`),
// plain HTTP for loopback and registries configured insecure, HTTPS for everything else.

import { BlockList, isIP } from 'node:net';
import { DEFAULT_DOMAIN } from '../reference.js';

export interface BasicCredentials {
  username: string;
  password: string;
}

export interface RegistryConfig {
  /** Docker Hub mirrors as in daemon.json `registry-mirrors` (e.g. `https://mirror.example`); tried in order before Hub. */
  mirrors?: string[];
  /** Registries reached over plain HTTP: `host`, `host:port` or a CIDR (`10.0.0.0/8`), as daemon.json `insecure-registries`. */
  insecureRegistries?: string[];
  /** Docker's client config with `auths`; default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. `false` reads none. */
  dockerConfigPath?: string | false;
  /** Credentials by registry domain (`localhost:5000`, `docker.io`); these win over the Docker config file. */
  credentials?: Record<string, BasicCredentials>;
  /** Docker Hub's API endpoint; default `https://registry-1.docker.io` (tests point it at loopback). */
  dockerHubEndpoint?: string;
  /** Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks of this size. Default 16 MiB. */
  chunkSize?: number;
  /** Parallel blob transfers per image. Default 3. */
  concurrency?: number;
  userAgent?: string;
}

export interface Endpoint {
  /** Base URL; the API is at `${base}/v2/...`. No trailing slash. */
  base: string;
  /** The domain the reference names (`docker.io` even when a mirror serves it). */
  domain: string;
  mirror: boolean;
}

const DEFAULT_HUB_ENDPOINT = 'https://registry-1.docker.io';

/** Host without port or IPv6 brackets. */
export function hostOf(domain: string): string {
  if (domain.startsWith('[')) return domain.slice(1, domain.indexOf(']'));
  const i = domain.lastIndexOf(':');
  return i >= 0 ? domain.slice(0, i) : domain;
}

function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

export function isInsecureRegistry(domain: string, config: RegistryConfig): boolean {
  const host = hostOf(domain);
  if (isLoopback(host)) return true;
  const list = config.insecureRegistries ?? [];
  if (list.includes(domain) || list.includes(host)) return true;
  const family = isIP(host);
  if (!family) return false;
  const cidrs = new BlockList();
  for (const entry of list) {
    const m = /^(.+)\/(\d{1,3})$/.exec(entry);
    if (!m || !isIP(m[1]!)) continue;
    cidrs.addSubnet(m[1]!, Number(m[2]), isIP(m[1]!) === 6 ? 'ipv6' : 'ipv4');
  }
  return cidrs.check(host, family === 6 ? 'ipv6' : 'ipv4');
}

function trimBase(url: string): string {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`registry mirror ${url}: only http and https URLs are supported`);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
}

/** Endpoints for pulling from `domain`, in the order to try them. Pushes use only the last one. */
export function endpointsFor(domain: string, config: RegistryConfig): Endpoint[] {
  if (domain === DEFAULT_DOMAIN) {
    const mirrors = (config.mirrors ?? []).map((m) => ({ base: trimBase(m), domain, mirror: true }));
    return [...mirrors, { base: trimBase(config.dockerHubEndpoint ?? DEFAULT_HUB_ENDPOINT), domain, mirror: false }];
  }
  const scheme = isInsecureRegistry(domain, config) ? 'http' : 'https';
  return [{ base: `${scheme}://${domain}`, domain, mirror: false }];
}
