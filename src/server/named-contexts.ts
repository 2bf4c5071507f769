// A request's named build contexts (--build-context) as the solver takes them: a directory read in
// place (embedded mode) or the copy a client synced (the daemon passes those in, by name), an image
// reference, a URL, an OCI layout directory. Preparing them (downloads, layout imports) is the
// solver's named-contexts module; this only translates and checks what a request may ask.

import { directoryContext, familiarString, parseReference, type ContextSource, type NamedContextInput } from '../solver/index.js';
import type { NamedContextSpec } from './api.js';

/**
 * The solver's inputs for `specs`. `synced` gives the source of each synced directory (or layout)
 * by context name: a daemon's leased copies; without one, a synced spec is an error.
 */
export function namedContextInputs(
  specs: Readonly<Record<string, NamedContextSpec>>,
  synced: Readonly<Record<string, ContextSource>> = {},
): Record<string, NamedContextInput> {
  const out: Record<string, NamedContextInput> = {};
  // `given`: the name as the request spells it, which is how the daemon passes its synced copies.
  const filesOf = (given: string, spec: { type: 'dir'; path: string } | { type: 'synced' }): ContextSource => {
    if (spec.type === 'dir') return directoryContext(spec.path, { identity: `${spec.path}#${given}` });
    const s = synced[given];
    if (!s) throw new Error(`--build-context ${given}: a synced context needs the daemon that received it`);
    return s;
  };
  for (const [given, spec] of Object.entries(specs)) {
    // Keys as buildx files them (a request from another client may not have normalised them).
    let name: string;
    try {
      name = familiarString(parseReference(given, { defaultTag: false })).replace(/:latest$/, '');
    } catch (err) {
      throw new Error(`--build-context ${given}: invalid context name: ${(err as Error).message}`);
    }
    if (name !== given && specs[name] !== undefined) throw new Error(`--build-context ${given}: the same name as ${name}`);
    switch (spec.type) {
      case 'dir':
      case 'synced':
        out[name] = { kind: 'files', source: filesOf(given, spec) };
        break;
      case 'docker-image':
        try {
          parseReference(spec.ref);
        } catch (err) {
          throw new Error(`--build-context ${name}=docker-image://${spec.ref}: ${(err as Error).message}`);
        }
        out[name] = { kind: 'image', ref: spec.ref };
        break;
      case 'url':
        out[name] = { kind: 'url', url: spec.url };
        break;
      case 'oci-layout':
        out[name] = { kind: 'oci-layout', dir: filesOf(given, spec.layout).dir, tag: spec.tag, ...(spec.digest !== undefined ? { digest: spec.digest } : {}) };
        break;
      default:
        throw new Error(`--build-context ${name}: unknown context type ${JSON.stringify((spec as { type: unknown }).type)}`);
    }
  }
  return out;
}
