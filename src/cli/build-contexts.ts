// `kiln build --build-context NAME=VALUE`, as buildx reads it. NAME is normalised as an image name
// (buildx's ParseContextNames: `docker.io/library/alpine:latest` is `alpine`); VALUE is a directory,
// docker-image://REF, oci-layout://PATH[:TAG][@sha256:DIGEST] or an http(s) URL of an archive.
// Parsing is pure; checking the paths (a directory, a layout's index.json) happens before the build.

import { type Stats, statSync } from 'node:fs';
import * as path from 'node:path';
import { familiarString, parseReference, type NamedContextSpec } from '../client/client.js';
import { UsageError } from './usage.js';

const FLAG = '--build-context';

function fail(value: string, reason: string): UsageError {
  return new UsageError(`invalid argument ${JSON.stringify(value)} for "${FLAG}" flag: ${reason}`);
}

/** The key buildx files a context name under, or a UsageError naming the flag. */
export function contextName(name: string, value: string): string {
  try {
    return familiarString(parseReference(name, { defaultTag: false })).replace(/:latest$/, '');
  } catch (err) {
    throw fail(value, `invalid context name ${JSON.stringify(name)}: ${(err as Error).message}`);
  }
}

/** BuildKit's git URL forms (a git context is not supported by kiln). */
function isGitContext(v: string): boolean {
  if (v.startsWith('git://') || v.startsWith('git@') || v.startsWith('ssh://') || v.startsWith('github.com/')) return true;
  return /^https?:\/\//.test(v) && /\.git\/?$/.test(v.split('#')[0]!);
}

/** One flag value. Directory paths stay as written: checkBuildContexts resolves them. */
export function parseBuildContextFlag(value: string): { name: string; spec: NamedContextSpec } {
  const eq = value.indexOf('=');
  if (eq < 0) throw fail(value, 'expected NAME=VALUE');
  const raw = value.slice(eq + 1);
  const name = contextName(value.slice(0, eq), value);
  if (raw === '') throw fail(value, 'empty value (want a directory, docker-image://REF, oci-layout://PATH or an https:// URL)');
  if (raw.startsWith('docker-image://')) {
    const ref = raw.slice('docker-image://'.length);
    try {
      parseReference(ref);
    } catch (err) {
      throw fail(value, `docker-image://: ${(err as Error).message}`);
    }
    return { name, spec: { type: 'docker-image', ref } };
  }
  if (raw.startsWith('oci-layout://')) {
    // buildx: PATH[:TAG][@DIGEST], the digest cut first, then the tag at the first ":".
    let rest = raw.slice('oci-layout://'.length);
    let digest: string | undefined;
    const at = rest.indexOf('@');
    if (at >= 0) {
      digest = rest.slice(at + 1);
      rest = rest.slice(0, at);
      if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw fail(value, `oci-layout://: invalid digest ${JSON.stringify(digest)} (want sha256:<64 hex digits>)`);
    }
    let tag = 'latest';
    const colon = rest.indexOf(':');
    if (colon >= 0) {
      tag = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
      if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw fail(value, `oci-layout://: invalid tag ${JSON.stringify(tag)}`);
    }
    if (rest === '') throw fail(value, 'oci-layout:// needs the path of an OCI layout directory');
    return { name, spec: { type: 'oci-layout', layout: { type: 'dir', path: rest }, tag, ...(digest !== undefined ? { digest } : {}) } };
  }
  if (isGitContext(raw)) throw fail(value, 'git repositories as build contexts are not supported by kiln');
  if (/^https?:\/\//i.test(raw)) {
    try {
      new URL(raw);
    } catch {
      throw fail(value, 'not a valid URL');
    }
    return { name, spec: { type: 'url', url: raw } };
  }
  if (raw.startsWith('target:')) throw fail(value, 'target: contexts are a buildx bake feature, not supported by kiln build');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(raw);
  if (scheme)
    throw fail(value, `unknown context scheme ${JSON.stringify(scheme[1] + '://')} (want a directory, docker-image://, oci-layout://, http:// or https://)`);
  return { name, spec: { type: 'dir', path: raw } };
}

/** All values: a later one for the same name wins, as in buildx. */
export function parseBuildContexts(values: readonly string[]): Record<string, NamedContextSpec> | undefined {
  if (values.length === 0) return undefined;
  const out: Record<string, NamedContextSpec> = {};
  for (const v of values) {
    const { name, spec } = parseBuildContextFlag(v);
    out[name] = spec;
  }
  return out;
}

/** Directory paths made absolute and checked: an existing directory, a layout with index.json. */
export function checkBuildContexts(specs: Record<string, NamedContextSpec> | undefined): Record<string, NamedContextSpec> | undefined {
  if (!specs) return undefined;
  const out: Record<string, NamedContextSpec> = {};
  const dir = (name: string, p: string, what: string): string => {
    const abs = path.resolve(p);
    let st: Stats;
    try {
      st = statSync(abs);
    } catch {
      throw new UsageError(`${FLAG} ${name}: ${what} ${JSON.stringify(p)} not found`);
    }
    if (!st.isDirectory()) throw new UsageError(`${FLAG} ${name}: ${what} ${JSON.stringify(p)} is not a directory`);
    return abs;
  };
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.type === 'dir') {
      out[name] = { type: 'dir', path: dir(name, spec.path, 'path') };
    } else if (spec.type === 'oci-layout' && spec.layout.type === 'dir') {
      const abs = dir(name, spec.layout.path, 'OCI layout');
      try {
        if (!statSync(path.join(abs, 'index.json')).isFile()) throw new Error();
      } catch {
        throw new UsageError(`${FLAG} ${name}: ${JSON.stringify(spec.layout.path)} is not an OCI image layout (no index.json)`);
      }
      out[name] = { ...spec, layout: { type: 'dir', path: abs } };
    } else {
      out[name] = spec;
    }
  }
  return out;
}
