// Automatic platform args (TARGETPLATFORM, BUILDOS, ...) and global ARGs that share their names,
// as current BuildKit's dockerfile2llb resolves them (defaultArgs, buildMetaArgs, dispatchArg).
import { describe, expect, it } from 'vitest';
import { build, one, target } from './helpers.js';
import type { RunStep } from '../../src/frontend/types.js';

const run = (text: string, opts = {}) => one(text, 'run', opts) as RunStep;

describe('platform args and global ARGs of the same name', () => {
  it('a global ARG without a default keeps the automatic value (BuildKit 0.8 blanked it; current BuildKit does not)', () => {
    const r = run('ARG TARGETPLATFORM\nARG TARGETOS\nARG BUILDARCH\nFROM busybox\nARG TARGETPLATFORM\nARG TARGETOS\nARG BUILDARCH\nRUN echo\n');
    expect(r.buildArgs).toEqual([
      ['TARGETPLATFORM', 'linux/amd64'],
      ['TARGETOS', 'linux'],
      ['BUILDARCH', 'amd64'],
    ]);
    expect(r.createdBy).toBe('RUN |3 TARGETPLATFORM=linux/amd64 TARGETOS=linux BUILDARCH=amd64 /bin/sh -c echo # buildkit');
  });

  it('a global default replaces the automatic value, and may expand another platform arg', () => {
    const r = run(
      'ARG TARGETOS=plan9\nARG TARGETARCH=${TARGETOS}-arch\nARG BUILDPLATFORM=custom/b\nFROM busybox\nARG TARGETOS\nARG TARGETARCH\nARG BUILDPLATFORM\nARG TARGETPLATFORM\nRUN echo\n',
    );
    expect(r.buildArgs).toEqual([
      ['TARGETOS', 'plan9'],
      ['TARGETARCH', 'plan9-arch'],
      ['BUILDPLATFORM', 'custom/b'],
      ['TARGETPLATFORM', 'linux/amd64'],
    ]);
  });

  it('a --build-arg beats a global default and the automatic value; undeclared in the stage it stays out', () => {
    const r = run('ARG TARGETOS=dflt\nFROM busybox\nARG TARGETOS\nARG BUILDARCH\nRUN echo\n', {
      buildArgs: { TARGETOS: 'given-os', BUILDARCH: 'given-arch', TARGETARCH: 'x' },
    });
    expect(r.buildArgs).toEqual([
      ['TARGETOS', 'given-os'],
      ['BUILDARCH', 'given-arch'],
    ]);
  });

  it('a stage default beats the global value; declared again without one, the global value comes back', () => {
    const text = 'ARG TARGETARCH=global-arch\nFROM busybox\nARG TARGETOS=stage-os\nARG TARGETARCH=stage-arch\nRUN one\nARG TARGETOS\nRUN two\n';
    const runs = target(build(text)).steps.filter((s): s is RunStep => s.kind === 'run');
    expect(runs[0].buildArgs).toEqual([
      ['TARGETOS', 'stage-os'],
      ['TARGETARCH', 'stage-arch'],
    ]);
    expect(runs[1].buildArgs).toEqual([
      ['TARGETOS', 'linux'],
      ['TARGETARCH', 'stage-arch'],
    ]);
    // Listed once, at its first position (current BuildKit's runCommandString).
    expect(runs[1].createdBy).toBe('RUN |2 TARGETOS=linux TARGETARCH=stage-arch /bin/sh -c two # buildkit');
  });

  it('a global TARGETPLATFORM default is what FROM --platform=$TARGETPLATFORM expands to', () => {
    const g = build('ARG TARGETPLATFORM=linux/arm64\nFROM --platform=$TARGETPLATFORM busybox\nRUN echo "$TARGETPLATFORM"\n');
    expect(target(g).platform).toBe('linux/arm64');
    expect(target(g).config.architecture).toBe('arm64');
    // Not declared in the stage: not in the RUN environment.
    expect((target(g).steps[0] as RunStep).buildArgs).toEqual([]);
  });
});
