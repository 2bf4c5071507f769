// Image references, parsed and normalised the way Docker does (distribution/reference's grammar and
// its ParseNormalizedNamed rules), so `busybox`, `library/busybox` and
// `docker.io/library/busybox:latest` name the same thing and cache keys agree with Docker's.
//
//   reference  := name [ ":" tag ] [ "@" digest ]
//   name       := [ domain "/" ] path-component [ "/" path-component ]*
//   domain     := host [ ":" port ]        host: DNS labels (any case), or [IPv6]
//   path-comp  := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
//   tag        := [\w][\w.-]{0,127}
//
// The first component is a domain only if it has a "." or ":", is "localhost", or has an uppercase
// letter; otherwise the name is on Docker Hub, and a single-component Hub name gets "library/".
// kiln only stores sha256 content, so digests are sha256 (other algorithms are refused by name).

import { type Digest, isDigest } from '../oci/index.js';

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
const NAME_TOTAL_LENGTH_MAX = 255;

export interface ImageReference {
  /** Registry host and optional port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`. */
  domain: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  path: string;
  tag?: string;
  digest?: Digest;
}

export class InvalidReferenceError extends Error {
  constructor(
    readonly reference: string,
    reason: string,
  ) {
    super(`invalid reference ${JSON.stringify(reference)}: ${reason}`);
    this.name = 'InvalidReferenceError';
  }
}

const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])`;
const DOMAIN_RE = new RegExp(`^${HOST}(?::[0-9]+)?$`);
const PATH_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const ANY_DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const HEX64_RE = /^[a-f0-9]{64}$/;

export interface ParseOptions {
  /** Add `:latest` when neither tag nor digest is given (as `docker pull` does). Default true. */
  defaultTag?: boolean;
}

/** Parses and normalises a reference; throws InvalidReferenceError naming the input. */
export function parseReference(input: string, opts: ParseOptions = {}): ImageReference {
  const s = input;
  if (s === '') throw new InvalidReferenceError(input, 'repository name must have at least one component');
  if (HEX64_RE.test(s)) throw new InvalidReferenceError(input, 'cannot specify 64-byte hexadecimal strings as a repository name');

  // Split off "@digest" first: a digest contains ":" and must not be taken for a tag.
  let rest = s;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!ANY_DIGEST_RE.test(d)) throw new InvalidReferenceError(input, 'invalid digest format');
    if (!d.startsWith('sha256:')) throw new InvalidReferenceError(input, `unsupported digest algorithm ${JSON.stringify(d.split(':')[0])} (only sha256)`);
    if (!isDigest(d)) throw new InvalidReferenceError(input, 'invalid sha256 digest (want 64 lowercase hex characters)');
    digest = d;
  }

  // A tag is after the last ":" that comes after the last "/" (a ":" before it is a port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw new InvalidReferenceError(input, 'invalid tag format');
  }

  const [domain, remainder] = splitDomain(rest);
  if (domain !== undefined && !DOMAIN_RE.test(domain)) throw new InvalidReferenceError(input, 'invalid reference format (bad registry host)');
  if (remainder === '') throw new InvalidReferenceError(input, 'repository name must have at least one component');
  if (remainder.toLowerCase() !== remainder) {
    throw new InvalidReferenceError(input, `repository name (${remainder}) must be lowercase`);
  }
  if (!PATH_RE.test(remainder)) throw new InvalidReferenceError(input, 'invalid reference format');

  let finalDomain = domain ?? DEFAULT_DOMAIN;
  if (finalDomain === LEGACY_DEFAULT_DOMAIN) finalDomain = DEFAULT_DOMAIN;
  const path = finalDomain === DEFAULT_DOMAIN && !remainder.includes('/') ? OFFICIAL_REPO_PREFIX + remainder : remainder;
  if (finalDomain.length + 1 + path.length > NAME_TOTAL_LENGTH_MAX) {
    throw new InvalidReferenceError(input, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }

  const ref: ImageReference = { domain: finalDomain, path };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  if ((opts.defaultTag ?? true) && tag === undefined && digest === undefined) ref.tag = DEFAULT_TAG;
  return ref;
}

/** Docker's splitDockerDomain: is the first component a registry host or part of a Hub name? */
function splitDomain(name: string): [string | undefined, string] {
  const i = name.indexOf('/');
  if (i < 0) return [undefined, name];
  const first = name.slice(0, i);
  const isDomain = /[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first;
  return isDomain ? [first, name.slice(i + 1)] : [undefined, name];
}

/** `domain/path`, the fully qualified repository. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The full normalised string: `docker.io/library/busybox:latest`, `host:5000/a/b@sha256:...`. */
export function formatReference(ref: ImageReference): string {
  return repositoryName(ref) + (ref.tag !== undefined ? `:${ref.tag}` : '') + (ref.digest ? `@${ref.digest}` : '');
}

/** Short name for display, as the docker CLI shows it: `busybox`, `user/app`, `localhost:5000/app`. */
export function familiarName(ref: ImageReference): string {
  if (ref.domain === DEFAULT_DOMAIN) {
    return ref.path.startsWith(OFFICIAL_REPO_PREFIX) && ref.path.indexOf('/', OFFICIAL_REPO_PREFIX.length) < 0
      ? ref.path.slice(OFFICIAL_REPO_PREFIX.length)
      : ref.path;
  }
  return repositoryName(ref);
}

/** Familiar name with tag and digest: `busybox:latest`, `user/app@sha256:...`. */
export function familiarString(ref: ImageReference): string {
  return familiarName(ref) + (ref.tag !== undefined ? `:${ref.tag}` : '') + (ref.digest ? `@${ref.digest}` : '');
}

/** The same repository pinned to a digest (the tag is kept for display, as Docker does). */
export function withDigest(ref: ImageReference, digest: Digest): ImageReference {
  return { ...ref, digest };
}

/** What to ask the registry for: the digest when pinned, else the tag (default `latest`). */
export function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? DEFAULT_TAG;
}
