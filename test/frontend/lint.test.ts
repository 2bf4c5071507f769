// Build checks: BuildKit's rules, messages and lines, and the # check= directive.
import { describe, expect, it } from 'vitest';
import { build } from './helpers.js';
import type { FrontendOptions } from '../../src/frontend/types.js';

const findings = (text: string, opts: Partial<FrontendOptions> = {}) => build(text, opts).warnings.map((w) => [w.rule, w.location.line, w.message]);
const rules = (text: string, opts: Partial<FrontendOptions> = {}) => build(text, opts).warnings.map((w) => w.rule);

describe('lint rules', () => {
  const cases: [string, string, [string, number, string][]][] = [
    [
      'JSONArgsRecommended for CMD',
      'FROM a\nCMD run it\n',
      [['JSONArgsRecommended', 2, 'JSON arguments recommended for CMD to prevent unintended behavior related to OS signals']],
    ],
    [
      'JSONArgsRecommended for ENTRYPOINT',
      'FROM a\nENTRYPOINT run it\n',
      [['JSONArgsRecommended', 2, 'JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals']],
    ],
    ['no JSONArgsRecommended with an explicit SHELL', 'FROM a\nSHELL ["/bin/sh", "-c"]\nCMD run it\n', []],
    ['StageNameCasing', 'FROM a AS Build\n', [['StageNameCasing', 1, "Stage name 'Build' should be lowercase"]]],
    ['FromAsCasing', 'FROM a as b\n', [['FromAsCasing', 1, "'as' and 'FROM' keywords' casing do not match"]]],
    ['FromAsCasing lower', 'from a AS b\n', [['FromAsCasing', 1, "'AS' and 'from' keywords' casing do not match"]]],
    ['MaintainerDeprecated', 'FROM a\nMAINTAINER me\n', [['MaintainerDeprecated', 2, 'Maintainer instruction is deprecated in favor of using label']]],
    [
      'ConsistentInstructionCasing',
      'FROM a\nRUN x\nrun y\nRun z\n',
      [
        ['ConsistentInstructionCasing', 3, "Command 'run' should match the case of the command majority (uppercase)"],
        ['ConsistentInstructionCasing', 4, "Command 'Run' should match the case of the command majority (uppercase)"],
      ],
    ],
    ['DuplicateStageName', 'FROM a AS x\nFROM b AS x\n', [['DuplicateStageName', 2, 'Duplicate stage name "x", stage names should be unique']]],
    ['ReservedStageName', 'FROM a AS context\n', [['ReservedStageName', 1, 'Stage name should not use the same name as reserved stage "context"']]],
    [
      'MultipleInstructionsDisallowed reports the earlier one',
      'FROM a\nCMD ["a"]\nCMD ["b"]\n',
      [['MultipleInstructionsDisallowed', 2, 'Multiple CMD instructions should not be used in the same stage because only the last one will be used']],
    ],
    [
      'MultipleInstructionsDisallowed HEALTHCHECK',
      'FROM a\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n',
      [['MultipleInstructionsDisallowed', 2, 'Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used']],
    ],
    [
      'WorkdirRelativePath only for the first WORKDIR',
      'FROM a\nWORKDIR app\nWORKDIR sub\n',
      [['WorkdirRelativePath', 2, 'Relative workdir "app" can have unexpected results if the base image changes']],
    ],
    ['no WorkdirRelativePath after an absolute WORKDIR', 'FROM a\nWORKDIR /app\nWORKDIR sub\n', []],
    ['UndefinedVar', 'FROM a\nARG FOO\nENV X=$FOO Y=$BAR\n', [['UndefinedVar', 3, "Usage of undefined variable '$BAR'"]]],
    [
      'UndefinedVar with suggestion',
      'FROM a\nENV PORTS=1\nWORKDIR /$PORT\n',
      [['UndefinedVar', 3, "Usage of undefined variable '$PORT' (did you mean $PORTS?)"]],
    ],
    ['UndefinedArgInFrom', 'ARG VERSION=1\nFROM a$VERSON\n', [['UndefinedArgInFrom', 2, "FROM argument 'VERSON' is not declared (did you mean VERSION?)"]]],
    ['LegacyKeyValueFormat', 'FROM a\nENV A b\n', [['LegacyKeyValueFormat', 2, '"ENV key=value" should be used instead of legacy "ENV key value" format']]],
    [
      'SecretsUsedInArgOrEnv',
      'FROM a\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x PUBLIC_KEY=y\n',
      [
        ['SecretsUsedInArgOrEnv', 2, 'Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")'],
        ['SecretsUsedInArgOrEnv', 3, 'Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")'],
      ],
    ],
    ['NoEmptyContinuation', 'FROM a\nRUN echo \\\n\n  x\n', [['NoEmptyContinuation', 3, 'Empty continuation line']]],
    [
      'RedundantTargetPlatform',
      'FROM --platform=$TARGETPLATFORM a\n',
      [['RedundantTargetPlatform', 1, 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior']],
    ],
    [
      'FromPlatformFlagConstDisallowed',
      'FROM --platform=linux/arm64 a\n',
      [['FromPlatformFlagConstDisallowed', 1, 'FROM --platform flag should not use constant value "linux/arm64"']],
    ],
    ['constant platform allowed when the stage name says it', 'FROM --platform=linux/arm64 a AS build-arm64\n', []],
    ['ExposeProtoCasing', 'FROM a\nEXPOSE 80/TCP\n', [['ExposeProtoCasing', 2, "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase"]]],
    [
      'InvalidDefaultArgInFrom',
      'ARG TAG\nFROM busybox:$TAG\n',
      [['InvalidDefaultArgInFrom', 2, 'Default value for ARG busybox:$TAG results in empty or invalid base image name']],
    ],
    ['clean file', 'FROM a\nRUN x\nCMD ["y"]\n', []],
  ];
  for (const [name, text, want] of cases) {
    it(name, () => {
      const opts = name === 'InvalidDefaultArgInFrom' ? { buildArgs: { TAG: '1' } } : {};
      expect(findings(text, opts)).toEqual(want);
    });
  }
  it('lints only the stages the target reaches, apart from file-wide rules', () => {
    expect(rules('FROM a AS unused\nCMD x\nFROM b\n')).toEqual([]);
  });
});

describe('# check= directive', () => {
  it('skip=Rule1,Rule2', () => {
    expect(rules('# check=skip=JSONArgsRecommended,StageNameCasing\nFROM a AS B\nCMD x\nMAINTAINER m\n')).toEqual(['MaintainerDeprecated']);
  });
  it('skip=all', () => {
    expect(rules('# check=skip=all\nFROM a AS B\nCMD x\n')).toEqual([]);
  });
  it('error=true turns findings into errors (the caller fails)', () => {
    const w = build('# check=error=true\nFROM a\nCMD x\n').warnings;
    expect(w).toEqual([{ rule: 'JSONArgsRecommended', message: expect.any(String), location: { file: 'Dockerfile', line: 3, endLine: 3 }, level: 'error' }]);
  });
  it('skip and error together', () => {
    const w = build('# check=skip=JSONArgsRecommended;error=true\nFROM a\nCMD x\nMAINTAINER y\n').warnings;
    expect(w.map((x) => [x.rule, x.level])).toEqual([['MaintainerDeprecated', 'error']]);
  });
  it('without error=true findings are warnings', () => {
    expect(build('FROM a\nCMD x\n').warnings[0].level).toBe('warning');
  });
});
