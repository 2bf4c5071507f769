// Turns a build request into the graph the solver will run. The solver owns this call so that the
// frontend stays a pure translator and the rooms above never speak Dockerfile.

import { buildGraph } from '../frontend/index.js';
import type { BaseImageConfig, BuildGraph, NamedContextBinding, Platform } from '../frontend/types.js';
import { hostPlatform } from '../oci/index.js';

export interface PlanRequest {
  dockerfile: { name: string; text: string };
  buildArgs: Record<string, string | undefined>;
  target?: string;
  targetPlatform?: Platform;
  /** Configs of base images, once resolved (see BuildGraph.unresolvedImages). */
  baseImages?: Record<string, BaseImageConfig>;
  /** Named build contexts (--build-context) by normalised name. */
  namedContexts?: Record<string, NamedContextBinding>;
}

export function planBuild(req: PlanRequest): BuildGraph {
  const build = hostPlatform();
  return buildGraph(req.dockerfile.text, {
    filename: req.dockerfile.name,
    buildArgs: req.buildArgs,
    target: req.target,
    buildPlatform: build,
    targetPlatform: req.targetPlatform ?? build,
    baseImages: req.baseImages,
    namedContexts: req.namedContexts,
  });
}
