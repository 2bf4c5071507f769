// `-o/--output`, `-t`, `--load` and `--push` to the request's OutputSpec list, as buildx reads them:
// each --output is one CSV record of key=value fields ("type=oci,dest=out.tar"), a bare value is a
// local directory, and "-" is a tarball on stdout.

import {
  AnnotationError,
  formatReference,
  parseAnnotationAttr,
  parseReference,
  splitCsv,
  type AnnotationSpec,
  type ImageOutputOptions,
  type LayerCompression,
  type OutputSpec,
} from '../client/client.js';

// One CSV record of fields; shared with the cache flags' parser (src/server/cache-spec.ts).
export { splitCsv };
import { UsageError } from './usage.js';

/** An OutputSpec whose dest is stdout ("-"): the CLI writes it to a temporary file and copies it out. */
export const STDOUT_DEST = '-';

const COMPRESSIONS: readonly LayerCompression[] = ['gzip', 'zstd', 'uncompressed'];

// BuildKit exporter attributes kiln accepts and ignores: they tune details kiln decides itself, and
// refusing them would break scripts written for buildx.
const IGNORED_KEYS = new Set(['buildinfo', 'buildinfo-attrs', 'attestation-inline', 'store']);

/** compression-level's range per algorithm, as BuildKit documents it (gzip as Go's compress/gzip). */
const LEVELS: Record<Exclude<LayerCompression, 'uncompressed'>, [number, number]> = { gzip: [0, 9], zstd: [0, 22] };

function outputError(value: string, reason: string): UsageError {
  return new UsageError(`invalid argument ${JSON.stringify(value)} for "-o, --output" flag: ${reason}`);
}

/** Go's strconv.ParseBool, which buildx uses for push=... */
function parseBool(value: string): boolean | undefined {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
  return undefined;
}

/**
 * A normalised image name ("app" -> "docker.io/library/app:latest"). `where` starts the error
 * message and names the flag, e.g. `invalid argument "App" for "-t, --tag" flag`.
 */
export function normalizeImageName(name: string, where: string): string {
  let ref;
  try {
    ref = parseReference(name);
  } catch (err) {
    throw new UsageError(`${where}: ${(err as Error).message}`);
  }
  if (ref.digest) throw new UsageError(`${where}: a tag cannot contain a digest`);
  return formatReference(ref);
}

/** One parsed --output value; `names` undefined means "not given" (the -t names fill it in). */
export type ParsedOutput =
  | ({ type: 'image'; names?: string[]; push: boolean } & ImageOutputOptions)
  | ({ type: 'docker'; names?: string[]; dest?: string; load: boolean } & ImageOutputOptions)
  | ({ type: 'oci'; names?: string[]; dest: string } & ImageOutputOptions)
  | { type: 'local'; dest: string }
  | { type: 'tar'; dest: string }
  | { type: 'cacheonly' };

