// `--attest` and its shorthand `--provenance` to the request's attestations, as buildx reads them
// (util/buildflags/attests.go) and BuildKit then interprets them (frontend/attestations,
// solver/llbsolver/provenance.go):
//   --provenance=true|false          -> type=provenance,disabled=false|true
//   --provenance=mode=max,...        -> type=provenance,mode=max,...
//   --attest type=provenance[,mode=min|max|full][,version=v1|v0.2][,builder-id=ID][,reproducible=BOOL][,disabled=BOOL]
// A later entry of the same type replaces an earlier one. Without a mode BuildKit uses max; without
// a version, v1 (BuildKit's default since SLSA v1 support landed; v0.2 before).
//
// Not here: buildx's default `mode=min,inline-only=true` provenance on every image build (kiln
// attaches none unless asked), and `type=sbom` (kiln has no SBOM scanner: refused by name).

import { splitCsv, type ProvenanceRequest } from '../client/client.js';
import { UsageError } from './usage.js';

function parseBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  return undefined;
}

interface Attest {
  type: string;
  disabled: boolean;
  attrs: Map<string, string>;
  /** The flag and value it came from, for errors. */
  flag: string;
  raw: string;
}

function flagError(flag: string, raw: string, reason: string): UsageError {
  return new UsageError(`invalid argument ${JSON.stringify(raw)} for "${flag}" flag: ${reason}`);
}

function parseAttest(raw: string, flag: string, canonical: string): Attest {
  let fields: string[];
  try {
    fields = splitCsv(canonical);
  } catch (err) {
    throw flagError(flag, raw, (err as Error).message);
  }
  const out: Attest = { type: '', disabled: false, attrs: new Map(), flag, raw };
  for (const field of fields) {
    const eq = field.indexOf('=');
    if (eq < 0) throw flagError(flag, raw, `invalid value ${JSON.stringify(field)}: want key=value`);
    const key = field.slice(0, eq);
    const value = field.slice(eq + 1);
    switch (key.trim().toLowerCase()) {
      case 'type':
        out.type = value;
        break;
      case 'disabled': {
        const b = parseBool(value);
        if (b === undefined) throw flagError(flag, raw, `invalid value ${JSON.stringify(field)}: want true or false`);
        out.disabled = b;
        break;
      }
      default:
        out.attrs.set(key, value);
    }
  }
  if (out.type === '') throw flagError(flag, raw, 'attestation type not specified');
  return out;
}

/** The provenance a build asks for, or undefined (none asked for, or disabled). */
export function resolveAttestations(flags: { attest: string[]; provenance?: string }): { provenance?: ProvenanceRequest } {
  const list = flags.attest.map((a) => parseAttest(a, '--attest', a));
  if (flags.provenance !== undefined && flags.provenance !== '') {
    const b = parseBool(flags.provenance);
    const canonical = b !== undefined ? `type=provenance,disabled=${!b}` : `type=provenance,${flags.provenance}`;
    list.push(parseAttest(flags.provenance, '--provenance', canonical));
  }
  // Later entries of a type replace earlier ones (buildx's removeAttestDupes).
  const byType = new Map<string, Attest>();
  for (const a of list) byType.set(a.type, a);
  const out: { provenance?: ProvenanceRequest } = {};
  for (const a of byType.values()) {
    if (a.type === 'sbom') {
      if (a.disabled) continue;
      throw flagError(a.flag, a.raw, 'SBOM attestations are not supported by kiln (it has no SBOM scanner)');
    }
    if (a.type !== 'provenance') throw flagError(a.flag, a.raw, `unknown attestation type ${JSON.stringify(a.type)} (want provenance)`);
    if (a.disabled) continue;
    out.provenance = provenanceOptions(a);
  }
  return out;
}

function provenanceOptions(a: Attest): ProvenanceRequest {
  const p: ProvenanceRequest = { mode: 'max', version: 'v1' };
  for (const [key, value] of a.attrs) {
    switch (key) {
      case 'mode':
        if (value === 'min' || value === 'max') p.mode = value;
        else if (value === 'full') p.mode = 'max';
        else throw flagError(a.flag, a.raw, `invalid provenance mode ${JSON.stringify(value)} (want min or max)`);
        break;
      case 'version':
        if (value !== 'v1' && value !== 'v0.2') throw flagError(a.flag, a.raw, `invalid provenance SLSA version ${JSON.stringify(value)} (want v1 or v0.2)`);
        p.version = value;
        break;
      case 'builder-id':
        p.builderId = value;
        break;
      case 'reproducible': {
        const b = parseBool(value);
        if (b === undefined) throw flagError(a.flag, a.raw, `failed to parse reproducible flag ${JSON.stringify(value)}`);
        p.reproducible = b;
        break;
      }
      // Accepted as BuildKit does; kiln attaches attestations only to image outputs anyway.
      case 'inline-only':
        if (parseBool(value) === undefined) throw flagError(a.flag, a.raw, `invalid inline-only value ${JSON.stringify(value)}`);
        break;
      default:
        throw flagError(a.flag, a.raw, `unknown provenance attribute ${JSON.stringify(key)} (want mode, version, builder-id, reproducible)`);
    }
  }
  return p;
}
