import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildMetadata, loadRequest, parseBuildArgs, UsageError } from '../../src/cli/build.js';
import { parseOutput, splitCsv } from '../../src/cli/outputs.js';

const ENV = { FROM_ENV: 'env-value' } as NodeJS.ProcessEnv;
const parse = (...argv: string[]) => parseBuildArgs(argv, ENV);
const outputs = (...argv: string[]) => parse(...argv, '.').request.outputs;

describe('parseBuildArgs: defaults', () => {
  it('maps a bare context to a request with docker build defaults', () => {
    const inv = parse('ctx');
    expect(inv).toEqual({
      help: false,
      context: 'ctx',
      request: { buildArgs: {}, dryRun: false, outputs: [], labels: {}, network: 'host', noCache: false, pull: false },
      tags: [],
      progress: 'auto',
      quiet: false,
    });
  });

  it('--help / -h ask for help whatever else is there', () => {
    expect(parse('--help').help).toBe(true);
    expect(parse('-h', '-t', 'x').help).toBe(true);
  });
});

describe('parseBuildArgs: flags', () => {
  const cases: [string, string[], (inv: ReturnType<typeof parse>) => unknown, unknown][] = [
    ['-f', ['-f', 'sub/Dockerfile.dev'], (i) => i.file, 'sub/Dockerfile.dev'],
    ['--file', ['--file', 'D'], (i) => i.file, 'D'],
    ['-f - (stdin)', ['-f', '-'], (i) => i.file, '-'],
    ['--file=X', ['--file=X'], (i) => i.file, 'X'],
    ['-t normalises', ['-t', 'app'], (i) => i.tags, ['docker.io/library/app:latest']],
    ['-t repeatable', ['-t', 'a:1', '--tag', 'localhost:5000/b/c:2'], (i) => i.tags, ['docker.io/library/a:1', 'localhost:5000/b/c:2']],
    ['--target', ['--target', 'build'], (i) => i.request.target, 'build'],
    [
      '--allow, repeatable and comma-separated',
      ['--allow', 'network.host,security.insecure', '--allow', 'network.host'],
      (i) => i.request.allow,
      ['network.host', 'security.insecure'],
    ],
    ['no --allow asks for nothing', [], (i) => i.request.allow, undefined],
    ['--pids-limit', ['--pids-limit', '8192'], (i) => i.request.runPidsLimit, 8192],
    ['--build-arg K=V', ['--build-arg', 'A=1', '--build-arg', 'B=x=y'], (i) => i.request.buildArgs, { A: '1', B: 'x=y' }],
    ['--build-arg K= is empty', ['--build-arg', 'A='], (i) => i.request.buildArgs, { A: '' }],
    ['--build-arg K from env', ['--build-arg', 'FROM_ENV'], (i) => i.request.buildArgs, { FROM_ENV: 'env-value' }],
    ['--build-arg K not in env stays unset', ['--build-arg', 'NOPE'], (i) => Object.entries(i.request.buildArgs), [['NOPE', undefined]]],
    ['--build-arg later wins', ['--build-arg', 'A=1', '--build-arg', 'A=2'], (i) => i.request.buildArgs, { A: '2' }],
    ['--label K=V repeatable', ['--label', 'a=1', '--label', 'b.c=two words'], (i) => i.request.labels, { a: '1', 'b.c': 'two words' }],
    ['--label K is empty, not env', ['--label', 'FROM_ENV'], (i) => i.request.labels, { FROM_ENV: '' }],
    ['--platform', ['--platform', 'linux/arm64'], (i) => i.request.platform, { os: 'linux', architecture: 'arm64' }],
    ['--platform normalises', ['--platform', 'linux/aarch64/v8'], (i) => i.request.platform, { os: 'linux', architecture: 'arm64' }],
    ['--platform arm', ['--platform', 'linux/arm'], (i) => i.request.platform, { os: 'linux', architecture: 'arm', variant: 'v7' }],
    [
      '--platform A,B: a multi-platform build',
      ['--platform', 'linux/amd64,linux/arm64'],
      (i) => [i.request.platform, i.request.platforms],
      [
        undefined,
        [
          { os: 'linux', architecture: 'amd64' },
          { os: 'linux', architecture: 'arm64' },
        ],
      ],
    ],
    [
      '--platform repeated, duplicates dropped',
      ['--platform', 'linux/arm64', '--platform', 'linux/aarch64, linux/arm/v7'],
      (i) => i.request.platforms,
      [
        { os: 'linux', architecture: 'arm64' },
        { os: 'linux', architecture: 'arm', variant: 'v7' },
      ],
    ],
    [
      '--platform A,A is one platform',
      ['--platform', 'linux/arm64,linux/arm64'],
      (i) => [i.request.platform, i.request.platforms],
      [{ os: 'linux', architecture: 'arm64' }, undefined],
    ],
    ['--network default', ['--network', 'default'], (i) => i.request.network, 'host'],
    ['--network host', ['--network=host'], (i) => i.request.network, 'host'],
    ['--network none', ['--network', 'none'], (i) => i.request.network, 'none'],
    ['--no-cache', ['--no-cache'], (i) => i.request.noCache, true],
    ['--no-cache=false', ['--no-cache=false'], (i) => i.request.noCache, false],
    ['--pull', ['--pull'], (i) => i.request.pull, true],
    ['--pull=true', ['--pull=true'], (i) => i.request.pull, true],
    ['--dry-run', ['--dry-run'], (i) => i.request.dryRun, true],
    ['--iidfile', ['--iidfile', 'id.txt'], (i) => i.iidfile, 'id.txt'],
    ['--metadata-file', ['--metadata-file', 'm.json'], (i) => i.metadataFile, 'm.json'],
    ['-q', ['-q'], (i) => [i.quiet, i.progress], [true, 'quiet']],
    ['--quiet beats --progress', ['--quiet', '--progress', 'plain'], (i) => i.progress, 'quiet'],
    ['--progress plain', ['--progress', 'plain'], (i) => i.progress, 'plain'],
    ['--progress tty', ['--progress=tty'], (i) => i.progress, 'tty'],
    ['--progress rawjson', ['--progress', 'rawjson'], (i) => i.progress, 'rawjson'],
    ['--progress quiet', ['--progress', 'quiet'], (i) => [i.quiet, i.progress], [false, 'quiet']],
    ['--progress auto', ['--progress', 'auto'], (i) => i.progress, 'auto'],
    ['--root', ['--root', '/tmp/r'], (i) => i.root, '/tmp/r'],
  ];
  it.each(cases)('%s', (_name, argv, pick, want) => {
    expect(pick(parse(...argv, 'ctx'))).toEqual(want);
  });

  it('flags may follow the context', () => {
    expect(parse('ctx', '-t', 'x').tags).toEqual(['docker.io/library/x:latest']);
  });

  it('BUILDKIT_PROGRESS is the default progress mode; --progress overrides it', () => {
    expect(parseBuildArgs(['.'], { BUILDKIT_PROGRESS: 'plain' }).progress).toBe('plain');
    expect(parseBuildArgs(['--progress', 'rawjson', '.'], { BUILDKIT_PROGRESS: 'plain' }).progress).toBe('rawjson');
  });
});

