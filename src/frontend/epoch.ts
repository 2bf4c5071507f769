// SOURCE_DATE_EPOCH (https://reproducible-builds.org/docs/source-date-epoch/): the build arg BuildKit's
// Dockerfile frontend reads to date the image it makes. Its value comes from --build-arg (buildx and
// kiln's CLI fill it from the client's environment when not given) or, as Dockerfile 1.24 allows, from
// a global `ARG SOURCE_DATE_EPOCH=N` default. An empty value means "not set", as in BuildKit.

export const SOURCE_DATE_EPOCH = 'SOURCE_DATE_EPOCH';

/** Why a SOURCE_DATE_EPOCH value was refused (the caller says where the value came from). */
export class EpochValueError extends Error {}

/** Seconds JS dates can hold (Date's range is +-8.64e15 ms). */
const MAX_SECONDS = 8_640_000_000_000;

/**
 * Seconds since 1970-01-01 00:00:00 UTC, or undefined for an empty value. Accepts what Go's
 * strconv.ParseInt(v, 10, 64) accepts (an optional sign, decimal digits) within Date's range.
 */
export function parseSourceDateEpoch(value: string): number | undefined {
  if (value === '') return undefined;
  if (!/^[+-]?\d+$/.test(value)) {
    throw new EpochValueError(`invalid SOURCE_DATE_EPOCH ${JSON.stringify(value)}: want a whole number of seconds since 1970-01-01 00:00:00 UTC`);
  }
  const n = Number(value);
  if (!Number.isSafeInteger(n) || Math.abs(n) > MAX_SECONDS) {
    throw new EpochValueError(`invalid SOURCE_DATE_EPOCH ${JSON.stringify(value)}: out of range`);
  }
  return n === 0 ? 0 : n; // no -0
}

/** The epoch as the image config writes dates (Go's RFC 3339 for a whole second in UTC). */
export function epochDate(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * The build's epoch: the --build-arg value when one is given (even empty, which unsets it), else the
 * Dockerfile's global `ARG SOURCE_DATE_EPOCH=N` default. A bad value is an error naming its origin.
 */
export function resolveSourceDateEpoch(
  given: string | undefined,
  dockerfileDefault: { value: string; line: number } | undefined,
  dockerfileError: (line: number, msg: string) => Error,
): number | undefined {
  try {
    if (given !== undefined) return parseSourceDateEpoch(given);
    if (dockerfileDefault) return parseSourceDateEpoch(dockerfileDefault.value);
    return undefined;
  } catch (e) {
    if (!(e instanceof EpochValueError)) throw e;
    if (given !== undefined) throw new EpochValueError(`${e.message} (from --build-arg ${SOURCE_DATE_EPOCH} or the ${SOURCE_DATE_EPOCH} environment variable)`);
    throw dockerfileError(dockerfileDefault!.line, e.message);
  }
}
