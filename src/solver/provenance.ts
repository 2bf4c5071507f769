// The SLSA provenance predicate of a build, shaped as BuildKit writes it
// (solver/llbsolver/provenance, docs/attestations/slsa-provenance.md).
//
// Version: SLSA v1 (predicateType https://slsa.dev/provenance/v1) by default, as current BuildKit
// (frontend/attestations: defaultSLSAVersion = v1); `version=v0.2` gives the older shape, converted
// field by field as BuildKit's ConvertToSLSA02 does. The statement is in-toto Statement v1.
//
// What goes in:
//   configSource.path   the Dockerfile's name (a local context has no URI or digest, as in BuildKit)
//   request             frontend dockerfile.v0; args as buildx sends them (build-arg:K, label:K,
//                       target, no-cache, force-network-mode); the locals "context" and "dockerfile";
//                       in max mode the ids of the secrets and SSH agents RUN steps mount. Never a
//                       secret's value. min mode drops build-arg:* and label:* (then the request is
//                       marked incomplete), secrets and ssh.
//   resolvedDependencies the base images (pkg:docker/NAME@TAG?platform=..., digest of what the
//                       reference resolved to), ADD URLs (digest when --checksum pinned one) and
//                       ADD git repositories (REMOTE#REF, the commit it resolved to).
//                       The local context is not a resolvable dependency, so, as in BuildKit,
//                       completeness.resolvedDependencies is false.
//   metadata            invocation id, start and finish times, reproducible flag; in max mode the
//                       Dockerfile itself (buildkit_metadata.source) and a summary of the build steps
//                       (internalParameters.buildConfig: kiln's steps, not LLB ops).
// Every URL that reaches the predicate has its credentials redacted ("user:xxxxx@").

import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Platform } from '../oci/index.js';
import { formatPlatform, hostPlatform } from '../oci/index.js';
import { redactCredentials } from '../frontend/urls.js';
import { parseGitRef } from '../frontend/git-ref.js';
import { imagePurl, type InTotoStatement, type InTotoSubject } from '../image/exporter/attestation.js';
import type { BuildGraph, Step } from '../frontend/types.js';
import type { BaseImage } from './base-images.js';

export const SLSA_V1 = 'https://slsa.dev/provenance/v1';
export const SLSA_V02 = 'https://slsa.dev/provenance/v0.2';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const BUILD_TYPE_V1 = 'https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md';
export const BUILD_TYPE_V02 = 'https://mobyproject.org/buildkit@v1';

export interface ProvenanceOptions {
  mode: 'min' | 'max';
  version: 'v1' | 'v0.2';
  builderId?: string;
  reproducible?: boolean;
}

/** What the build was asked to do: the parts of the request provenance records. */
export interface ProvenanceRequestInfo {
  dockerfile: { name: string; text: string };
  buildArgs: Record<string, string | undefined>;
  labels: Record<string, string>;
  target?: string;
  noCache?: boolean;
  noCacheFilter?: string[];
  network?: 'host' | 'none';
}

export interface ProvenanceBuild {
  graph: BuildGraph;
  images: BaseImage[];
  started: Date;
  finished: Date;
  /** The platform the image is for: base images are materials for this platform. */
  platform: Platform;
  /** The commits the build's git URLs resolved to, by URL as written. */
  gitCommits?: ReadonlyMap<string, string>;
}

interface Material {
  uri: string;
  digest?: Record<string, string>;
}

function digestSet(d: string | undefined): Record<string, string> | undefined {
  if (!d) return undefined;
  const i = d.indexOf(':');
  return i > 0 ? { [d.slice(0, i)]: d.slice(i + 1) } : undefined;
}

/** The frontend attributes buildx would send for this request (host-specific ones left out, as BuildKit's FilterArgs). */
function requestArgs(info: ProvenanceRequestInfo): Record<string, string> {
  const args: Record<string, string> = {};
  for (const [k, v] of Object.entries(info.buildArgs)) if (v !== undefined) args[`build-arg:${k}`] = redactCredentials(v);
  for (const [k, v] of Object.entries(info.labels)) args[`label:${k}`] = redactCredentials(v);
  if (info.target) args.target = info.target;
  if (info.noCache) args['no-cache'] = '';
  else if (info.noCacheFilter?.length) args['no-cache'] = info.noCacheFilter.join(',');
  if (info.network === 'none') args['force-network-mode'] = 'none';
  return args;
}

