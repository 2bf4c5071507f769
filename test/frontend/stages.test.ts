// Stages, --target, pruning, build args (global, per stage, platform, proxy) and unused args.
import { describe, expect, it } from 'vitest';
import { build, one, target } from './helpers.js';

const multi = `FROM alpine AS base
RUN base
FROM base AS build
RUN build
FROM golang AS tools
RUN tools
FROM scratch AS final
COPY --from=build /out /out
`;

describe('stages and targets', () => {
  it('without --target the last stage is built and only what it reaches is in the graph', () => {
    const g = build(multi);
    expect(g.target).toBe(3);
    expect(g.stages.map((s) => [s.index, s.name])).toEqual([
      [0, 'base'],
      [1, 'build'],
      [3, 'final'],
    ]);
    expect(g.unresolvedImages).toEqual(['alpine']);
    expect(g.stages[1].base).toEqual({ kind: 'stage', index: 0 });
    expect(g.stages[2]).toMatchObject({ base: { kind: 'scratch' }, dependsOn: [1] });
  });
  it('--target selects a stage, case-insensitively', () => {
    const g = build(multi, { target: 'TOOLS' });
    expect(g.target).toBe(2);
    expect(g.stages.map((s) => s.index)).toEqual([2]);
    expect(g.stages[0].base).toEqual({ kind: 'image', ref: 'golang' });
  });
  it('stage names are stored lower-cased', () => {
    expect(build('FROM a AS MyStage\n').stages[0].name).toBe('mystage');
  });
  it('a FROM naming a later stage is an image (BuildKit resolves names defined before)', () => {
    const g = build('FROM later AS first\nFROM b AS later\n', { target: 'first' });
    expect(g.stages[0].base).toEqual({ kind: 'image', ref: 'later' });
  });
  it('records FROM --platform expanded', () => {
    const g = build('FROM --platform=$BUILDPLATFORM golang AS b\n', { buildPlatform: { os: 'linux', architecture: 'arm64' } });
    expect(g.stages[0].platform).toBe('linux/arm64');
    expect(g.stages[0].config.architecture).toBe('arm64');
  });
  it('duplicate stage names: the later definition wins for later references (BuildKit warns)', () => {
    const g = build('FROM a AS x\nFROM b AS x\nFROM c\nCOPY --from=x /a /b\n');
    expect(target(g).dependsOn).toEqual([1]);
    expect(g.warnings.map((w) => w.rule)).toContain('DuplicateStageName');
  });
  it('image config supplied for a base is used and not listed as unresolved', () => {
    const g = build('FROM img\n', { baseImages: { img: { env: ['A=1'] } } });
    expect(g.unresolvedImages).toEqual([]);
    expect(target(g).config.env).toContainEqual(['A', '1']);
  });
  it('unreached stages are not checked for their images', () => {
    expect(build('FROM unused AS u\nFROM scratch\n').unresolvedImages).toEqual([]);
  });
});

