// Which instructions expand variables, in which arguments, with which environment.
import { describe, expect, it } from 'vitest';
import { build, one, steps, target } from './helpers.js';

const pre = 'FROM a\nARG A=arg-a\nENV E=env-e\n';
const lastEnv = (t: string) =>
  (
    steps(t)
      .filter((s) => s.kind === 'env')
      .pop() as { vars: [string, string][] }
  ).vars;

describe('variable substitution', () => {
  const cases: [string, string, (t: string) => unknown, unknown][] = [
    ['ENV keys and values', 'ENV K_$A=$E', (t) => lastEnv(t), [['K_arg-a', 'env-e']]],
    [
      'ENV pairs see the values before the instruction',
      'ENV E=new F=$E',
      (t) => lastEnv(t),
      [
        ['E', 'new'],
        ['F', 'env-e'],
      ],
    ],
    ['LABEL keys and values', 'LABEL "l.$A"="${E}"', () => target(build(pre + 'LABEL "l.$A"="${E}"\n')).config.labels, { 'l.arg-a': 'env-e' }],
    ['WORKDIR', 'WORKDIR /w/$A', (t) => one(t, 'workdir').path, '/w/arg-a'],
    ['USER', 'USER ${E}', (t) => one(t, 'user').user, 'env-e'],
    ['VOLUME', 'VOLUME ["/v/$A"]', (t) => one(t, 'volume').volumes, ['/v/arg-a']],
    ['EXPOSE', 'ENV P=80\nEXPOSE $P/udp ${Q:-443}', (t) => one(t, 'expose').ports, ['443/tcp', '80/udp']],
    ['STOPSIGNAL', 'ENV S=SIGINT\nSTOPSIGNAL $S', (t) => one(t, 'stopsignal').signal, 'SIGINT'],
    [
      'COPY sources, destination, --chown and --chmod',
      'ENV M=0755\nCOPY --chown=$E --chmod=$M $A/x /d/$E/',
      (t) => {
        const c = one(t, 'copy');
        return [c.sources, c.dest, c.chown, c.chmod];
      },
      [['arg-a/x'], '/d/env-e', 'env-e', '0755'],
    ],
    ['ADD --checksum', `ENV SUM=sha256:${'b'.repeat(64)}\nADD --checksum=$SUM https://x.org/f /f`, (t) => one(t, 'copy').checksum, `sha256:${'b'.repeat(64)}`],
    ['RUN is not expanded by kiln', 'RUN echo $A $E', (t) => one(t, 'run').args, ['/bin/sh', '-c', 'echo $A $E']],
    ['CMD is not expanded', 'CMD echo $E', (t) => one(t, 'cmd').cmd, ['/bin/sh', '-c', 'echo $E']],
    ['ENTRYPOINT is not expanded', 'ENTRYPOINT ["$E"]', (t) => one(t, 'entrypoint').entrypoint, ['$E']],
    ['HEALTHCHECK is not expanded', 'HEALTHCHECK CMD check $E', (t) => one(t, 'healthcheck').healthcheck.test, ['CMD-SHELL', 'check $E']],
    ['ONBUILD is not expanded', 'ONBUILD RUN echo $E', (t) => one(t, 'onbuild').trigger, 'RUN echo $E'],
    ['MAINTAINER is not expanded', 'MAINTAINER $E', (t) => one(t, 'maintainer').author, '$E'],
    ['SHELL is not expanded', 'SHELL ["$E"]', (t) => one(t, 'shell').shell, ['$E']],
    ['COPY --exclude is not expanded', 'COPY --exclude=$A x /y', (t) => one(t, 'copy').exclude, ['$A']],
  ];
  for (const [name, line, get, want] of cases) {
    it(name, () => expect(get(pre + line + '\n')).toEqual(want));
  }

  it('base image env is visible to expansion', () => {
    expect(one('FROM img\nWORKDIR $HOME/x\n', 'workdir', { baseImages: { img: { env: ['HOME=/root'] } } }).path).toBe('/root/x');
  });
  it('build args in scope reach RunStep.buildArgs with their values', () => {
    const r = one('FROM a\nARG V1 V2=d\nRUN x\n', 'run', { buildArgs: { V1: 'given' } });
    expect(r.buildArgs).toEqual([
      ['V1', 'given'],
      ['V2', 'd'],
    ]);
  });
  it('the escape directive applies to expansion', () => {
    expect(one('# escape=`\nFROM a\nENV A=x`$y\n', 'env').vars).toEqual([['A', 'x$y']]);
  });
  it('expansion errors carry the line', () => {
    expect(() => build('FROM a\n\nENV A=${UNSET:?must be set}\n')).toThrow(/^Dockerfile:3: /);
  });
  it('a stage inherits the expansion environment of its base stage', () => {
    const s = steps('FROM a AS b\nENV D=/data\nFROM b\nWORKDIR $D\n');
    expect(s[0]).toMatchObject({ kind: 'workdir', path: '/data' });
  });
});