function allSteps(graph: BuildGraph): { stage: number; step: Step }[] {
  return graph.stages.flatMap((s) => s.steps.map((step) => ({ stage: s.index, step })));
}

/** Secret and SSH ids the build's RUN steps mount (never values), as BuildKit lists them. */
function mountIds(graph: BuildGraph, type: 'secret' | 'ssh'): { id: string; optional?: boolean }[] {
  const seen = new Map<string, boolean>();
  for (const { step } of allSteps(graph)) {
    if (step.kind !== 'run') continue;
    for (const m of step.mounts) {
      if (m.type !== type) continue;
      // A secret any step requires is required.
      seen.set(m.id, (seen.get(m.id) ?? true) && !m.required);
    }
  }
  return [...seen].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, optional]) => (optional ? { id, optional } : { id }));
}

function materials(build: ProvenanceBuild): Material[] {
  const out: Material[] = [];
  const seen = new Set<string>();
  const add = (m: Material) => {
    const key = `${m.uri} ${JSON.stringify(m.digest ?? {})}`;
    if (!seen.has(key)) seen.add(key), out.push(m);
  };
  const images = [...build.images].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const img of images) {
    // The platform asked of the source, as BuildKit records it: the one the image is built for.
    const d = digestSet(img.digest ?? img.manifestDigest);
    add({ uri: imagePurl(img.name, build.platform), ...(d ? { digest: d } : {}) });
  }
  for (const { step } of allSteps(build.graph)) {
    if (step.kind !== 'copy' || step.instruction !== 'ADD') continue;
    for (const u of step.urls) {
      const git = parseGitRef(u);
      if (git) {
        // BuildKit's git material: the remote and ref (no subdir), the commit it resolved to.
        const commit = build.gitCommits?.get(u);
        add({
          uri: redactCredentials(git.ref ? `${git.remote}#${git.ref}` : git.remote),
          ...(commit ? { digest: commit.length === 64 ? { sha256: commit } : { sha1: commit } } : {}),
        });
        continue;
      }
      if (!/^https?:\/\//i.test(u)) continue;
      const d = digestSet(step.checksum);
      add({ uri: redactCredentials(u), ...(d ? { digest: d } : {}) });
    }
  }
  return out;
}

/** kiln's steps as a build config: one entry per step, its inputs the step before it or the stage it comes from. */
function buildConfig(graph: BuildGraph) {
  const ids = new Map<Step, string>();
  const lastOfStage = new Map<number, string>();
  const definition: { id: string; op: Record<string, unknown>; inputs?: string[] }[] = [];
  let n = 0;
  const locations: Record<string, { locations: { ranges: { start: { line: number }; end: { line: number } }[] }[] }> = {};
  for (const stage of graph.stages) {
    let prev: string | undefined;
    if (stage.base.kind === 'stage') prev = lastOfStage.get(stage.base.index);
    for (const step of stage.steps) {
      const id = `step${n++}`;
      ids.set(step, id);
      const inputs = prev ? [`${prev}:0`] : [];
      if (step.kind === 'copy' && step.from.kind === 'stage') {
        const from = lastOfStage.get(step.from.index);
        if (from) inputs.push(`${from}:0`);
      }
      definition.push({
        id,
        op: { kind: step.kind, stage: stage.name ?? String(stage.index), instruction: redactCredentials(step.original) },
        ...(inputs.length ? { inputs } : {}),
      });
      locations[id] = { locations: [{ ranges: [{ start: { line: step.location.line }, end: { line: step.location.endLine } }] }] };
      prev = id;
    }
    if (prev) lastOfStage.set(stage.index, prev);
  }
  return { buildConfig: { llbDefinition: definition }, locations };
}

