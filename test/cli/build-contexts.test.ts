// `kiln build --build-context`: names normalised as buildx's ParseContextNames, each kind of value,
// and clear errors naming the flag for what cannot work.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkBuildContexts, parseBuildContextFlag, parseBuildContexts } from '../../src/cli/build-contexts.js';
import { parseBuildArgs, UsageError } from '../../src/cli/build.js';

describe('--build-context values', () => {
  it('normalises names as buildx does', () => {
    expect(parseBuildContexts(['library/golang=one', 'docker.io/library/golang=two', 'example.com/project/image:v1=three', 'alpine:latest=four'])).toEqual({
      golang: { type: 'dir', path: 'two' },
      'example.com/project/image:v1': { type: 'dir', path: 'three' },
      alpine: { type: 'dir', path: 'four' },
    });
  });

  it('reads each kind of value', () => {
    const d = 'sha256:' + 'b'.repeat(64);
    expect(parseBuildContextFlag('a=docker-image://busybox:1.36').spec).toEqual({ type: 'docker-image', ref: 'busybox:1.36' });
    expect(parseBuildContextFlag('a=oci-layout:///tmp/l').spec).toEqual({ type: 'oci-layout', layout: { type: 'dir', path: '/tmp/l' }, tag: 'latest' });
    expect(parseBuildContextFlag(`a=oci-layout://./l:v2@${d}`).spec).toEqual({
      type: 'oci-layout',
      layout: { type: 'dir', path: './l' },
      tag: 'v2',
      digest: d,
    });
    expect(parseBuildContextFlag('a=https://example.com/x.tar.gz').spec).toEqual({ type: 'url', url: 'https://example.com/x.tar.gz' });
    expect(parseBuildContextFlag('a=../dir').spec).toEqual({ type: 'dir', path: '../dir' });
  });

  it.each([
    ['novalue', /expected NAME=VALUE/],
    ['UPPER=dir', /invalid context name "UPPER".*lowercase/],
    ['a=', /empty value/],
    ['a=docker-image://Bad Ref', /docker-image:\/\//],
    ['a=oci-layout://l@sha256:123', /invalid digest/],
    ['a=oci-layout://', /needs the path/],
    ['a=https://github.com/moby/buildkit.git', /git repositories .* not supported/],
    ['a=git@github.com:moby/buildkit.git', /git repositories .* not supported/],
    ['a=target:base', /bake/],
    ['a=s3://bucket/x', /unknown context scheme "s3:\/\/"/],
  ])('%s is refused', (value, msg) => {
    let err: unknown;
    try {
      parseBuildContextFlag(value);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toContain('"--build-context" flag');
    expect((err as Error).message).toMatch(msg);
  });

  it('is a repeatable flag of kiln build; the last value for a name wins', () => {
    const inv = parseBuildArgs(['--build-context', 'a=one', '--build-context', 'b=docker-image://busybox', '--build-context', 'a=two', '.']);
    expect(inv.request.namedContexts).toEqual({ a: { type: 'dir', path: 'two' }, b: { type: 'docker-image', ref: 'busybox' } });
  });

  it('checks directories and layouts before the build', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bctx-'));
    try {
      fs.writeFileSync(path.join(dir, 'file'), 'x');
      fs.mkdirSync(path.join(dir, 'layout'));
      expect(checkBuildContexts({ a: { type: 'dir', path: dir } })).toEqual({ a: { type: 'dir', path: dir } });
      expect(() => checkBuildContexts({ a: { type: 'dir', path: path.join(dir, 'missing') } })).toThrow(/--build-context a: path .*missing" not found/);
      expect(() => checkBuildContexts({ a: { type: 'dir', path: path.join(dir, 'file') } })).toThrow(/--build-context a: .* is not a directory/);
      const layout = { type: 'oci-layout', layout: { type: 'dir', path: path.join(dir, 'layout') }, tag: 'latest' } as const;
      expect(() => checkBuildContexts({ l: layout })).toThrow(/--build-context l: .* is not an OCI image layout \(no index.json\)/);
      fs.writeFileSync(path.join(dir, 'layout', 'index.json'), '{}');
      expect(checkBuildContexts({ l: layout })).toEqual({ l: layout });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
