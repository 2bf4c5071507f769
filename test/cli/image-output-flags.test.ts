// kiln build's image output attributes (-o ...,compression-level=,force-compression=,oci-mediatypes=,
// annotation*), --annotation, --provenance and --attest: what each spelling turns into, and the
// errors that name the flag.

import { describe, expect, it } from 'vitest';
import { parseBuildArgs, UsageError } from '../../src/cli/build.js';

const parse = (...argv: string[]) => parseBuildArgs([...argv, '.'], {});
const outputs = (...argv: string[]) => parse(...argv).request.outputs;

describe('image output attributes', () => {
  const cases: [string, string[], unknown][] = [
    [
      'gzip level',
      ['-o', 'type=oci,dest=o.tar,compression=gzip,compression-level=9'],
      [{ type: 'oci', names: [], dest: 'o.tar', compression: 'gzip', compressionLevel: 9 }],
    ],
    ['level without compression is gzip', ['-o', 'type=oci,dest=o.tar,compression-level=0'], [{ type: 'oci', names: [], dest: 'o.tar', compressionLevel: 0 }]],
    [
      'zstd level 22',
      ['-o', 'type=image,name=a,compression=zstd,compression-level=22'],
      [{ type: 'image', names: ['docker.io/library/a:latest'], push: false, compression: 'zstd', compressionLevel: 22 }],
    ],
    [
      'uncompressed ignores a level, as BuildKit',
      ['-o', 'type=oci,dest=o.tar,compression=uncompressed,compression-level=5'],
      [{ type: 'oci', names: [], dest: 'o.tar', compression: 'uncompressed' }],
    ],
    [
      'force-compression',
      ['-o', 'type=registry,name=r/x,compression=zstd,force-compression=true'],
      [{ type: 'image', names: ['docker.io/r/x:latest'], push: true, compression: 'zstd', forceCompression: true }],
    ],
    ['bare force-compression= is true', ['-o', 'type=oci,dest=o.tar,force-compression='], [{ type: 'oci', names: [], dest: 'o.tar', forceCompression: true }]],
    [
      'oci-mediatypes=false',
      ['-o', 'type=docker,dest=d.tar,oci-mediatypes=false'],
      [{ type: 'docker', names: [], dest: 'd.tar', load: false, ociMediaTypes: false }],
    ],
    ['oci-artifact=false', ['-o', 'type=oci,dest=o.tar,oci-artifact=false'], [{ type: 'oci', names: [], dest: 'o.tar', ociArtifact: false }]],
    ['oci-mediatypes=1 (Go ParseBool)', ['-o', 'type=oci,dest=o.tar,oci-mediatypes=1'], [{ type: 'oci', names: [], dest: 'o.tar', ociMediaTypes: true }]],
    [
      'annotation keys of every type',
      [
        '-o',
        'type=oci,dest=o.tar,annotation.a=1,annotation-manifest.b=2,annotation-manifest-descriptor.c=3,annotation-index.d=4,annotation-index-descriptor.e=5,annotation-manifest[linux/amd64].f=6,annotation[linux/arm64/v8].g=7',
      ],
      [
        {
          type: 'oci',
          names: [],
          dest: 'o.tar',
          annotations: [
            { type: 'manifest', key: 'a', value: '1' },
            { type: 'manifest', key: 'b', value: '2' },
            { type: 'manifest-descriptor', key: 'c', value: '3' },
            { type: 'index', key: 'd', value: '4' },
            { type: 'index-descriptor', key: 'e', value: '5' },
            { type: 'manifest', platform: 'linux/amd64', key: 'f', value: '6' },
            { type: 'manifest', platform: 'linux/arm64', key: 'g', value: '7' },
          ],
        },
      ],
    ],
    [
      'an annotation value may hold = and commas when quoted',
      ['-o', 'type=oci,dest=o.tar,"annotation.org.opencontainers.image.description=a=b, c"'],
      [{ type: 'oci', names: [], dest: 'o.tar', annotations: [{ type: 'manifest', key: 'org.opencontainers.image.description', value: 'a=b, c' }] }],
    ],
    [
      '--annotation goes to every image output, after their own',
      [
        '-t',
        'x',
        '--annotation',
        'k=v',
        '--annotation',
        'index,manifest:both=1',
        '--annotation',
        'manifest[linux/amd64]:p=2',
        '-o',
        'type=oci,dest=o.tar,annotation.k=own',
        '-o',
        'type=local,dest=out',
      ],
      [
        {
          type: 'oci',
          names: ['docker.io/library/x:latest'],
          dest: 'o.tar',
          annotations: [
            { type: 'manifest', key: 'k', value: 'own' },
            { type: 'manifest', key: 'k', value: 'v' },
            { type: 'index', key: 'both', value: '1' },
            { type: 'manifest', key: 'both', value: '1' },
            { type: 'manifest', platform: 'linux/amd64', key: 'p', value: '2' },
          ],
        },
        { type: 'local', dest: 'out' },
      ],
    ],
    [
      '--annotation on -t alone',
      ['-t', 'x', '--annotation', 'k=v'],
      [{ type: 'image', names: ['docker.io/library/x:latest'], push: false, annotations: [{ type: 'manifest', key: 'k', value: 'v' }] }],
    ],
  ];
  it.each(cases)('%s', (_name, argv, want) => {
    expect(outputs(...argv)).toEqual(want);
  });

  const errors: [string, string[], RegExp][] = [
    ['level not a number', ['-o', 'type=oci,dest=o,compression-level=high'], /"-o, --output" flag: non-integer value "high" specified for compression-level/],
    ['gzip level out of range', ['-o', 'type=oci,dest=o,compression-level=10'], /compression-level 10 is out of range for gzip \(0-9\)/],
    ['zstd level out of range', ['-o', 'type=oci,dest=o,compression=zstd,compression-level=23'], /compression-level 23 is out of range for zstd \(0-22\)/],
    ['negative level', ['-o', 'type=oci,dest=o,compression-level=-1'], /compression-level -1 is out of range for gzip/],
    ['force-compression not a bool', ['-o', 'type=oci,dest=o,force-compression=yes'], /non-bool value "yes" specified for force-compression/],
    ['oci-mediatypes not a bool', ['-o', 'type=oci,dest=o,oci-mediatypes=maybe'], /non-bool value "maybe" specified for oci-mediatypes/],
    [
      'oci-artifact with docker types',
      ['-o', 'type=oci,dest=o,oci-mediatypes=false,oci-artifact=true'],
      /exporter option "oci-artifact=true" conflicts with "oci-mediatypes=false"/,
    ],
    ['oci-artifact on local', ['-o', 'type=local,dest=o,oci-artifact=true'], /oci-artifact does not apply to type=local/],
    ['level on local', ['-o', 'type=local,dest=o,compression-level=1'], /compression-level does not apply to type=local/],
    ['oci-mediatypes on tar', ['-o', 'type=tar,dest=o,oci-mediatypes=true'], /oci-mediatypes does not apply to type=tar/],
    ['annotation on local', ['-o', 'type=local,dest=o,annotation.a=b'], /annotations do not apply to type=local/],
    ['unknown annotation type', ['-o', 'type=oci,dest=o,annotation-config.a=b'], /unknown annotation type "config"/],
    ['bad annotation platform', ['-o', 'type=oci,dest=o,annotation[linux/arm/v7/x].a=b'], /invalid annotation platform "linux\/arm\/v7\/x"/],
    ['annotation without a key', ['-o', 'type=oci,dest=o,annotation=x'], /invalid annotation key "annotation"/],
    [
      'index annotation with docker types',
      ['-o', 'type=oci,dest=o,oci-mediatypes=false,annotation-index.a=b'],
      /cannot export annotations with "oci-mediatypes=false"/,
    ],
    [
      '--annotation without =',
      ['--annotation', 'novalue'],
      /invalid argument "novalue" for "--annotation" flag: invalid annotation "novalue", expected key=value/,
    ],
    ['--annotation unknown type', ['--annotation', 'layer:k=v'], /"--annotation" flag: unknown annotation type "layer"/],
    [
      '--annotation bad type syntax',
      ['--annotation', 'manifest[linux:k=v'],
      /invalid annotation type "manifest\[linux", expected type and optional platform in square brackets/,
    ],
    [
      '--annotation index with docker types',
      ['-t', 'x', '--annotation', 'index:k=v', '-o', 'type=image,oci-mediatypes=false'],
      /cannot export annotations with "oci-mediatypes=false"/,
    ],
  ];
  it.each(errors)('%s', (_name, argv, want) => {
    let caught: unknown;
    try {
      parse(...argv);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UsageError);
    expect((caught as Error).message).toMatch(want);
  });
});

