// A request's named contexts as the solver takes them: names normalised whoever sent them, synced
// copies found by the name the request used, bad names and references refused naming the flag.
import { describe, expect, it } from 'vitest';
import { listedContext } from '../../src/context/source.js';
import { namedContextInputs } from '../../src/server/named-contexts.js';

describe('namedContextInputs', () => {
  it("files the names as buildx does and finds the daemon's synced copies by the given name", () => {
    const copy = listedContext('/nonexistent/kept', 'synced:x', []);
    const out = namedContextInputs(
      {
        'docker.io/library/alpine:latest': { type: 'docker-image', ref: 'busybox:1.36' },
        lib: { type: 'synced', id: 'x', session: 's' },
        web: { type: 'url', url: 'https://example.com/a.tar' },
      },
      { lib: copy },
    );
    expect(Object.keys(out).sort()).toEqual(['alpine', 'lib', 'web']);
    expect(out.alpine).toEqual({ kind: 'image', ref: 'busybox:1.36' });
    expect(out.lib).toEqual({ kind: 'files', source: copy });
    expect(out.web).toEqual({ kind: 'url', url: 'https://example.com/a.tar' });
  });

  it('refuses what cannot be built', () => {
    expect(() => namedContextInputs({ 'Bad Name': { type: 'url', url: 'https://x/a.tar' } })).toThrow(/--build-context Bad Name: invalid context name/);
    expect(() => namedContextInputs({ a: { type: 'docker-image', ref: 'bad ref!' } })).toThrow(/--build-context a=docker-image:\/\/bad ref!/);
    expect(() => namedContextInputs({ a: { type: 'synced', id: 'x', session: 's' } })).toThrow(/--build-context a: a synced context needs the daemon/);
    expect(() => namedContextInputs({ alpine: { type: 'url', url: 'https://x/a' }, 'alpine:latest': { type: 'url', url: 'https://x/b' } })).toThrow(
      /the same name as alpine/,
    );
  });
});
