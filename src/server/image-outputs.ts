// The request's image output options and attestations, handed to the exporters: checked before the
// build runs (a bad combination fails at once, with BuildKit's message), and the provenance
// request with the parts of the build request it records.

import type { ExportAttestations, ExportOutput } from '../solver/export.js';
import { checkImageOutput, ImageOutputError } from '../solver/image-output.js';
import { BuildFailure, type BuildRequest } from './api.js';

/** Throws BuildFailure when an image output's options cannot be exported as asked. */
export function checkImageOutputs(req: BuildRequest, outputs: readonly ExportOutput[]): void {
  const attest = req.attest?.provenance !== undefined;
  // The multi-platform exporter (solver/export-platforms.ts) takes compression only, so far: the
  // rest is refused by name rather than left out of the index without a word.
  if ((req.platforms?.length ?? 0) > 1) {
    const unsupported = [
      ...(attest ? ['--provenance/--attest'] : []),
      ...outputs.flatMap((o) =>
        o.type === 'image' || o.type === 'docker' || o.type === 'oci'
          ? [
              ...(o.level !== undefined ? ['compression-level'] : []),
              ...(o.force ? ['force-compression'] : []),
              ...(o.ociTypes === false ? ['oci-mediatypes=false'] : []),
              ...(o.ociArtifact !== undefined ? ['oci-artifact'] : []),
              ...(o.annotations?.length ? ['annotations'] : []),
            ]
          : [],
      ),
    ];
    if (unsupported.length) {
      throw new BuildFailure({
        message: `${[...new Set(unsupported)].join(', ')}: not supported yet for multi-platform builds (--platform with several platforms)`,
      });
    }
  }
  for (const o of outputs) {
    if (o.type !== 'image' && o.type !== 'docker' && o.type !== 'oci') continue;
    try {
      checkImageOutput(o, { attest });
    } catch (err) {
      if (err instanceof ImageOutputError) throw new BuildFailure({ message: `${o.type} output: ${err.message}` });
      throw err;
    }
  }
}

export function exportAttestations(req: BuildRequest): ExportAttestations {
  const p = req.attest?.provenance;
  if (!p) return {};
  return {
    provenance: {
      options: p,
      request: {
        dockerfile: { name: req.dockerfile.name, text: req.dockerfile.text },
        buildArgs: req.buildArgs,
        labels: req.labels,
        ...(req.target !== undefined ? { target: req.target } : {}),
        noCache: req.noCache,
        ...(req.noCacheFilter ? { noCacheFilter: req.noCacheFilter } : {}),
        network: req.network,
      },
    },
  };
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * What is wrong with the image output options and attestations of a request a daemon received, or
 * undefined. The values are never quoted (error messages are logged).
 */
export function imageOptionsProblem(r: Record<string, unknown>): string | undefined {
  for (const o of Array.isArray(r.outputs) ? r.outputs : []) {
    if (!isObj(o)) continue;
    if (o.compression !== undefined && !['gzip', 'zstd', 'uncompressed'].includes(o.compression as string))
      return 'an output\'s "compression" must be gzip, zstd or uncompressed';
    if (
      o.compressionLevel !== undefined &&
      (typeof o.compressionLevel !== 'number' || !Number.isInteger(o.compressionLevel) || o.compressionLevel < 0 || o.compressionLevel > 22)
    ) {
      return 'an output\'s "compressionLevel" must be an integer from 0 to 22';
    }
    for (const k of ['forceCompression', 'ociMediaTypes', 'ociArtifact'])
      if (o[k] !== undefined && typeof o[k] !== 'boolean') return `an output's "${k}" must be true or false`;
    if (o.annotations !== undefined) {
      const ok =
        Array.isArray(o.annotations) &&
        o.annotations.every(
          (a) =>
            isObj(a) &&
            ['manifest', 'manifest-descriptor', 'index', 'index-descriptor'].includes(a.type as string) &&
            typeof a.key === 'string' &&
            typeof a.value === 'string' &&
            (a.platform === undefined || typeof a.platform === 'string'),
        );
      if (!ok) return 'an output\'s "annotations" must be a list of {"type", "key", "value"[, "platform"]}';
    }
  }
  if (r.attest !== undefined) {
    if (!isObj(r.attest)) return '"attest" must be an object';
    const p = r.attest.provenance;
    if (p !== undefined) {
      if (!isObj(p) || !['min', 'max'].includes(p.mode as string) || !['v1', 'v0.2'].includes(p.version as string))
        return '"attest.provenance" must have "mode" min or max and "version" v1 or v0.2';
      if (p.builderId !== undefined && typeof p.builderId !== 'string') return '"attest.provenance.builderId" must be a string';
      if (p.reproducible !== undefined && typeof p.reproducible !== 'boolean') return '"attest.provenance.reproducible" must be true or false';
    }
  }
  return undefined;
}