/** Parses one --output value. */
export function parseOutput(value: string): ParsedOutput {
  if (value === '') throw outputError(value, 'empty output');
  let fields: string[];
  try {
    fields = splitCsv(value);
  } catch (err) {
    throw outputError(value, (err as Error).message);
  }
  // buildx's shorthand: "-o DIR" is a local export, "-o -" a tarball on stdout.
  if (fields.length === 1 && !fields[0]!.includes('=')) {
    return fields[0] === STDOUT_DEST ? { type: 'tar', dest: STDOUT_DEST } : { type: 'local', dest: fields[0]! };
  }

  const attrs = new Map<string, string>();
  let names: string[] | undefined;
  let lastKey = '';
  for (const field of fields) {
    const eq = field.indexOf('=');
    if (eq < 0) {
      // "name=a,b" unquoted: the CSV split it, but the bare "b" can only be another name.
      if (lastKey === 'name' && field.trim() !== '') {
        names!.push(field.trim());
        continue;
      }
      throw outputError(value, `invalid field ${JSON.stringify(field)}: want key=value`);
    }
    const key = field.slice(0, eq).trim().toLowerCase();
    const val = field.slice(eq + 1);
    lastKey = key;
    if (key === 'name') {
      names = [
        ...(names ?? []),
        ...val
          .split(',')
          .map((n) => n.trim())
          .filter((n) => n !== ''),
      ];
      continue;
    }
    if (attrs.has(key)) throw outputError(value, `${key} given twice`);
    attrs.set(key, val);
  }

  const type = attrs.get('type');
  if (type === undefined) throw outputError(value, 'type is required for output');
  attrs.delete('type');
  const take = (key: string) => {
    const v = attrs.get(key);
    attrs.delete(key);
    return v;
  };
  const dest = take('dest');
  const compressionValue = take('compression');
  const pushValue = take('push');
  const levelValue = take('compression-level');
  const forceValue = take('force-compression');
  const ociValue = take('oci-mediatypes');
  const artifactValue = take('oci-artifact');
  const isImageType = type === 'image' || type === 'registry' || type === 'docker' || type === 'oci';
  const annotations: AnnotationSpec[] = [];
  for (const [k, v] of [...attrs]) {
    let a: AnnotationSpec | undefined;
    try {
      a = parseAnnotationAttr(k, v);
    } catch (err) {
      if (err instanceof AnnotationError) throw outputError(value, err.message);
      throw err;
    }
    if (!a) continue;
    if (!isImageType) throw outputError(value, `annotations do not apply to type=${type}`);
    annotations.push(a);
    attrs.delete(k);
  }

  let compression: LayerCompression | undefined;
  if (compressionValue !== undefined) {
    if (!(COMPRESSIONS as readonly string[]).includes(compressionValue)) {
      throw outputError(value, `unsupported compression ${JSON.stringify(compressionValue)} (want gzip, zstd or uncompressed)`);
    }
    if (type !== 'image' && type !== 'registry' && type !== 'docker' && type !== 'oci') throw outputError(value, `compression does not apply to type=${type}`);
    compression = compressionValue as LayerCompression;
  }
  const options: ImageOutputOptions = {};
  if (levelValue !== undefined) {
    // Go's strconv.ParseInt, as BuildKit reads it.
    if (!/^[+-]?\d+$/.test(levelValue)) throw outputError(value, `non-integer value ${JSON.stringify(levelValue)} specified for compression-level`);
    const level = Number(levelValue);
    const algo = compression ?? 'gzip';
    // No level means anything for uncompressed layers: BuildKit ignores it, so does kiln.
    if (algo !== 'uncompressed') {
      const [lo, hi] = LEVELS[algo];
      if (level < lo || level > hi) throw outputError(value, `compression-level ${level} is out of range for ${algo} (${lo}-${hi})`);
      options.compressionLevel = level;
    }
  }
  if (forceValue !== undefined) {
    // BuildKit: a bare "force-compression=" means true.
    const force = forceValue === '' ? true : parseBool(forceValue);
    if (force === undefined) throw outputError(value, `non-bool value ${JSON.stringify(forceValue)} specified for force-compression`);
    options.forceCompression = force;
  }
  if (ociValue !== undefined) {
    const oci = parseBool(ociValue);
    if (oci === undefined) throw outputError(value, `non-bool value ${JSON.stringify(ociValue)} specified for oci-mediatypes`);
    options.ociMediaTypes = oci;
  }
  if (artifactValue !== undefined) {
    const artifact = parseBool(artifactValue);
    if (artifact === undefined) throw outputError(value, `non-bool value ${JSON.stringify(artifactValue)} specified for oci-artifact`);
    // BuildKit's opts.Validate.
    if (artifact && options.ociMediaTypes === false) throw outputError(value, 'exporter option "oci-artifact=true" conflicts with "oci-mediatypes=false"');
    options.ociArtifact = artifact;
  }
  const imageOnly = [
    ['compression-level', levelValue],
    ['force-compression', forceValue],
    ['oci-mediatypes', ociValue],
    ['oci-artifact', artifactValue],
  ].find(([, v]) => v !== undefined);
  if (imageOnly && !isImageType) throw outputError(value, `${imageOnly[0]} does not apply to type=${type}`);
  if (annotations.length) options.annotations = annotations;
  // BuildKit: Docker's media types cannot carry index or descriptor annotations.
  if (options.ociMediaTypes === false && annotations.some((a) => a.type !== 'manifest')) {
    throw outputError(value, 'cannot export annotations with "oci-mediatypes=false"');
  }
  let push: boolean | undefined;
  if (pushValue !== undefined) {
    push = parseBool(pushValue);
    if (push === undefined) throw outputError(value, `invalid push value ${JSON.stringify(pushValue)} (want true or false)`);
    if (type !== 'image' && type !== 'registry') throw outputError(value, `push does not apply to type=${type}`);
  }
  if (names !== undefined && (type === 'local' || type === 'tar' || type === 'cacheonly')) throw outputError(value, `name does not apply to type=${type}`);
  if (dest !== undefined && (type === 'image' || type === 'registry' || type === 'cacheonly')) throw outputError(value, `dest does not apply to type=${type}`);
  for (const key of attrs.keys()) {
    if (!IGNORED_KEYS.has(key)) throw outputError(value, `unknown attribute ${JSON.stringify(key)} for type=${type}`);
  }
  const needDest = () => {
    if (dest === undefined || dest === '') throw outputError(value, `dest is required for type=${type}`);
    return dest;
  };
  const withCompression = <T extends object>(o: T): T => ({ ...o, ...(compression ? { compression } : {}), ...options });

  switch (type) {
    case 'local': {
      const d = needDest();
      if (d === STDOUT_DEST) throw outputError(value, 'dest=- is only for type=tar, oci or docker');
      return { type: 'local', dest: d };
    }
    case 'tar':
      return { type: 'tar', dest: needDest() };
    case 'oci':
      return withCompression({ type: 'oci' as const, names, dest: needDest() });
    case 'docker':
      // buildx: a docker output without dest loads the image into the Docker daemon.
      return withCompression(
        dest !== undefined && dest !== '' ? { type: 'docker' as const, names, dest, load: false } : { type: 'docker' as const, names, load: true },
      );
    case 'image':
      return withCompression({ type: 'image' as const, names, push: push ?? false });
    case 'registry':
      return withCompression({ type: 'image' as const, names, push: push ?? true });
    case 'cacheonly':
      return { type: 'cacheonly' };
    default:
      throw outputError(value, `unknown output type ${JSON.stringify(type)} (want local, tar, oci, docker, image, registry or cacheonly)`);
  }
}