describe('--provenance and --attest', () => {
  const attest = (...argv: string[]) => parse(...argv).request.attest;
  const cases: [string, string[], unknown][] = [
    ['none by default', [], undefined],
    ['--provenance=true: BuildKit defaults (max, v1)', ['--provenance=true'], { provenance: { mode: 'max', version: 'v1' } }],
    ['--provenance=false', ['--provenance=false'], undefined],
    ['--provenance mode=min', ['--provenance', 'mode=min'], { provenance: { mode: 'min', version: 'v1' } }],
    ['mode=full is max', ['--provenance', 'mode=full'], { provenance: { mode: 'max', version: 'v1' } }],
    [
      'all attributes',
      ['--provenance', 'mode=max,version=v0.2,builder-id=https://ci.example/run/1,reproducible=true,inline-only=true'],
      { provenance: { mode: 'max', version: 'v0.2', builderId: 'https://ci.example/run/1', reproducible: true } },
    ],
    ['--attest type=provenance', ['--attest', 'type=provenance,mode=min'], { provenance: { mode: 'min', version: 'v1' } }],
    ['--attest disabled=true', ['--attest', 'type=provenance,disabled=true'], undefined],
    [
      '--provenance wins over --attest (later)',
      ['--attest', 'type=provenance,mode=max', '--provenance', 'mode=min'],
      { provenance: { mode: 'min', version: 'v1' } },
    ],
    ['--provenance=false over --attest', ['--attest', 'type=provenance', '--provenance=false'], undefined],
    ['--attest type=sbom,disabled=true is fine', ['--attest', 'type=sbom,disabled=true'], undefined],
  ];
  it.each(cases)('%s', (_name, argv, want) => {
    expect(attest(...argv)).toEqual(want);
  });

  const errors: [string, string[], RegExp][] = [
    [
      'bad mode',
      ['--provenance', 'mode=medium'],
      /invalid argument "mode=medium" for "--provenance" flag: invalid provenance mode "medium" \(want min or max\)/,
    ],
    ['bad version', ['--provenance', 'version=v2'], /invalid provenance SLSA version "v2"/],
    ['unknown attribute', ['--provenance', 'colour=red'], /unknown provenance attribute "colour"/],
    ['bad reproducible', ['--provenance', 'reproducible=maybe'], /failed to parse reproducible flag "maybe"/],
    ['no type', ['--attest', 'mode=max'], /for "--attest" flag: attestation type not specified/],
    ['field without =', ['--attest', 'type=provenance,max'], /invalid value "max": want key=value/],
    ['bad disabled', ['--attest', 'type=provenance,disabled=perhaps'], /invalid value "disabled=perhaps"/],
    ['sbom', ['--attest', 'type=sbom'], /SBOM attestations are not supported by kiln/],
    ['unknown type', ['--attest', 'type=vex'], /unknown attestation type "vex"/],
  ];
  it.each(errors)('%s', (_name, argv, want) => {
    expect(() => parse(...argv)).toThrow(UsageError);
    expect(() => parse(...argv)).toThrow(want);
  });
});
