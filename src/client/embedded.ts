// Embedded mode: the server runs in this process, on a kiln root it locks for the build.

import { BuildServer } from '../server/server.js';
import type { KilnClient } from './client.js';

/** In-process server on a kiln root (default: --root, KILN_ROOT, or the per-user default). */
export function embeddedClient(opts: { root?: string } = {}): KilnClient {
  const server = new BuildServer({ root: opts.root });
  return {
    build: (req, onProgress, signal) => server.build(req, onProgress, signal),
    listImages: () => server.listImages(),
    loadImages: (source, tag) => server.loadImages(source, tag),
    runImage: (name, opts) => server.runImage(name, opts),
    diskUsage: () => server.diskUsage(),
    prune: (opts) => server.prune(opts),
    close: () => server.close(),
  };
}
