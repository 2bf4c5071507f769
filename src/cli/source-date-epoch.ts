// SOURCE_DATE_EPOCH on the client side, as buildx does it: the client's environment variable becomes
// the build arg unless --build-arg names one, so a daemon (whose own environment does not count)
// dates the image by the client's value. A value the build would refuse is refused here already,
// naming where it came from.

import { parseSourceDateEpoch, SOURCE_DATE_EPOCH } from '../client/client.js';
import { UsageError } from './usage.js';

export function withSourceDateEpoch(buildArgs: Record<string, string | undefined>, env: NodeJS.ProcessEnv): Record<string, string | undefined> {
  const fromFlag = buildArgs[SOURCE_DATE_EPOCH];
  const value = fromFlag ?? env[SOURCE_DATE_EPOCH];
  if (value === undefined) return buildArgs;
  try {
    parseSourceDateEpoch(value);
  } catch (err) {
    const origin = fromFlag !== undefined ? `--build-arg ${SOURCE_DATE_EPOCH}=${value}` : `${SOURCE_DATE_EPOCH}=${value} (environment)`;
    throw new UsageError(`${origin}: ${(err as Error).message}`);
  }
  return { ...buildArgs, [SOURCE_DATE_EPOCH]: value };
}
