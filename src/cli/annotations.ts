// `kiln build --annotation VALUE` (buildx's syntax, parsed in src/image/annotations.ts) with the
// flag's error wording.

import { AnnotationError, parseAnnotationFlag, type AnnotationSpec } from '../client/client.js';
import { UsageError } from './usage.js';

export function parseAnnotationFlags(values: readonly string[]): AnnotationSpec[] {
  return values
    .filter((v) => v !== '') // buildx skips empty values
    .flatMap((v) => {
      try {
        return parseAnnotationFlag(v);
      } catch (err) {
        if (err instanceof AnnotationError) throw new UsageError(`invalid argument ${JSON.stringify(v)} for "--annotation" flag: ${err.message}`);
        throw err;
      }
    });
}