/** The predicate type and predicate of a build's provenance. */
export function provenancePredicate(
  build: ProvenanceBuild,
  info: ProvenanceRequestInfo,
  opts: ProvenanceOptions,
): { predicateType: string; predicate: Record<string, unknown> } {
  let args = requestArgs(info);
  let requestComplete = true;
  const request: Record<string, unknown> = { frontend: 'dockerfile.v0' };
  if (opts.mode === 'min') {
    const kept = Object.fromEntries(Object.entries(args).filter(([k]) => !k.startsWith('build-arg:') && !k.startsWith('label:')));
    if (Object.keys(kept).length !== Object.keys(args).length) requestComplete = false;
    args = kept;
  }
  request.args = args;
  if (opts.mode === 'max') {
    const secrets = mountIds(build.graph, 'secret');
    const ssh = mountIds(build.graph, 'ssh');
    if (secrets.length) request.secrets = secrets;
    if (ssh.length) request.ssh = ssh;
  }
  request.locals = [{ name: 'context' }, { name: 'dockerfile' }];

  // The Dockerfile's name as buildx sends it (filename: the base name; stdin is "Dockerfile").
  const name = info.dockerfile.name === '-' ? 'Dockerfile' : path.basename(info.dockerfile.name);
  const deps = materials(build);
  const internal: Record<string, unknown> = { builderPlatform: formatPlatform(hostPlatform()) };
  const buildkitMetadata: Record<string, unknown> = {};
  if (opts.mode === 'max') {
    const { buildConfig: bc, locations } = buildConfig(build.graph);
    internal.buildConfig = bc;
    buildkitMetadata.source = {
      locations,
      // Credentials written into the Dockerfile's URLs are redacted here as everywhere else.
      infos: [{ filename: name, language: 'Dockerfile', data: Buffer.from(redactCredentials(info.dockerfile.text)).toString('base64') }],
    };
  }
  const invocationId = randomBytes(13).toString('hex').slice(0, 25);
  const started = build.started.toISOString();
  const finished = build.finished.toISOString();
  const reproducible = opts.reproducible ?? false;

  if (opts.version === 'v0.2') {
    return {
      predicateType: SLSA_V02,
      predicate: {
        builder: { id: opts.builderId ?? '' },
        buildType: BUILD_TYPE_V02,
        materials: deps,
        invocation: { configSource: { entryPoint: name }, parameters: request, environment: { platform: internal.builderPlatform } },
        ...(internal.buildConfig ? { buildConfig: internal.buildConfig } : {}),
        metadata: {
          buildInvocationID: invocationId,
          buildStartedOn: started,
          buildFinishedOn: finished,
          completeness: { parameters: requestComplete, environment: true, materials: false },
          reproducible,
          'https://mobyproject.org/buildkit@v1#metadata': buildkitMetadata,
        },
      },
    };
  }
  return {
    predicateType: SLSA_V1,
    predicate: {
      buildDefinition: {
        buildType: BUILD_TYPE_V1,
        externalParameters: { configSource: { path: name }, request },
        internalParameters: internal,
        resolvedDependencies: deps,
      },
      runDetails: {
        builder: { id: opts.builderId ?? '' },
        metadata: {
          invocationId,
          startedOn: started,
          finishedOn: finished,
          buildkit_metadata: buildkitMetadata,
          buildkit_completeness: { request: requestComplete, resolvedDependencies: false },
          buildkit_reproducible: reproducible,
        },
      },
    },
  };
}

/** The in-toto statement for one image: its names (as package URLs for `platform`) and manifest digest. */
export function provenanceStatement(
  p: { predicateType: string; predicate: unknown },
  names: readonly string[],
  manifestDigest: string,
  platform: Platform,
): InTotoStatement {
  const digest = digestSet(manifestDigest)!;
  return statementFor(
    p,
    names.map((n) => ({ name: imagePurl(n, platform), digest })),
  );
}

export function statementFor(p: { predicateType: string; predicate: unknown }, subject: InTotoSubject[]): InTotoStatement {
  return { _type: IN_TOTO_STATEMENT_V1, predicateType: p.predicateType, subject, predicate: p.predicate };
}

/**
 * The subjects of a filesystem output (type=local, type=tar), as BuildKit's local and tar exporters
 * name them: every regular file, by its path relative to the root and its sha256, in lexical walk
 * order. Links are never followed: only lstat'ed regular files are opened, with O_NOFOLLOW.
 */
export async function fileSubjects(root: string): Promise<InTotoSubject[]> {
  const out: InTotoSubject[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await fsp.readdir(path.join(root, rel))).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(path.join(root, r));
      if (st.isDirectory()) await walk(r);
      else if (st.isFile()) out.push({ name: r, digest: { sha256: await sha256File(path.join(root, r)) } });
    }
  };
  await walk('');
  return out;
}

async function sha256File(file: string): Promise<string> {
  const fh = await fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    const hash = createHash('sha256');
    for await (const chunk of fh.createReadStream({ autoClose: false })) hash.update(chunk as Buffer);
    return hash.digest('hex');
  } finally {
    await fh.close();
  }
}
