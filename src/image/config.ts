// The image config Docker writes for a built stage: the frontend's StageImageConfig (already merged
// with the base image's config) plus the layer diff IDs and the history the solver produced.

import type { StageImageConfig } from '../frontend/types.js';
import type { ContainerConfig, Digest, HistoryEntry, ImageConfig } from '../oci/index.js';

export function toImageConfig(stage: StageImageConfig, diffIds: Digest[], history: HistoryEntry[], created: string): ImageConfig {
  const config: ContainerConfig = {};
  // Field order follows what Docker/BuildKit write, which keeps diffs of config JSON readable.
  if (stage.user) config.User = stage.user;
  if (stage.exposedPorts.length) config.ExposedPorts = Object.fromEntries(stage.exposedPorts.map((p) => [p, {}]));
  config.Env = stage.env.map(([k, v]) => `${k}=${v}`);
  if (stage.entrypoint) config.Entrypoint = stage.entrypoint;
  if (stage.cmd) config.Cmd = stage.cmd;
  if (stage.volumes.length) config.Volumes = Object.fromEntries(stage.volumes.map((v) => [v, {}]));
  if (stage.workingDir) config.WorkingDir = stage.workingDir;
  if (Object.keys(stage.labels).length) config.Labels = stage.labels;
  if (stage.stopSignal) config.StopSignal = stage.stopSignal;
  if (stage.healthcheck) {
    const h = stage.healthcheck;
    config.Healthcheck = {
      Test: h.test,
      ...(h.intervalNs !== undefined && { Interval: h.intervalNs }),
      ...(h.timeoutNs !== undefined && { Timeout: h.timeoutNs }),
      ...(h.startPeriodNs !== undefined && { StartPeriod: h.startPeriodNs }),
      ...(h.startIntervalNs !== undefined && { StartInterval: h.startIntervalNs }),
      ...(h.retries !== undefined && { Retries: h.retries }),
    };
  }
  if (stage.onBuild.length) config.OnBuild = stage.onBuild;
  if (stage.shell.length && (stage.shellSet || !isDefaultShell(stage.shell))) config.Shell = stage.shell;

  return {
    created,
    ...(stage.author !== undefined && { author: stage.author }),
    architecture: stage.architecture,
    os: stage.os,
    ...(stage.variant && { variant: stage.variant }),
    config,
    rootfs: { type: 'layers', diff_ids: diffIds },
    history,
  };
}

function isDefaultShell(shell: string[]): boolean {
  return shell.length === 2 && shell[0] === '/bin/sh' && shell[1] === '-c';
}
