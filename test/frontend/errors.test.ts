// Errors name the Dockerfile, the 1-based line and the offending text.
import { describe, expect, it } from 'vitest';
import { build, expectError, target } from './helpers.js';
import { DockerfileError } from '../../src/frontend/index.js';

describe('required error reports', () => {
  it('unknown instruction on line 3', () => {
    expectError('FROM busybox\nRUN true\nFOOBAR x\n', 3, ['Dockerfile', 'unknown instruction: FOOBAR']);
  });
  it('bad flag on line 3', () => {
    expectError('FROM busybox\nRUN true\nCOPY --foo=bar a /b\n', 3, ['Dockerfile', '--foo', 'COPY']);
  });
  it('unknown stage on line 3', () => {
    expectError('FROM busybox AS a\nRUN true\nCOPY --from=7 /x /y\n', 3, ['Dockerfile', 'invalid stage index 7']);
    expectError('FROM busybox AS a\nRUN true\nCOPY --from=Not_A-Ref! /x /y\n', 3, ['Dockerfile', 'Not_A-Ref!', 'no stage named']);
  });
  it('missing FROM: an instruction before the first FROM on line 3', () => {
    expectError('# comment\nARG V=1\nRUN echo hi\nFROM busybox\n', 3, ['Dockerfile', 'RUN', 'before the first FROM']);
  });
  it('missing FROM: no stage at all', () => {
    expectError('ARG A\nARG B\nARG C\n', 3, ['Dockerfile', 'no FROM']);
  });
  it('uses the filename given in the options', () => {
    expectError('FROM a\nBOGUS\n', 2, ['build/app.Dockerfile:2:', 'BOGUS'], { filename: 'build/app.Dockerfile' });
  });
  it('is a DockerfileError with file and line fields', () => {
    try {
      build('FROM a\n\n\nnope\n');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(DockerfileError);
      expect((e as DockerfileError).line).toBe(4);
      expect((e as DockerfileError).file).toBe('Dockerfile');
      expect((e as DockerfileError).message).toBe('Dockerfile:4: unknown instruction: NOPE');
    }
  });
});

