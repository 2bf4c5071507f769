// SOURCE_DATE_EPOCH on the command line: the client's environment fills the build arg (as buildx
// does), --build-arg wins, and a bad value is a usage error naming where it came from.
import { describe, expect, it } from 'vitest';
import { parseBuildArgs, UsageError } from '../../src/cli/build.js';

const args = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseBuildArgs([...argv, '.'], env).request.buildArgs;

describe('kiln build: SOURCE_DATE_EPOCH', () => {
  it('comes from the environment when no --build-arg gives it', () => {
    expect(args([], { SOURCE_DATE_EPOCH: '1500000000' })).toEqual({ SOURCE_DATE_EPOCH: '1500000000' });
    expect(args([], {})).toEqual({});
  });
  it('--build-arg wins over the environment; a bare --build-arg takes the environment', () => {
    expect(args(['--build-arg', 'SOURCE_DATE_EPOCH=1'], { SOURCE_DATE_EPOCH: '2' })).toEqual({ SOURCE_DATE_EPOCH: '1' });
    expect(args(['--build-arg', 'SOURCE_DATE_EPOCH'], { SOURCE_DATE_EPOCH: '2' })).toEqual({ SOURCE_DATE_EPOCH: '2' });
    // Empty means unset (BuildKit): passed on as given, the frontend ignores it.
    expect(args(['--build-arg', 'SOURCE_DATE_EPOCH='], { SOURCE_DATE_EPOCH: '2' })).toEqual({ SOURCE_DATE_EPOCH: '' });
  });
  it('a value that is not whole seconds is a usage error naming the flag or the variable', () => {
    expect(() => args(['--build-arg', 'SOURCE_DATE_EPOCH=soon'])).toThrow(UsageError);
    expect(() => args(['--build-arg', 'SOURCE_DATE_EPOCH=soon'])).toThrow(
      '--build-arg SOURCE_DATE_EPOCH=soon: invalid SOURCE_DATE_EPOCH "soon": want a whole number of seconds since 1970-01-01 00:00:00 UTC',
    );
    expect(() => args([], { SOURCE_DATE_EPOCH: '1.5' })).toThrow('SOURCE_DATE_EPOCH=1.5 (environment): invalid SOURCE_DATE_EPOCH "1.5"');
  });
});
