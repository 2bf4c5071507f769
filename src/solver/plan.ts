// Turns a build request into the graph the solver will run. The solver owns this call so that the
// frontend stays a pure translator and the rooms above never speak Dockerfile.

import { buildGraph } from '../frontend/index.js';
import type { BuildGraph, Platform } from '../frontend/types.js';

export interface PlanRequest {
  dockerfile: { name: string; text: string };
  buildArgs: Record<string, string | undefined>;
  target?: string;
  targetPlatform?: Platform;
}

/** The platform of this machine in OCI terms (Node's names differ: x64 -> amd64). */
export function hostPlatform(): Platform {
  const arch = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' } as Record<string, string>)[process.arch] ?? process.arch;
  return arch === 'arm' ? { os: 'linux', architecture: arch, variant: 'v7' } : { os: 'linux', architecture: arch };
}

export function planBuild(req: PlanRequest): BuildGraph {
  const build = hostPlatform();
  return buildGraph(req.dockerfile.text, {
    filename: req.dockerfile.name,
    buildArgs: req.buildArgs,
    target: req.target,
    buildPlatform: build,
    targetPlatform: req.targetPlatform ?? build,
  });
}