export interface OutputFlags {
  outputs: string[];
  /** Already normalised -t names. */
  tags: string[];
  load: boolean;
  push: boolean;
  /** --annotation values: added to every image output (as buildx adds them to every exporter). */
  annotations?: AnnotationSpec[];
}

/**
 * The request's outputs. `-t` alone stores the image in kiln's store; with other outputs the tags
 * name those outputs (as buildx does); `--load` is type=docker into the daemon, `--push` is
 * type=image,push=true (or turns push on for an image output already given).
 */
export function resolveOutputs(flags: OutputFlags): OutputSpec[] {
  const parsed = flags.outputs.map(parseOutput).filter((o) => o.type !== 'cacheonly') as Exclude<ParsedOutput, { type: 'cacheonly' }>[];
  if (flags.load) parsed.push({ type: 'docker', load: true });
  if (flags.push) {
    const image = parsed.find((o) => o.type === 'image');
    if (image && image.type === 'image') image.push = true;
    else parsed.push({ type: 'image', push: true });
  }
  if (parsed.length === 0 && flags.tags.length > 0 && flags.outputs.length === 0) {
    parsed.push({ type: 'image', push: false });
  }

  if (parsed.filter((o) => 'dest' in o && o.dest === STDOUT_DEST).length > 1) {
    throw new UsageError('only one output can go to stdout (dest=-)');
  }
  const extra = flags.annotations ?? [];
  return parsed.map((o): OutputSpec => {
    if (o.type === 'local' || o.type === 'tar') return o;
    if (extra.length) {
      if (o.ociMediaTypes === false && extra.some((a) => a.type !== 'manifest')) {
        throw new UsageError('cannot export annotations with "oci-mediatypes=false": --annotation names an index or descriptor annotation');
      }
      // buildx writes --annotation into each exporter's attributes, over the ones given there.
      o = { ...o, annotations: [...(o.annotations ?? []), ...extra] };
    }
    const names =
      o.names !== undefined ? o.names.map((n) => normalizeImageName(n, `invalid argument ${JSON.stringify('name=' + n)} for "-o, --output" flag`)) : flags.tags;
    if (o.type === 'image') {
      if (o.push && names.length === 0) throw new UsageError('tag is needed when pushing to registry: give -t NAME or name=NAME');
      return { ...o, names };
    }
    return { ...o, names };
  });
}