describe('parseBuildArgs: outputs', () => {
  const cases: [string, string[], unknown][] = [
    ['nothing: cache only', [], []],
    ['-t alone: kiln image store', ['-t', 'app:1'], [{ type: 'image', names: ['docker.io/library/app:1'], push: false }]],
    ['-o DIR: local', ['-o', 'out'], [{ type: 'local', dest: 'out' }]],
    ['type=local', ['--output', 'type=local,dest=out'], [{ type: 'local', dest: 'out' }]],
    ['type=tar', ['-o', 'type=tar,dest=fs.tar'], [{ type: 'tar', dest: 'fs.tar' }]],
    ['-o -: tar to stdout', ['-o', '-'], [{ type: 'tar', dest: '-' }]],
    ['type=oci takes -t names', ['-t', 'a', '-o', 'type=oci,dest=o.tar'], [{ type: 'oci', names: ['docker.io/library/a:latest'], dest: 'o.tar' }]],
    ['type=oci name= beats -t', ['-t', 'a', '-o', 'type=oci,dest=o.tar,name=b:2'], [{ type: 'oci', names: ['docker.io/library/b:2'], dest: 'o.tar' }]],
    ['type=oci compression', ['-o', 'type=oci,dest=o.tar,compression=zstd'], [{ type: 'oci', names: [], dest: 'o.tar', compression: 'zstd' }]],
    ['type=docker,dest', ['-o', 'type=docker,dest=d.tar,name=x'], [{ type: 'docker', names: ['docker.io/library/x:latest'], dest: 'd.tar', load: false }]],
    ['type=docker without dest loads', ['-t', 'x', '-o', 'type=docker'], [{ type: 'docker', names: ['docker.io/library/x:latest'], load: true }]],
    ['--load', ['-t', 'x', '--load'], [{ type: 'docker', names: ['docker.io/library/x:latest'], load: true }]],
    ['--push', ['-t', 'localhost:5000/x', '--push'], [{ type: 'image', names: ['localhost:5000/x:latest'], push: true }]],
    [
      '--load --push',
      ['-t', 'x', '--load', '--push'],
      [
        { type: 'docker', names: ['docker.io/library/x:latest'], load: true },
        { type: 'image', names: ['docker.io/library/x:latest'], push: true },
      ],
    ],
    [
      'type=image,name=A,B unquoted',
      ['-o', 'type=image,name=a,b:2,push=true'],
      [{ type: 'image', names: ['docker.io/library/a:latest', 'docker.io/library/b:2'], push: true }],
    ],
    [
      'type=image,"name=A,B" quoted',
      ['-o', 'type=image,"name=a,b",compression=uncompressed'],
      [{ type: 'image', names: ['docker.io/library/a:latest', 'docker.io/library/b:latest'], push: false, compression: 'uncompressed' }],
    ],
    ['type=image + --push turns push on', ['-t', 'x', '-o', 'type=image', '--push'], [{ type: 'image', names: ['docker.io/library/x:latest'], push: true }]],
    ['type=registry', ['-o', 'type=registry,name=localhost:5000/r'], [{ type: 'image', names: ['localhost:5000/r:latest'], push: true }]],
    ['type=image,push=false', ['-t', 'x', '-o', 'type=image,push=false'], [{ type: 'image', names: ['docker.io/library/x:latest'], push: false }]],
    [
      'compression=gzip on docker',
      ['-o', 'type=docker,dest=d.tar,compression=gzip'],
      [{ type: 'docker', names: [], dest: 'd.tar', load: false, compression: 'gzip' }],
    ],
    ['-t with another output does not store', ['-t', 'x', '-o', 'out'], [{ type: 'local', dest: 'out' }]],
    [
      'several outputs, in order',
      ['-o', 'a', '-o', 'type=tar,dest=b.tar'],
      [
        { type: 'local', dest: 'a' },
        { type: 'tar', dest: 'b.tar' },
      ],
    ],
    ['type=cacheonly', ['-t', 'x', '-o', 'type=cacheonly'], []],
    ['ignored BuildKit attributes', ['-o', 'type=oci,dest=o.tar,buildinfo=false,store=true'], [{ type: 'oci', names: [], dest: 'o.tar' }]],
    ['keys are case-insensitive', ['-o', 'TYPE=local,DEST=out'], [{ type: 'local', dest: 'out' }]],
  ];
  it.each(cases)('%s', (_name, argv, want) => {
    expect(outputs(...argv)).toEqual(want);
  });

  it('splitCsv follows CSV quoting', () => {
    expect(splitCsv('a,"b,c",d')).toEqual(['a', 'b,c', 'd']);
    expect(splitCsv('"say ""hi""",x')).toEqual(['say "hi"', 'x']);
    expect(splitCsv('')).toEqual(['']);
    expect(() => splitCsv('"open')).toThrow(/unterminated/);
  });

  it('parseOutput keeps dest paths as typed (relative paths resolve against the cwd later)', () => {
    expect(parseOutput('type=tar,dest=../x.tar')).toEqual({ type: 'tar', dest: '../x.tar' });
  });
});