describe('global ARGs and FROM', () => {
  it('expands FROM with global ARG defaults and build args', () => {
    const t = 'ARG BASE=alpine\nARG TAG=3.19\nFROM ${BASE}:${TAG}\n';
    expect(build(t).stages[0].base).toEqual({ kind: 'image', ref: 'alpine:3.19' });
    expect(build(t, { buildArgs: { TAG: 'edge' } }).stages[0].base).toEqual({ kind: 'image', ref: 'alpine:edge' });
  });
  it('a global ARG default may use an earlier global ARG', () => {
    expect(build('ARG V=1\nARG IMG=app:v$V\nFROM $IMG\n').stages[0].base).toEqual({ kind: 'image', ref: 'app:v1' });
  });
  it('global ARGs are not in scope inside a stage unless re-declared', () => {
    const r = one('ARG V=1\nFROM a\nRUN echo $V\n', 'run');
    expect(r.buildArgs).toEqual([]);
    const r2 = one('ARG V=1\nFROM a\nARG V\nRUN echo $V\n', 'run', { buildArgs: {} });
    expect(r2.buildArgs).toEqual([['V', '1']]);
    expect(one('ARG V=1\nFROM a\nARG V\nRUN x\n', 'run', { buildArgs: { V: '2' } }).buildArgs).toEqual([['V', '2']]);
  });
  it('platform args are available in FROM without declaration', () => {
    const g = build('FROM --platform=$BUILDPLATFORM img-$TARGETARCH$TARGETVARIANT\n', {
      buildPlatform: { os: 'linux', architecture: 'amd64' },
      targetPlatform: { os: 'linux', architecture: 'arm', variant: 'v7' },
    });
    expect(g.stages[0].base).toEqual({ kind: 'image', ref: 'img-armv7' });
  });
  it('platform args inside a stage need an ARG and then take the automatic value', () => {
    const r = one(
      'FROM a AS s\nARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT TARGETSTAGE\nRUN x\n',
      'run',
      {
        buildPlatform: { os: 'linux', architecture: 'amd64' },
        targetPlatform: { os: 'linux', architecture: 'arm64' },
      },
    );
    expect(r.buildArgs).toEqual([
      ['TARGETPLATFORM', 'linux/arm64'],
      ['TARGETOS', 'linux'],
      ['TARGETARCH', 'arm64'],
      ['TARGETVARIANT', ''],
      ['BUILDPLATFORM', 'linux/amd64'],
      ['BUILDOS', 'linux'],
      ['BUILDARCH', 'amd64'],
      ['BUILDVARIANT', ''],
      ['TARGETSTAGE', 's'],
    ]);
    expect(one('FROM a\nRUN x\n', 'run').buildArgs).toEqual([]);
  });
  it('the target platform defaults to the build platform, which defaults to linux/amd64', () => {
    expect(one('FROM a\nARG TARGETPLATFORM\nRUN x\n', 'run').buildArgs).toEqual([['TARGETPLATFORM', 'linux/amd64']]);
  });
});

describe('ARG inside a stage', () => {
  it('default, build arg override, no value', () => {
    const t = 'FROM a\nARG A=def B C\nRUN x\n';
    expect(one(t, 'run').buildArgs).toEqual([['A', 'def']]);
    expect(one(t, 'run', { buildArgs: { A: 'over', B: 'b', C: undefined } }).buildArgs).toEqual([
      ['A', 'over'],
      ['B', 'b'],
    ]);
  });
  it('an ARG default expands earlier values', () => {
    expect(one('FROM a\nENV P=/opt\nARG DIR=$P/bin\nRUN x\n', 'run').buildArgs).toEqual([['DIR', '/opt/bin']]);
  });
  it('ENV after ARG of the same name wins; ARG after ENV wins in RUN', () => {
    const a = one('FROM a\nARG V=arg\nENV V=env\nRUN x\n', 'run');
    expect(a.buildArgs).toEqual([]);
    expect(a.env).toContainEqual(['V', 'env']);
    const b = one('FROM a\nENV V=env\nARG V=arg\nRUN x\n', 'run');
    expect(b.buildArgs).toEqual([['V', 'arg']]);
  });
  it('ARG values do not reach the image config', () => {
    const g = build('FROM a\nARG SECRETISH=1\n');
    expect(target(g).config.env.map(([k]) => k)).toEqual(['PATH']);
  });
  it('ARGs are inherited by a stage built FROM the stage (BuildKit keeps them in scope)', () => {
    expect(one('FROM a AS b\nARG X=1\nFROM b\nRUN x\n', 'run').buildArgs).toEqual([['X', '1']]);
  });
});

describe('proxy args and unused build args', () => {
  it('proxy build args reach RUN without an ARG but stay out of history', () => {
    const r = one('FROM a\nRUN curl x\n', 'run', { buildArgs: { HTTP_PROXY: 'http://p:3128', no_proxy: 'localhost' } });
    expect(r.proxyEnv).toEqual([
      ['HTTP_PROXY', 'http://p:3128'],
      ['no_proxy', 'localhost'],
    ]);
    expect(r.buildArgs).toEqual([]);
    expect(r.createdBy).toBe('RUN /bin/sh -c curl x # buildkit');
  });
  it('lists given args no reached ARG consumed, except predefined ones', () => {
    const g = build('ARG G\nFROM a AS other\nARG O\nFROM a\nARG USED\n', {
      buildArgs: { USED: '1', G: '1', O: '1', NOPE: '1', HTTPS_PROXY: 'x', TARGETARCH: 'arm64', ALSO: undefined },
    });
    expect(g.unusedBuildArgs).toEqual(['ALSO', 'NOPE', 'O']);
  });
});
