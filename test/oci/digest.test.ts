import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { DigestingStream, InvalidDigestError, isDigest, parseDigest, sha256, sha256Digest, digestHex } from '../../src/oci/index.js';

const EMPTY = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('digests', () => {
  it('hashes known values', () => {
    expect(sha256Digest('')).toBe(EMPTY);
    expect(sha256Digest('abc')).toBe('sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const h = sha256();
    h.update(Buffer.from('a'));
    h.update(Buffer.from('bc'));
    expect(h.size).toBe(3);
    expect(h.digest()).toBe(sha256Digest('abc'));
  });

  it.each([
    'sha256:../../etc/passwd',
    'sha256:' + 'A'.repeat(64), // uppercase hex is not canonical
    'sha256:' + 'a'.repeat(63),
    'sha256:' + 'a'.repeat(65),
    'sha512:' + 'a'.repeat(128),
    'a'.repeat(64),
    `${EMPTY}/x`,
    `${EMPTY}\n`,
    '',
  ])('rejects %j', (bad) => {
    expect(isDigest(bad)).toBe(false);
    expect(() => parseDigest(bad, 'manifest layer 0')).toThrow(InvalidDigestError);
    expect(() => parseDigest(bad, 'manifest layer 0')).toThrow(/manifest layer 0: invalid digest/);
  });

  it('accepts canonical digests and exposes the hex', () => {
    expect(parseDigest(EMPTY)).toBe(EMPTY);
    expect(digestHex(parseDigest(EMPTY))).toBe(EMPTY.slice(7));
  });

  it('digests a stream passing through', async () => {
    const ds = new DigestingStream();
    const got: Buffer[] = [];
    await pipeline(
      Readable.from([Buffer.from('ab'), Buffer.from('c')]),
      ds,
      new Writable({
        write(c, _e, cb) {
          got.push(c);
          cb();
        },
      }),
    );
    expect(Buffer.concat(got).toString()).toBe('abc');
    expect(ds.result()).toEqual({ digest: sha256Digest('abc'), size: 3 });
  });
});
