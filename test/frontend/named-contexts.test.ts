// Named build contexts (--build-context) in the graph: where a name stands for files or an image,
// and the names matched as BuildKit's dockerui matches them.
import { describe, expect, it } from 'vitest';
import { namedContextKey } from '../../src/frontend/named-contexts.js';
import type { NamedContextBinding } from '../../src/frontend/types.js';
import { build, target } from './helpers.js';

const files: NamedContextBinding = { kind: 'files' };

describe('namedContextKey', () => {
  it.each([
    ['alpine', 'alpine'],
    ['alpine:latest', 'alpine'],
    ['library/alpine', 'alpine'],
    ['docker.io/library/alpine:latest', 'alpine'],
    ['index.docker.io/library/alpine', 'alpine'],
    ['alpine:3.19', 'alpine:3.19'],
    ['user/app', 'user/app'],
    ['docker.io/user/app:v1', 'user/app:v1'],
    ['localhost:5000/app:latest', 'localhost:5000/app'],
    ['example.com/library/app', 'example.com/library/app'],
    ['my-ctx', 'my-ctx'],
  ])('%s -> %s', (name, key) => expect(namedContextKey(name)).toBe(key));

  it('refuses what is not an image name', () => {
    expect(namedContextKey('UPPER')).toBeUndefined();
    expect(namedContextKey('a b')).toBeUndefined();
    expect(namedContextKey('')).toBeUndefined();
  });
});

describe('named contexts in the graph', () => {
  it('FROM a named context of files is an empty image with those files', () => {
    const g = build('FROM ctx\nRUN ls\n', { namedContexts: { ctx: files } });
    const s = target(g);
    expect(s.base).toEqual({ kind: 'context', name: 'ctx' });
    expect(g.unresolvedImages).toEqual([]);
    // The config of an empty image, as FROM scratch (BuildKit's emptyImage).
    expect(s.config.workingDir).toBe('/');
    expect(s.config.env.map(([k]) => k)).toEqual(['PATH']);
  });

  it('COPY --from and RUN --mount from= name a context of files', () => {
    const g = build('FROM busybox\nCOPY --from=docs /a /b\nRUN --mount=from=docs,target=/m ls /m\n', { namedContexts: { docs: files } });
    const [copy, run] = target(g).steps;
    expect(copy!.kind === 'copy' && copy.from).toEqual({ kind: 'context', name: 'docs' });
    expect(run!.kind === 'run' && run.mounts[0]).toMatchObject({ type: 'bind', from: { kind: 'context', name: 'docs' } });
    expect(target(g).dependsOn).toEqual([]);
    expect(g.unresolvedImages).toEqual(['busybox']);
  });

  it('a docker-image context replaces the image it is named after, however the Dockerfile spells it', () => {
    const namedContexts = { alpine: { kind: 'image', ref: 'registry.test/pinned@sha256:' + 'a'.repeat(64) } } as const;
    for (const from of ['alpine', 'alpine:latest', 'docker.io/library/alpine']) {
      const g = build(`FROM ${from}\nCOPY --from=${from} /x /y\n`, { namedContexts });
      expect(target(g).base).toEqual({ kind: 'image', ref: namedContexts.alpine.ref });
      expect(g.unresolvedImages).toEqual([namedContexts.alpine.ref]);
    }
    // Another tag is another name.
    expect(target(build('FROM alpine:3.19\n', { namedContexts })).base).toEqual({ kind: 'image', ref: 'alpine:3.19' });
  });

  it("a named context of a stage's name replaces that stage, instructions and all", () => {
    const text = 'FROM busybox AS deps\nRUN exit 1\nCOPY nothing /\nFROM busybox\nCOPY --from=deps /a /a\nFROM deps AS last\nRUN ls\n';
    const g = build(text, { namedContexts: { deps: files } });
    const deps = g.stages.find((s) => s.name === 'deps')!;
    expect(deps.base).toEqual({ kind: 'context', name: 'deps' });
    expect(deps.steps).toEqual([]);
    const last = target(g);
    expect(last.base).toEqual({ kind: 'stage', index: 0 });
    // BuildKit gives a replaced stage no image config (FROM ctx would have emptyImage's "/").
    expect(last.config.workingDir).toBe('');
    // Replaced by an image: the stage is that image.
    const img = build(text, { namedContexts: { deps: { kind: 'image', ref: 'busybox:1.36' } } });
    expect(img.stages[0]!.base).toEqual({ kind: 'image', ref: 'busybox:1.36' });
    expect(img.stages[0]!.steps).toEqual([]);
  });

  it('a stage name wins over an image context for COPY --from of an earlier stage', () => {
    // The stage "tools" is not replaced (no context of its name); "busybox" is, wherever used as an image.
    const g = build('FROM busybox AS tools\nRUN true\nFROM scratch\nCOPY --from=tools /a /a\n', {
      namedContexts: { busybox: { kind: 'image', ref: 'pinned:1' } },
    });
    expect(g.stages[0]!.base).toEqual({ kind: 'image', ref: 'pinned:1' });
    const copy = target(g).steps[0]!;
    expect(copy.kind === 'copy' && copy.from).toEqual({ kind: 'stage', index: 0 });
  });

  it('without a named context nothing changes', () => {
    const g = build('FROM ctx\n');
    expect(target(g).base).toEqual({ kind: 'image', ref: 'ctx' });
  });
});
