// The client side of the build API. Embedded mode runs the server in this process; a remote mode
// (HTTP to a kiln daemon) will implement the same interface.

import { BuildServer } from '../server/server.js';
import type { BuildRequest, BuildResult } from '../server/api.js';

export interface KilnClient {
  build(req: BuildRequest): Promise<BuildResult>;
}

export function embeddedClient(): KilnClient {
  const server = new BuildServer();
  return { build: (req) => server.build(req) };
}

export type { BuildRequest, BuildResult };