describe('errors with their lines', () => {
  const cases: [string, string, number, (string | RegExp)[]][] = [
    ['empty file', '', 0, ['cannot be empty']],
    ['unknown flag on RUN', 'FROM a\nRUN --bogus echo\n', 2, ['--bogus', 'RUN']],
    ['flag without value', 'FROM a\nCOPY --chown a b\n', 2, []],
    ['bad bool flag', 'FROM a\nCOPY --link=maybe a b\n', 2, ['boolean', '--link']],
    ['duplicate flag', 'FROM a\nCOPY --chown=1 --chown=2 a b\n', 2, ['duplicate', '--chown']],
    ['--from on ADD', 'FROM a\nADD --from=x a b\n', 2, ['--from', 'ADD']],
    ['--checksum on COPY', 'FROM a\nCOPY --checksum=sha256:00 a b\n', 2, ['--checksum']],
    ['COPY with one argument', 'FROM a\nCOPY onlyone\n', 2, ['at least two arguments']],
    ['SHELL not JSON', 'FROM a\nSHELL /bin/bash -c\n', 2, ['SHELL', 'JSON']],
    ['JSON with a number', 'FROM a\nCMD ["a", 1]\n', 2, ['strings only']],
    ['bad healthcheck duration', 'FROM a\nHEALTHCHECK --interval=5x CMD true\n', 2, ['--interval', '5x']],
    ['healthcheck duration below 1ms', 'FROM a\nHEALTHCHECK --timeout=10us CMD true\n', 2, ['cannot be less than 1ms']],
    ['negative retries', 'FROM a\nHEALTHCHECK --retries=-1 CMD true\n', 2, ['cannot be negative']],
    ['healthcheck unknown type', 'FROM a\nHEALTHCHECK FOO true\n', 2, ['Unknown type']],
    ['healthcheck NONE with args', 'FROM a\nHEALTHCHECK NONE x\n', 2, ['takes no arguments']],
    ['bad chmod', 'FROM a\nCOPY --chmod=999 a b\n', 2, ['invalid chmod parameter', '999']],
    ['chmod above 07777', 'FROM a\nCOPY --chmod=17777 a b\n', 2, ['invalid chmod parameter']],
    ['empty continuation at EOF', 'FROM a\nRUN echo \\\n', 2, ['end of file']],
    ['unterminated heredoc', 'FROM a\nRUN <<EOF\necho\n', 2, ['unterminated heredoc']],
    ['bad escape directive', '# escape=x\nFROM a\n', 1, ['invalid escape token']],
    ['repeated directive', '# escape=\\\n# escape=`\nFROM a\n', 2, ['only one escape parser directive']],
    ['bad check directive', '# check=bogus\nFROM a\n', 1, ['check options']],
    ['FROM with two args', 'FROM a b\n', 1, ['one or three arguments']],
    ['bad stage name', 'FROM a AS 1st\n', 1, ['invalid name for build stage']],
    ['invalid base reference', 'FROM Not/Valid!\n', 1, ['not a valid image reference']],
    ['blank base after expansion', 'ARG B\nFROM $B\n', 2, ['should not be blank']],
    ['bad platform', 'FROM --platform=nowhere/nothing a\n', 1, ['platform']],
    ['copy from a later stage', 'FROM a AS one\nCOPY --from=two /x /y\nFROM b AS two\nFROM one\n', 2, ['needs to be defined before']],
    ['copy from own stage index', 'FROM a\nCOPY --from=0 /x /y\n', 2, ['circular dependency detected on stage: stage-0']],
    [
      'stages copying from each other',
      'FROM a AS one\nCOPY --from=two /x /y\nFROM b AS two\nRUN --mount=from=one x\n',
      2,
      ['circular dependency detected on stage: one'],
    ],
    ['mount from a later stage', 'FROM a AS one\nRUN --mount=from=two,target=/m x\nFROM b AS two\nFROM one\n', 2, ['needs to be defined before']],
    ['variable in COPY --from', 'ARG S=a\nFROM a\nCOPY --from=$S /x /y\n', 3, ["doesn't support variable expansion"]],
    ['variable in mount from', 'FROM a\nRUN --mount=from=$X,target=/x true\n', 2, ["doesn't support variable expansion"]],
    ['unknown mount type', 'FROM a\nRUN --mount=type=nfs,target=/x true\n', 2, ['unsupported mount type']],
    ['unknown mount key', 'FROM a\nRUN --mount=type=bind,target=/x,colour=red true\n', 2, ["unexpected key 'colour'"]],
    ['mode on bind mount', 'FROM a\nRUN --mount=type=bind,target=/x,mode=0700 true\n', 2, ['mode not allowed']],
    ['sharing on tmpfs', 'FROM a\nRUN --mount=type=tmpfs,target=/x,sharing=locked true\n', 2, ['sharing']],
    ['bad sharing', 'FROM a\nRUN --mount=type=cache,target=/x,sharing=all true\n', 2, ['unsupported sharing value']],
    ['secret with from', 'FROM a AS b\nFROM c\nRUN --mount=type=secret,id=x,from=b true\n', 3, ['secret mount should not have a from']],
    ['secret without id or target', 'FROM a\nRUN --mount=type=secret,required true\n', 2, ['one of source, target required']],
    ['ssh with source', 'FROM a\nRUN --mount=type=ssh,source=/x true\n', 2, ['ssh does not support source']],
    ['required on bind', 'FROM a\nRUN --mount=type=bind,target=/x,required true\n', 2, ["unexpected key 'required'"]],
    ['bind without target', 'FROM a\nRUN --mount=type=bind,source=/x true\n', 2, ['requires a target']],
    ['bad mount mode', 'FROM a\nRUN --mount=type=cache,target=/x,mode=rwx true\n', 2, ['invalid value rwx for mode']],
    ['bad network', 'FROM a\nRUN --network=bridge true\n', 2, ['unsupported network mode', 'bridge']],
    ['bad security', 'FROM a\nRUN --security=privileged true\n', 2, ['unsupported security mode']],
    ['ONBUILD ONBUILD', 'FROM a\nONBUILD ONBUILD RUN x\n', 2, ['Chaining ONBUILD']],
    ['ONBUILD FROM', 'FROM a\nONBUILD FROM b\n', 2, ["FROM isn't allowed"]],
    ['ONBUILD MAINTAINER', 'FROM a\nONBUILD MAINTAINER me\n', 2, ["MAINTAINER isn't allowed"]],
    ['ENV without value', 'FROM a\nENV ONLYKEY\n', 2, ['ENV must have two arguments']],
    ['ENV mixed forms', 'FROM a\nENV A=1 B\n', 2, ["can't find = in"]],
    ['ARG blank name', 'FROM a\nARG =x\n', 2, ['ARG names can not be blank']],
    ['WORKDIR without path', 'FROM a\nWORKDIR\n', 2, ['exactly one argument']],
    ['EXPOSE bad port', 'FROM a\nEXPOSE eighty\n', 2, ['eighty']],
    ['EXPOSE bad proto', 'FROM a\nEXPOSE 80/icmp\n', 2, ['invalid proto']],
    ['EXPOSE bad range', 'FROM a\nEXPOSE 90-80\n', 2, ['invalid range']],
    ['STOPSIGNAL bad', 'FROM a\nSTOPSIGNAL SIGFOO\n', 2, ['Invalid signal']],
    ['COPY URL', 'FROM a\nCOPY https://example.com/x /x\n', 2, ["can't be a URL for COPY"]],
    ['COPY git', 'FROM a\nCOPY git@github.com:o/r.git /x\n', 2, ["can't be a git ref for COPY"]],
    ['ADD checksum on local file', 'FROM a\nADD --checksum=sha256:' + '0'.repeat(64) + ' file /x\n', 2, ['non-HTTP']],
    ['ADD bad checksum', 'FROM a\nADD --checksum=md5:00 https://e.com/x /x\n', 2, ['md5']],
    ['heredoc destination', 'FROM a\nCOPY x <<EOF\nhi\nEOF\n', 2, ['heredoc as a destination']],
    ['unknown target', 'FROM a AS one\n', 0, ['target stage "two" could not be found']],
  ];
  for (const [name, text, line, parts] of cases) {
    it(name, () => {
      expectError(text, line, parts, name === 'unknown target' ? { target: 'two' } : {});
    });
  }
});

describe('references to later stages', () => {
  it('are refused only in the stages the target needs (BuildKit checks them when it dispatches)', () => {
    const g = build('FROM a AS unused\nCOPY --from=final /x /y\nRUN --mount=from=final,target=/m x\nFROM b AS final\nRUN y\n');
    expect(target(g).name).toBe('final');
    expectError('FROM a AS unused\nCOPY --from=final /x /y\nFROM b AS final\n', 2, ['needs to be defined before'], { target: 'unused' });
  });
});
