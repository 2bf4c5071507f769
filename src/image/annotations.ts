// OCI annotations on exported images, as BuildKit's exporters take them: where each one goes (the
// manifest, the index, or the descriptor pointing at either), optionally for one platform only.
//
// Two spellings reach here. Exporter attributes (`-o type=image,annotation-index.K=V`):
//   annotation[-TYPE][\[PLATFORM\]].KEY=VALUE   (no TYPE: manifest)
// and buildx's `--annotation` flag:
//   [TYPE[\[PLATFORM\]][,TYPE...]:]KEY=VALUE      (no TYPE: manifest)
// Both parse into the same AnnotationSpec list; `placeAnnotations` then answers "which annotations
// go on the manifest of platform P, on the index, on their descriptors".

import { formatPlatform, parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/index.js';

export type AnnotationType = 'manifest' | 'manifest-descriptor' | 'index' | 'index-descriptor';

export const ANNOTATION_TYPES: readonly AnnotationType[] = ['manifest', 'manifest-descriptor', 'index', 'index-descriptor'];

/** One annotation and where it goes; `platform` (normalised "os/arch[/variant]") limits a manifest one. */
export interface AnnotationSpec {
  type: AnnotationType;
  platform?: string;
  key: string;
  value: string;
}

export class AnnotationError extends Error {}

// BuildKit's exptypes keyAnnotationRegexp: the platform may hold letters, digits, _ / and -.
const ATTR_KEY = /^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$/;
const FLAG_TYPE = /^([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?$/;

function annotationType(t: string | undefined): AnnotationType {
  if (t === undefined || t === '') return 'manifest';
  if ((ANNOTATION_TYPES as readonly string[]).includes(t)) return t as AnnotationType;
  throw new AnnotationError(`unknown annotation type ${JSON.stringify(t)} (want ${ANNOTATION_TYPES.join(', ')})`);
}

function normalisedPlatform(p: string | undefined): string | undefined {
  if (p === undefined || p === '') return undefined;
  try {
    return formatPlatform(parsePlatform(p));
  } catch (err) {
    throw new AnnotationError(`invalid annotation platform ${JSON.stringify(p)}: ${(err as Error).message}`);
  }
}

/**
 * An exporter attribute key and its value as an annotation, or undefined when the key is not an
 * annotation key at all ("compression", ...). Throws AnnotationError for a malformed annotation key.
 */
export function parseAnnotationAttr(key: string, value: string): AnnotationSpec | undefined {
  if (!key.startsWith('annotation')) return undefined;
  const m = ATTR_KEY.exec(key);
  if (!m) {
    // "annotation" followed by something that is not the syntax: say so rather than "unknown attribute".
    if (/^annotation(?:-|\[|\.|$)/.test(key))
      throw new AnnotationError(`invalid annotation key ${JSON.stringify(key)} (want annotation[-TYPE][[PLATFORM]].KEY)`);
    return undefined;
  }
  const type = annotationType(m[1]);
  const platform = normalisedPlatform(m[2]);
  return { type, ...(platform !== undefined ? { platform } : {}), key: m[3]!, value };
}

/** One `--annotation` value (buildx's syntax); one entry per type it names. */
export function parseAnnotationFlag(input: string): AnnotationSpec[] {
  const eq = input.indexOf('=');
  if (eq < 0) throw new AnnotationError(`invalid annotation ${JSON.stringify(input)}, expected key=value`);
  const left = input.slice(0, eq);
  const value = input.slice(eq + 1);
  const colon = left.indexOf(':');
  if (colon < 0) {
    if (left === '') throw new AnnotationError(`invalid annotation ${JSON.stringify(input)}: empty key`);
    return [{ type: 'manifest', key: left, value }];
  }
  const key = left.slice(colon + 1);
  if (key === '') throw new AnnotationError(`invalid annotation ${JSON.stringify(input)}: empty key`);
  return left
    .slice(0, colon)
    .split(',')
    .map((tp) => {
      const m = FLAG_TYPE.exec(tp);
      if (!m) throw new AnnotationError(`invalid annotation type ${JSON.stringify(tp)}, expected type and optional platform in square brackets`);
      const type = annotationType(m[1]);
      const platform = normalisedPlatform(m[2]);
      return { type, ...(platform !== undefined ? { platform } : {}), key, value };
    });
}

/** The annotations of each place, for the manifest of `platform` (BuildKit's AnnotationsGroup.Platform). */
export interface PlacedAnnotations {
  manifest: Record<string, string>;
  manifestDescriptor: Record<string, string>;
  index: Record<string, string>;
  indexDescriptor: Record<string, string>;
}

/**
 * Sorts annotations into their places. Manifest ones without a platform apply to every manifest, and
 * a platform-specific one wins over a general one with the same key; later entries win over earlier.
 */
export function placeAnnotations(specs: readonly AnnotationSpec[], platform?: Platform): PlacedAnnotations {
  const out: PlacedAnnotations = { manifest: {}, manifestDescriptor: {}, index: {}, indexDescriptor: {} };
  const mine = platform ? formatPlatform(platform) : undefined;
  const field = { manifest: 'manifest', 'manifest-descriptor': 'manifestDescriptor', index: 'index', 'index-descriptor': 'indexDescriptor' } as const;
  // General entries first, then the platform's own, so the specific value wins.
  // An index is one for all platforms: BuildKit applies index annotations whatever platform they name.
  for (const pass of [false, true]) {
    for (const a of specs) {
      const isIndex = a.type === 'index' || a.type === 'index-descriptor';
      if (!isIndex && (a.platform !== undefined) !== pass) continue;
      if (isIndex && pass) continue;
      if (!isIndex && a.platform !== undefined && a.platform !== mine) continue;
      out[field[a.type]][a.key] = a.value;
    }
  }
  return out;
}

/** Platforms named by annotations that the build does not produce: BuildKit refuses those. */
export function unknownAnnotationPlatforms(specs: readonly AnnotationSpec[], built: readonly Platform[]): string[] {
  const have = new Set(built.map((p) => formatPlatform(p)));
  return [...new Set(specs.flatMap((a) => (a.platform !== undefined && !have.has(a.platform) ? [a.platform] : [])))];
}
