import { describe, expect, it } from 'vitest';
import {
  AnnotationError,
  parseAnnotationAttr,
  parseAnnotationFlag,
  placeAnnotations,
  unknownAnnotationPlatforms,
  type AnnotationSpec,
} from '../../src/image/annotations.js';

describe('annotation keys (exporter attributes)', () => {
  it('reads BuildKit key syntax and leaves other keys alone', () => {
    expect(parseAnnotationAttr('compression', 'gzip')).toBeUndefined();
    expect(parseAnnotationAttr('annotationfoo', 'x')).toBeUndefined();
    expect(parseAnnotationAttr('annotation.org.opencontainers.image.title', 'T')).toEqual({
      type: 'manifest',
      key: 'org.opencontainers.image.title',
      value: 'T',
    });
    expect(parseAnnotationAttr('annotation-index-descriptor.k', '')).toEqual({ type: 'index-descriptor', key: 'k', value: '' });
    expect(parseAnnotationAttr('annotation-manifest-descriptor[linux/x86_64].k', 'v')).toEqual({
      type: 'manifest-descriptor',
      platform: 'linux/amd64',
      key: 'k',
      value: 'v',
    });
  });
  it('refuses malformed annotation keys', () => {
    expect(() => parseAnnotationAttr('annotation-blob.k', 'v')).toThrow(AnnotationError);
    expect(() => parseAnnotationAttr('annotation.', 'v')).toThrow(/invalid annotation key/);
    expect(() => parseAnnotationAttr('annotation[linux/amd64 ].k', 'v')).toThrow(/invalid annotation key/);
  });
});

describe('--annotation values', () => {
  it('defaults to manifest and expands a list of types', () => {
    expect(parseAnnotationFlag('k=a=b')).toEqual([{ type: 'manifest', key: 'k', value: 'a=b' }]);
    expect(parseAnnotationFlag('manifest-descriptor,index-descriptor:k=v')).toEqual([
      { type: 'manifest-descriptor', key: 'k', value: 'v' },
      { type: 'index-descriptor', key: 'k', value: 'v' },
    ]);
  });
  it('refuses what buildx refuses', () => {
    expect(() => parseAnnotationFlag('=v')).toThrow(/empty key/);
    expect(() => parseAnnotationFlag('index:=v')).toThrow(/empty key/);
    expect(() => parseAnnotationFlag('Manifest:k=v')).toThrow(/invalid annotation type "Manifest"/);
  });
});

describe('placing annotations', () => {
  const specs: AnnotationSpec[] = [
    { type: 'manifest', platform: 'linux/amd64', key: 't', value: 'amd64' },
    { type: 'manifest', key: 't', value: 'all' },
    { type: 'manifest', platform: 'linux/arm64', key: 'u', value: 'arm64 only' },
    { type: 'index', key: 'i', value: '1' },
    { type: 'index', platform: 'linux/arm64', key: 'j', value: '2' },
    { type: 'manifest-descriptor', key: 'd', value: '3' },
    { type: 'index-descriptor', key: 'e', value: '4' },
  ];
  it('gives each platform its own manifest annotations over the general ones; the index takes all of its own', () => {
    expect(placeAnnotations(specs, { os: 'linux', architecture: 'amd64' })).toEqual({
      manifest: { t: 'amd64' },
      manifestDescriptor: { d: '3' },
      index: { i: '1', j: '2' },
      indexDescriptor: { e: '4' },
    });
    expect(placeAnnotations(specs, { os: 'linux', architecture: 'arm64' }).manifest).toEqual({ t: 'all', u: 'arm64 only' });
  });
  it('names the platforms a build does not produce', () => {
    expect(unknownAnnotationPlatforms(specs, [{ os: 'linux', architecture: 'amd64' }])).toEqual(['linux/arm64']);
    expect(
      unknownAnnotationPlatforms(specs, [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ]),
    ).toEqual([]);
  });
});
