// The build service. Embedded mode calls it in-process; the daemon will serve the same methods over HTTP.

import { planBuild } from '../solver/plan.js';
import type { BuildRequest, BuildResult } from './api.js';

export class BuildServer {
  async build(req: BuildRequest): Promise<BuildResult> {
    const graph = planBuild({ dockerfile: req.dockerfile, buildArgs: req.buildArgs, target: req.target });
    if (!req.dryRun) {
      // Execution lands with the end-to-end issue; until then say so instead of pretending.
      throw new Error('building images is not implemented yet: use --dry-run to print the step graph');
    }
    return { graph, warnings: graph.warnings };
  }
}
