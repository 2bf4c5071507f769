// Named build contexts (`--build-context NAME=...`) as the frontend sees them: a name that stands for
// a tree of files (a directory, an unpacked archive) or for an image (docker-image://, oci-layout://).
// BuildKit's dockerui looks a name up after normalising it as an image name (ParseNormalizedNamed,
// FamiliarString, ":latest" trimmed), so `FROM docker.io/library/alpine:latest` finds `alpine`.
// The frontend is pure: this is string work only; the solver prepares what each name stands for.

import { isValidReference } from './reference.js';
import type { NamedContextBinding } from './types.js';

/**
 * The key a name is looked up by: its familiar form without ":latest" (buildx's ParseContextNames
 * and dockerui's NamedContext), or undefined when it is not a valid (lower-case) image name.
 */
export function namedContextKey(name: string): string | undefined {
  if (!isValidReference(name)) return undefined;
  let rest = name;
  let digest = '';
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at);
    rest = rest.slice(0, at);
  }
  let tag = '';
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  const hasDomain = slash >= 0 && (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first);
  // Docker's normalisation: the repository part must be lower case (ParseNormalizedNamed refuses it).
  const repo = hasDomain ? rest.slice(slash + 1) : rest;
  if (repo.toLowerCase() !== repo) return undefined;
  if (hasDomain && (first === 'docker.io' || first === 'index.docker.io')) rest = repo;
  if (!hasDomain || first === 'docker.io' || first === 'index.docker.io') {
    if (rest.startsWith('library/') && rest.indexOf('/', 'library/'.length) < 0) rest = rest.slice('library/'.length);
  }
  if (tag === ':latest') tag = '';
  return rest + tag + digest;
}

/** The named context `name` stands for, when one was given. */
export function lookupNamedContext(contexts: Readonly<Record<string, NamedContextBinding>> | undefined, name: string): NamedContextBinding | undefined {
  if (!contexts) return undefined;
  const key = namedContextKey(name);
  return key === undefined ? undefined : contexts[key];
}
