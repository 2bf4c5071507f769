// The Dockerfile frontend: text in, BuildGraph out. Pure: no file system, network, clock or env.

import { convert } from './convert.js';
import type { BuildGraph, FrontendOptions } from './types.js';

export { DockerfileError } from './errors.js';
export type * from './types.js';

/** Translates a Dockerfile into the typed build graph; throws DockerfileError with file and line. */
export function buildGraph(text: string, opts: FrontendOptions): BuildGraph {
  return convert(text, opts);
}
export { redactCredentials } from './urls.js';
export { epochDate, EpochValueError, parseSourceDateEpoch, SOURCE_DATE_EPOCH } from './epoch.js';
