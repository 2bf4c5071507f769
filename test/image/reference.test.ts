import { describe, expect, it } from 'vitest';
import { InvalidReferenceError, familiarName, familiarString, formatReference, manifestReference, parseReference } from '../../src/image/reference.js';

const D = 'sha256:' + 'ab'.repeat(32);

describe('parseReference normalises as Docker does', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest', 'busybox'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox'],
    ['library/busybox', 'docker.io/library/busybox:latest', 'busybox'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest', 'busybox'],
    ['user/app', 'docker.io/user/app:latest', 'user/app'],
    ['docker.io/library/a/b', 'docker.io/library/a/b:latest', 'library/a/b'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app'],
    ['localhost:5000/app:v1', 'localhost:5000/app:v1', 'localhost:5000/app'],
    ['127.0.0.1:5000/a/b/c:t', '127.0.0.1:5000/a/b/c:t', '127.0.0.1:5000/a/b/c'],
    ['[::1]:5000/app', '[::1]:5000/app:latest', '[::1]:5000/app'],
    ['registry.example.com/team/app', 'registry.example.com/team/app:latest', 'registry.example.com/team/app'],
    ['Foo/bar', 'Foo/bar:latest', 'Foo/bar'], // an uppercase first component is a host
    ['localhost', 'docker.io/library/localhost:latest', 'localhost'],
    ['localhost:5000', 'docker.io/library/localhost:5000', 'localhost'], // no slash: "5000" is a tag
    ['a_b__c-d---e/x.y_z', 'docker.io/a_b__c-d---e/x.y_z:latest', 'a_b__c-d---e/x.y_z'],
    ['a.b/c', 'a.b/c:latest', 'a.b/c'], // a dot makes the first component a host
    [`busybox@${D}`, `docker.io/library/busybox@${D}`, 'busybox'],
    [`busybox:1.36@${D}`, `docker.io/library/busybox:1.36@${D}`, 'busybox'],
    [`localhost:5000/app:v1@${D}`, `localhost:5000/app:v1@${D}`, 'localhost:5000/app'],
    ['app:' + 'x'.repeat(128), 'docker.io/library/app:' + 'x'.repeat(128), 'app'],
  ])('%s -> %s', (input, full, familiar) => {
    const ref = parseReference(input);
    expect(formatReference(ref)).toBe(full);
    expect(familiarName(ref)).toBe(familiar);
  });

  it.each([
    ['', /at least one component/],
    ['Busybox', /repository name \(Busybox\) must be lowercase/],
    ['docker.io/Library/busybox', /must be lowercase/],
    ['localhost:5000/App', /must be lowercase/],
    ['busybox:', /invalid tag format/],
    ['busybox:-bad', /invalid tag format/],
    ['app:' + 'x'.repeat(129), /invalid tag format/],
    ['busybox@sha256:abc', /invalid digest format/],
    [`busybox@sha512:${'a'.repeat(128)}`, /unsupported digest algorithm "sha512"/],
    [`busybox@sha256:${'A'.repeat(64)}`, /invalid sha256 digest/],
    ['a'.repeat(64), /64-byte hexadecimal/],
    ['-app', /invalid reference format/],
    ['app-', /invalid reference format/],
    ['a//b', /invalid reference format/],
    ['a/b/', /at least one component|invalid reference format/],
    ['a..b/c', /bad registry host/],
    ['a_b.c/x', /bad registry host/],
    ['host:port/app', /bad registry host/],
    ['app/../etc', /invalid reference format/],
    ['a b', /invalid/],
    [`example.com/${'a'.repeat(250)}`, /not be more than 255 characters/],
  ])('rejects %j', (input, msg) => {
    expect(() => parseReference(input)).toThrow(InvalidReferenceError);
    expect(() => parseReference(input)).toThrow(msg);
    expect(() => parseReference(input)).toThrow(`invalid reference ${JSON.stringify(input)}`);
  });

  it('keeps a reference without tag when asked', () => {
    expect(parseReference('busybox', { defaultTag: false })).toEqual({ domain: 'docker.io', path: 'library/busybox' });
    expect(manifestReference(parseReference('busybox'))).toBe('latest');
    expect(manifestReference(parseReference(`busybox:1@${D}`))).toBe(D);
    expect(familiarString(parseReference(`busybox:1@${D}`))).toBe(`busybox:1@${D}`);
    expect(familiarString(parseReference('user/app'))).toBe('user/app:latest');
  });
});