describe('parseBuildArgs: usage errors name the flag and the value', () => {
  const cases: [string, string[], RegExp][] = [
    ['no context', [], /requires exactly 1 argument.*got 0/],
    ['two contexts', ['a', 'b'], /requires exactly 1 argument.*got 2/],
    ['unknown flag', ['--frobnicate', '.'], /Unknown option '--frobnicate'/],
    ['missing value', ['.', '-t'], /-t, --tag <value>' argument missing/],
    ['bad tag', ['-t', 'App', '.'], /invalid argument "App" for "-t, --tag" flag: .*must be lowercase/],
    ['tag with digest', ['-t', `a@sha256:${'0'.repeat(64)}`, '.'], /for "-t, --tag" flag: a tag cannot contain a digest/],
    ['empty build-arg key', ['--build-arg', '=v', '.'], /invalid argument "=v" for "--build-arg" flag: empty key/],
    ['empty label key', ['--label', '=v', '.'], /invalid argument "=v" for "--label" flag: empty key/],
    ['bad network', ['--network', 'bridge', '.'], /invalid argument "bridge" for "--network" flag: network mode not supported/],
    ['bad pids limit', ['--pids-limit', '0', '.'], /invalid argument "0" for "--pids-limit" flag: want a positive number of processes/],
    ['unknown entitlement', ['--allow', 'device', '.'], /invalid argument "device" for "--allow" flag: want network\.host or security\.insecure/],
    ['bad progress', ['--progress', 'fancy', '.'], /invalid argument "fancy" for "--progress" flag: want auto, tty, plain, rawjson or quiet/],
    ['bad platform', ['--platform', 'linux/', '.'], /invalid argument "linux\/" for "--platform" flag/],
    ['unknown os', ['--platform', 'plan10/amd64', '.'], /invalid argument "plan10\/amd64" for "--platform" flag/],
    ['bad platform in a list', ['--platform', 'linux/amd64,linux/', '.'], /invalid argument "linux\/" for "--platform" flag/],
    ['bad boolean value', ['--pull=maybe', '.'], /invalid argument "maybe" for "--pull" flag: want true or false/],
    ['empty -f', ['-f', '', '.'], /invalid argument "" for "-f, --file" flag: empty value/],
    ['empty --target', ['--target=', '.'], /for "--target" flag: empty value/],
    ['output without type', ['-o', 'dest=x', '.'], /invalid argument "dest=x" for "-o, --output" flag: type is required/],
    ['unknown output type', ['-o', 'type=s3,dest=x', '.'], /for "-o, --output" flag: unknown output type "s3"/],
    ['local without dest', ['-o', 'type=local', '.'], /"type=local" for "-o, --output" flag: dest is required for type=local/],
    ['oci without dest', ['-o', 'type=oci,name=a', '.'], /dest is required for type=oci/],
    ['bad compression', ['-o', 'type=oci,dest=x,compression=lz4', '.'], /unsupported compression "lz4" \(want gzip, zstd or uncompressed\)/],
    ['compression on local', ['-o', 'type=local,dest=x,compression=gzip', '.'], /compression does not apply to type=local/],
    ['bad push value', ['-o', 'type=image,name=a,push=yes', '.'], /invalid push value "yes"/],
    ['push on tar', ['-o', 'type=tar,dest=x,push=true', '.'], /push does not apply to type=tar/],
    ['name on local', ['-o', 'type=local,dest=x,name=a', '.'], /name does not apply to type=local/],
    ['dest on image', ['-o', 'type=image,dest=x', '.'], /dest does not apply to type=image/],
    ['unknown attribute', ['-o', 'type=oci,dest=x,colour=blue', '.'], /unknown attribute "colour" for type=oci/],
    ['bare field', ['-o', 'type=oci,dest=x,oops', '.'], /invalid field "oops": want key=value/],
    ['duplicate key', ['-o', 'type=tar,dest=a,dest=b', '.'], /dest given twice/],
    ['bad output name', ['-o', 'type=oci,dest=x,name=UP', '.'], /invalid argument "name=UP" for "-o, --output" flag: .*lowercase/],
    ['local to stdout', ['-o', 'type=local,dest=-', '.'], /dest=- is only for type=tar, oci or docker/],
    ['two stdout outputs', ['-o', '-', '-o', 'type=oci,dest=-', '.'], /only one output can go to stdout/],
    ['-q with stdout output', ['-q', '-o', '-', '.'], /-q prints the image ID on stdout: it cannot be used with an output to stdout/],
    ['push without a name', ['--push', '.'], /tag is needed when pushing to registry/],
    ['registry without a name', ['-o', 'type=registry', '.'], /tag is needed when pushing to registry/],
    ['empty output', ['-o', '', '.'], /invalid argument "" for "-o, --output" flag: empty output/],
  ];
  it.each(cases)('%s', (_name, argv, want) => {
    let caught: unknown;
    try {
      parseBuildArgs(argv, ENV);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UsageError);
    expect((caught as Error).message).toMatch(want);
  });

  it('a bad BUILDKIT_PROGRESS names the variable', () => {
    expect(() => parseBuildArgs(['.'], { BUILDKIT_PROGRESS: 'loud' })).toThrow(/invalid argument "loud" for "BUILDKIT_PROGRESS" flag/);
  });
});

describe('loadRequest', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kiln-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, 'ctx'));
  writeFileSync(path.join(dir, 'ctx', 'Dockerfile'), 'FROM scratch\n');
  writeFileSync(path.join(dir, 'Other.dockerfile'), 'FROM busybox\n');

  it('reads CONTEXT/Dockerfile by default and resolves the context', () => {
    const req = loadRequest(parseBuildArgs([path.join(dir, 'ctx')], {}));
    expect(req.context).toEqual({ type: 'dir', path: path.join(dir, 'ctx') });
    expect(req.dockerfile).toEqual({ name: 'Dockerfile', text: 'FROM scratch\n', path: path.join(dir, 'ctx', 'Dockerfile') });
  });

  it('-f reads the named file; -f - reads stdin', () => {
    const other = path.join(dir, 'Other.dockerfile');
    expect(loadRequest(parseBuildArgs(['-f', other, path.join(dir, 'ctx')], {})).dockerfile.text).toBe('FROM busybox\n');
    expect(loadRequest(parseBuildArgs(['-f', '-', path.join(dir, 'ctx')], {}), () => 'FROM stdin\n').dockerfile).toEqual({
      name: 'Dockerfile',
      text: 'FROM stdin\n',
    });
  });

  it('names the missing context or Dockerfile', () => {
    expect(() => loadRequest(parseBuildArgs([path.join(dir, 'nope')], {}))).toThrow(/unable to prepare context: path ".*nope" not found/);
    expect(() => loadRequest(parseBuildArgs([path.join(dir, 'Other.dockerfile')], {}))).toThrow(/is not a directory/);
    expect(() => loadRequest(parseBuildArgs(['-f', path.join(dir, 'missing'), path.join(dir, 'ctx')], {}))).toThrow(
      /failed to read Dockerfile: open .*missing: no such file or directory/,
    );
  });
});

describe('buildMetadata', () => {
  it('writes buildx key names', () => {
    const image = {
      id: 'sha256:c',
      configDigest: 'sha256:c',
      manifestDigest: 'sha256:m',
      pushed: {},
      names: ['docker.io/library/a:1', 'docker.io/library/b:2'],
    };
    expect(buildMetadata(image)).toEqual({
      'containerimage.config.digest': 'sha256:c',
      'containerimage.digest': 'sha256:m',
      'image.name': 'docker.io/library/a:1,docker.io/library/b:2',
    });
    expect(buildMetadata({ ...image, names: [] })).not.toHaveProperty('image.name');
  });
});
