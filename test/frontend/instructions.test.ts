// Every instruction and its flags, against the Dockerfile reference and BuildKit's behaviour.
import { describe, expect, it } from 'vitest';
import { build, one, steps, target, PATH_DEFAULT } from './helpers.js';
import { toImageConfig } from '../../src/image/config.js';

describe('RUN', () => {
  it('shell form runs through /bin/sh -c with the line as one argument', () => {
    const r = one('FROM a\nRUN echo "$HOME"  && ls\n', 'run');
    expect(r.args).toEqual(['/bin/sh', '-c', 'echo "$HOME"  && ls']);
    expect(r.shellForm).toBe(true);
    expect(r.workdir).toBe('/');
    expect(r.user).toBe('');
    expect(r.network).toBe('default');
    expect(r.security).toBe('sandbox');
    expect(r.mounts).toEqual([]);
  });
  it('exec form keeps the JSON array as argv', () => {
    const r = one('FROM a\nRUN ["/bin/echo", "a b", "$HOME"]\n', 'run');
    expect(r.args).toEqual(['/bin/echo', 'a b', '$HOME']);
    expect(r.shellForm).toBe(false);
  });
  it('invalid JSON falls back to the shell form', () => {
    expect(one("FROM a\nRUN ['single', 'quotes']\n", 'run').args).toEqual(['/bin/sh', '-c', "['single', 'quotes']"]);
  });
  it('uses the SHELL in effect', () => {
    expect(one('FROM a\nSHELL ["/bin/bash", "-eo", "pipefail", "-c"]\nRUN make\n', 'run').args).toEqual(['/bin/bash', '-eo', 'pipefail', '-c', 'make']);
  });
  it('uses the base image shell', () => {
    const r = one('FROM img\nRUN make\n', 'run', { baseImages: { img: { env: [], shell: ['pwsh', '-c'] } } });
    expect(r.args).toEqual(['pwsh', '-c', 'make']);
  });
  it('--network and --security', () => {
    const r = one('FROM a\nRUN --network=none --security=insecure true\n', 'run');
    expect(r.network).toBe('none');
    expect(r.security).toBe('insecure');
    expect(one('FROM a\nRUN --network=host true\n', 'run').network).toBe('host');
  });
});

describe('RUN heredocs (BuildKit dispatchRun)', () => {
  it('a single plain heredoc runs its content with the shell', () => {
    const r = one('FROM a\nRUN <<EOF\necho one\necho two\nEOF\n', 'run');
    expect(r.args).toEqual(['/bin/sh', '-c', 'echo one\necho two\n']);
    expect(r.mounts).toEqual([]);
  });
  it('<<- strips leading tabs from the content', () => {
    expect(one('FROM a\nRUN <<-EOF\n\techo one\n\t\techo two\n\tEOF\n', 'run').args).toEqual(['/bin/sh', '-c', 'echo one\necho two\n']);
  });
  it('a single heredoc with a shebang becomes a read-only file run directly', () => {
    const r = one('FROM a\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n', 'run');
    expect(r.args).toEqual(['/bin/sh', '-c', '/dev/pipes/EOF']);
    expect(r.mounts).toEqual([{ type: 'heredoc', target: '/dev/pipes/EOF', content: '#!/usr/bin/env python3\nprint(1)\n', mode: 0o755 }]);
  });
  it('a heredoc with other words is reconstituted and passed to the shell', () => {
    const r = one('FROM a\nRUN python3 <<EOF\nprint(1)\nEOF\n', 'run');
    expect(r.args).toEqual(['/bin/sh', '-c', 'python3 <<EOF\nprint(1)\nEOF']);
  });
  it('several heredocs on one line are reconstituted in order', () => {
    const r = one('FROM a\nRUN cat <<A > /a && cat <<"B" > /b\nx\nA\n$y\nB\n', 'run');
    expect(r.args).toEqual(['/bin/sh', '-c', 'cat <<A > /a && cat <<"B" > /b\nx\nA\n$y\nB']);
  });
  it('quoted delimiter', () => {
    expect(one("FROM a\nRUN <<'EOF'\necho $HOME\nEOF\n", 'run').args).toEqual(['/bin/sh', '-c', 'echo $HOME\n']);
  });
});

describe('RUN --mount', () => {
  const mount = (flag: string, extra = 'FROM base AS b\n') => one(`${extra}FROM a\nWORKDIR /w\nRUN --mount=${flag} true\n`, 'run').mounts[0];
  const cases: [string, string, unknown][] = [
    ['bind defaults: context, source /, read-only', 'target=/src', { type: 'bind', target: '/src', source: '/', from: { kind: 'context' }, readwrite: false }],
    [
      'bind rw from a stage with source',
      'type=bind,from=b,source=out,target=/o,rw',
      { type: 'bind', target: '/o', source: '/out', from: { kind: 'stage', index: 0 }, readwrite: true },
    ],
    [
      'bind from an image',
      'type=bind,from=alpine:3,target=/o,readwrite=true',
      { type: 'bind', target: '/o', source: '/', from: { kind: 'image', ref: 'alpine:3' }, readwrite: true },
    ],
    [
      'relative target is under the workdir',
      'type=bind,target=src',
      { type: 'bind', target: '/w/src', source: '/', from: { kind: 'context' }, readwrite: false },
    ],
    ['dst and src aliases', 'type=bind,src=x,dst=/y,ro', { type: 'bind', target: '/y', source: '/x', from: { kind: 'context' }, readwrite: false }],
    [
      'cache defaults',
      'type=cache,target=/root/.cache',
      { type: 'cache', target: '/root/.cache', id: '/root/.cache', sharing: 'shared', readonly: false, source: '/', mode: 0o755, uid: 0, gid: 0 },
    ],
    [
      'cache with options',
      'type=cache,id=go,target=/go,sharing=locked,mode=0700,uid=1000,gid=1001,ro',
      { type: 'cache', target: '/go', id: 'go', sharing: 'locked', readonly: true, source: '/', mode: 0o700, uid: 1000, gid: 1001 },
    ],
    [
      'cache seeded from a stage',
      'type=cache,target=/c,from=b,source=/seed',
      {
        type: 'cache',
        target: '/c',
        id: '/c',
        sharing: 'shared',
        readonly: false,
        source: '/seed',
        mode: 0o755,
        uid: 0,
        gid: 0,
        from: { kind: 'stage', index: 0 },
      },
    ],
    ['tmpfs', 'type=tmpfs,target=/tmp', { type: 'tmpfs', target: '/tmp' }],
    ['tmpfs with size', 'type=tmpfs,target=/tmp,size=64m', { type: 'tmpfs', target: '/tmp', size: 64 * 1024 * 1024 }],
    ['secret by id', 'type=secret,id=npmrc', { type: 'secret', id: 'npmrc', target: '/run/secrets/npmrc', required: false, mode: 0o400, uid: 0, gid: 0 }],
    [
      'secret id from the target basename',
      'type=secret,target=/root/.npmrc,required,mode=0440,uid=1',
      { type: 'secret', id: '.npmrc', target: '/root/.npmrc', required: true, mode: 0o440, uid: 1, gid: 0 },
    ],
    ['secret as env', 'type=secret,id=tok,env=TOKEN', { type: 'secret', id: 'tok', target: '', env: 'TOKEN', required: false, mode: 0o400, uid: 0, gid: 0 }],
    [
      'secret required=false',
      'type=secret,id=a,required=false',
      { type: 'secret', id: 'a', target: '/run/secrets/a', required: false, mode: 0o400, uid: 0, gid: 0 },
    ],
    ['ssh defaults', 'type=ssh', { type: 'ssh', id: 'default', target: '/run/buildkit/ssh_agent.0', required: false, mode: 0o600, uid: 0, gid: 0 }],
    [
      'ssh with id and target',
      'type=ssh,id=gh,target=/s.sock,required=true',
      { type: 'ssh', id: 'gh', target: '/s.sock', required: true, mode: 0o600, uid: 0, gid: 0 },
    ],
    ['quoted CSV field', '"type=bind,target=/a,source=x"', { type: 'bind', target: '/a', source: '/x', from: { kind: 'context' }, readwrite: false }],
  ];
  for (const [name, flag, want] of cases) it(name, () => expect(mount(flag)).toEqual(want));

  it('several ssh mounts get numbered sockets', () => {
    const r = one('FROM a\nRUN --mount=type=ssh --mount=type=ssh,id=b true\n', 'run');
    expect(r.mounts.map((m) => (m as { target: string }).target)).toEqual(['/run/buildkit/ssh_agent.0', '/run/buildkit/ssh_agent.1']);
  });
  it('mount options expand variables (except from)', () => {
    const r = one('FROM a\nARG CACHE=/cache\nENV ID=x\nRUN --mount=type=cache,target=$CACHE,id=${ID}-1 true\n', 'run');
    expect(r.mounts[0]).toMatchObject({ target: '/cache', id: 'x-1' });
  });
  it('mount from a stage adds a dependency', () => {
    const g = build('FROM a AS dep\nFROM b\nRUN --mount=from=dep,target=/d true\n');
    expect(g.stages.map((s) => s.index)).toEqual([0, 1]);
    expect(target(g).dependsOn).toEqual([0]);
  });
});

describe('CMD and ENTRYPOINT', () => {
  it('CMD shell form gets the shell', () => {
    expect(one('FROM a\nCMD echo hi\n', 'cmd').cmd).toEqual(['/bin/sh', '-c', 'echo hi']);
  });
  it('CMD exec form', () => {
    const g = build('FROM a\nCMD ["nginx", "-g", "daemon off;"]\n');
    expect(target(g).config.cmd).toEqual(['nginx', '-g', 'daemon off;']);
  });
  it('ENTRYPOINT shell form becomes SHELL + command', () => {
    const g = build('FROM a\nSHELL ["/bin/bash", "-c"]\nENTRYPOINT exec top -b\n');
    expect(target(g).config.entrypoint).toEqual(['/bin/bash', '-c', 'exec top -b']);
  });
  it('ENTRYPOINT resets an inherited CMD', () => {
    const g = build('FROM img\nENTRYPOINT ["/e"]\n', { baseImages: { img: { env: [], cmd: ['sh'] } } });
    expect(target(g).config.cmd).toBeUndefined();
    expect(target(g).config.entrypoint).toEqual(['/e']);
  });
  it('ENTRYPOINT keeps a CMD set in the same stage, before or after', () => {
    expect(target(build('FROM a\nCMD ["x"]\nENTRYPOINT ["/e"]\n')).config.cmd).toEqual(['x']);
    expect(target(build('FROM a\nENTRYPOINT ["/e"]\nCMD ["y"]\n')).config.cmd).toEqual(['y']);
  });
  it('empty exec-form ENTRYPOINT', () => {
    expect(target(build('FROM a\nENTRYPOINT []\n')).config.entrypoint).toEqual([]);
  });
});

describe('ENV, LABEL, ARG, MAINTAINER', () => {
  it('ENV k=v pairs with quotes and escapes', () => {
    const e = one('FROM a\nENV A=1 B="two words" C=three\\ words D=\n', 'env');
    expect(e.vars).toEqual([
      ['A', '1'],
      ['B', 'two words'],
      ['C', 'three words'],
      ['D', ''],
    ]);
  });
  it('legacy ENV k v takes the rest of the line', () => {
    expect(one('FROM a\nENV GREETING hello   big world\n', 'env').vars).toEqual([['GREETING', 'hello   big world']]);
  });
  it('ENV sets the config env, replacing in place', () => {
    const g = build('FROM img\nENV B=2 A=9\n', { baseImages: { img: { env: ['A=1', 'PATH=/bin'] } } });
    expect(target(g).config.env).toEqual([
      ['A', '9'],
      ['PATH', '/bin'],
      ['B', '2'],
    ]);
  });
  it('LABEL pairs and legacy form', () => {
    const g = build('FROM a\nLABEL "com.example.v"="1.0" multi="a b" \\\n  x=y\nLABEL old form\n');
    expect(target(g).config.labels).toEqual({ 'com.example.v': '1.0', multi: 'a b', x: 'y', old: 'form' });
  });
  it('ARG with several names and defaults', () => {
    expect(one('FROM a\nARG A B=2 C="x y"\n', 'arg').args).toEqual([{ name: 'A' }, { name: 'B', value: '2' }, { name: 'C', value: 'x y' }]);
  });
  it('MAINTAINER sets the author', () => {
    expect(target(build('FROM a\nMAINTAINER Jane <j@x>\n')).config.author).toBe('Jane <j@x>');
  });
});

describe('EXPOSE, VOLUME, USER, WORKDIR, SHELL, STOPSIGNAL', () => {
  it('EXPOSE ports, ranges and protocols', () => {
    const g = build('FROM a\nEXPOSE 80 443/tcp 53/udp 7000-7002/sctp 8080/TCP\n');
    expect(target(g).config.exposedPorts).toEqual(['443/tcp', '53/udp', '7000/sctp', '7001/sctp', '7002/sctp', '80/tcp', '8080/tcp']);
  });
  it('EXPOSE merges with the base image ports', () => {
    const g = build('FROM img\nEXPOSE 80\n', { baseImages: { img: { env: [], exposedPorts: ['22/tcp', '80/tcp'] } } });
    expect(target(g).config.exposedPorts).toEqual(['22/tcp', '80/tcp']);
  });
  it('VOLUME JSON and plain forms', () => {
    expect(target(build('FROM a\nVOLUME ["/data", "/var/log x"]\nVOLUME /a /b\n')).config.volumes).toEqual(['/a', '/b', '/data', '/var/log x']);
  });
  it('USER name, uid, uid:gid', () => {
    for (const u of ['app', '1000', '1000:1000', 'app:staff']) expect(target(build(`FROM a\nUSER ${u}\n`)).config.user).toBe(u);
  });
  it('USER applies to later RUN and WORKDIR', () => {
    const s = steps('FROM a\nUSER 1000\nWORKDIR /app\nRUN id\n');
    expect(s[1]).toMatchObject({ kind: 'workdir', user: '1000' });
    expect(s[2]).toMatchObject({ kind: 'run', user: '1000', workdir: '/app' });
  });
  it('WORKDIR is relative to the previous one and cleaned', () => {
    const s = steps('FROM a\nWORKDIR /a\nWORKDIR b\nWORKDIR ../c/./d/\nRUN pwd\n');
    expect(s.filter((x) => x.kind === 'workdir').map((x) => (x as { path: string }).path)).toEqual(['/a', '/a/b', '/a/c/d']);
    expect(s[3]).toMatchObject({ kind: 'run', workdir: '/a/c/d' });
  });
  it('WORKDIR relative to the base image workdir', () => {
    expect(one('FROM img\nWORKDIR sub\n', 'workdir', { baseImages: { img: { env: [], workingDir: '/base' } } }).path).toBe('/base/sub');
  });
  it('SHELL sets the config shell', () => {
    expect(target(build('FROM a\nSHELL ["cmd", "/S", "/C"]\n')).config.shell).toEqual(['cmd', '/S', '/C']);
  });
  it('the default shell is /bin/sh -c', () => {
    expect(target(build('FROM a\n')).config.shell).toEqual(['/bin/sh', '-c']);
  });
  it('STOPSIGNAL names and numbers', () => {
    for (const s of ['SIGTERM', 'TERM', 'sigkill', '9', 'SIGRTMIN+3']) expect(target(build(`FROM a\nSTOPSIGNAL ${s}\n`)).config.stopSignal).toBe(s);
  });
});

describe('HEALTHCHECK', () => {
  it('all options, durations parsed', () => {
    const h = one(
      'FROM a\nHEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=2s --retries=3 CMD curl -f http://localhost/\n',
      'healthcheck',
    ).healthcheck;
    expect(h).toEqual({
      test: ['CMD-SHELL', 'curl -f http://localhost/'],
      intervalNs: 30e9,
      timeoutNs: 90e9,
      startPeriodNs: 5e8,
      startIntervalNs: 2e9,
      retries: 3,
    });
  });
  it('exec form', () => {
    expect(one('FROM a\nHEALTHCHECK CMD ["/check", "-v"]\n', 'healthcheck').healthcheck).toEqual({ test: ['CMD', '/check', '-v'] });
  });
  it('NONE', () => {
    expect(target(build('FROM a\nHEALTHCHECK NONE\n')).config.healthcheck).toEqual({ test: ['NONE'] });
  });
  it('zero durations are unset', () => {
    expect(one('FROM a\nHEALTHCHECK --interval=0s CMD true\n', 'healthcheck').healthcheck).toEqual({ test: ['CMD-SHELL', 'true'] });
  });
});

describe('ONBUILD', () => {
  it('is stored in the config, not run', () => {
    const g = build('FROM a\nONBUILD RUN echo hi\nONBUILD COPY . /app\n');
    expect(target(g).config.onBuild).toEqual(['RUN echo hi', 'COPY . /app']);
    expect(target(g).steps.filter((s) => s.kind === 'run')).toEqual([]);
  });
  it('runs the base image triggers first, marked fromOnBuild', () => {
    const s = steps('FROM img\nRUN echo mine\n', { baseImages: { img: { env: [], onBuild: ['RUN echo trigger', 'ENV T=1'] } } });
    expect(s.map((x) => [x.kind, !!x.fromOnBuild])).toEqual([
      ['run', true],
      ['env', true],
      ['run', false],
    ]);
    expect(s[0]).toMatchObject({ args: ['/bin/sh', '-c', 'echo trigger'], location: { line: 1 } });
  });
  it('the base image triggers are not inherited', () => {
    expect(target(build('FROM img\n', { baseImages: { img: { env: [], onBuild: ['RUN x'] } } })).config.onBuild).toEqual([]);
  });
  it('runs the triggers of a base stage', () => {
    const g = build('FROM a AS base\nONBUILD RUN echo t\nFROM base\nRUN echo mine\n');
    expect(target(g).steps.map((x) => [x.kind, !!x.fromOnBuild])).toEqual([
      ['run', true],
      ['run', false],
    ]);
    expect(target(g).config.onBuild).toEqual([]);
  });
  it('an ONBUILD COPY --from of a base image adds the dependency', () => {
    const g = build('FROM a AS assets\nFROM img\n', { baseImages: { img: { env: [], onBuild: ['COPY --from=assets /x /y'] } } });
    expect(g.stages.map((s) => s.index)).toEqual([0, 1]);
  });
  it('a bad trigger is reported at the FROM line', () => {
    expect(() => build('FROM a\nFROM img\n', { baseImages: { img: { env: [], onBuild: ['BOGUS x'] } } })).toThrow(/^Dockerfile:2: .*BOGUS/);
  });
});

describe('COPY and ADD', () => {
  it('sources, destination under the workdir, defaults', () => {
    const c = one('FROM a\nWORKDIR /app\nCOPY a.txt b/ ./\n', 'copy');
    expect(c).toMatchObject({
      instruction: 'COPY',
      from: { kind: 'context' },
      sources: ['a.txt', 'b/'],
      urls: [],
      inline: [],
      dest: '/app',
      destIsDir: true,
      workdir: '/app',
      link: false,
      parents: false,
      exclude: [],
      keepGitDir: false,
      unpack: false,
      user: '',
    });
    expect(c.chown).toBeUndefined();
  });
  it('destination forms', () => {
    const d = (dst: string) => {
      const c = one(`FROM a\nWORKDIR /w\nCOPY x ${dst}\n`, 'copy');
      return [c.dest, c.destIsDir];
    };
    expect(d('/abs')).toEqual(['/abs', false]);
    expect(d('/abs/')).toEqual(['/abs', true]);
    expect(d('rel')).toEqual(['/w/rel', false]);
    expect(d('.')).toEqual(['/w', true]);
    expect(d('sub/.')).toEqual(['/w/sub', true]);
    expect(d('../up')).toEqual(['/up', false]);
  });
  it('JSON form for paths with spaces', () => {
    expect(one('FROM a\nCOPY ["my file", "other file", "/dst dir/"]\n', 'copy')).toMatchObject({
      sources: ['my file', 'other file'],
      dest: '/dst dir',
      destIsDir: true,
    });
  });
  it('all COPY flags', () => {
    const c = one('FROM a AS s\nFROM b\nCOPY --from=s --chown=app:app --chmod=0640 --link --parents --exclude=*.md --exclude=tmp/ /src /dst\n', 'copy');
    expect(c).toMatchObject({ from: { kind: 'stage', index: 0 }, chown: 'app:app', chmod: '0640', link: false, parents: true, exclude: ['*.md', 'tmp/'] });
    // --link itself parses; only --chmod makes it a plain COPY (test/frontend/link.test.ts).
    expect(one('FROM a AS s\nFROM b\nCOPY --from=s --chown=1:1 --link /src /dst\n', 'copy').link).toBe(true);
  });
  it('--from by stage index, by name (any case), by image', () => {
    expect(one('FROM a AS Build\nFROM b\nCOPY --from=0 /x /y\n', 'copy').from).toEqual({ kind: 'stage', index: 0 });
    expect(one('FROM a AS build\nFROM b\nCOPY --from=BUILD /x /y\n', 'copy').from).toEqual({ kind: 'stage', index: 0 });
    const g = build('FROM b\nCOPY --from=nginx:1.25 /etc/nginx /n\n');
    expect(target(g).steps[0]).toMatchObject({ from: { kind: 'image', ref: 'nginx:1.25' } });
    expect(g.unresolvedImages).toEqual(['b', 'nginx:1.25']);
  });
  it('ADD URLs, git, checksum, keep-git-dir, unpack', () => {
    const sum = 'sha256:' + 'a'.repeat(64);
    const a = one(`FROM a\nADD --checksum=${sum} https://example.com/f.tgz /f/\n`, 'copy');
    expect(a).toMatchObject({ instruction: 'ADD', sources: [], urls: ['https://example.com/f.tgz'], checksum: sum, unpack: true });
    const g = one('FROM a\nADD --keep-git-dir=true https://github.com/o/r.git#v1 /src\n', 'copy');
    expect(g).toMatchObject({ urls: ['https://github.com/o/r.git#v1'], keepGitDir: true });
    expect(one('FROM a\nADD --unpack=false x.tar /x/\n', 'copy').unpack).toBe(false);
    expect(one('FROM a\nADD x.tar /x/\n', 'copy')).toMatchObject({ sources: ['x.tar'], unpack: true });
  });
  it('heredoc sources', () => {
    const c = one('FROM a\nENV NAME=kiln\nCOPY <<one.txt <<"two.txt" <<-three /etc/\nhello $NAME\none.txt\n$NAME\ntwo.txt\n\tindented\n\tthree\n', 'copy');
    expect(c.inline).toEqual([
      { name: 'one.txt', content: 'hello kiln\n' },
      { name: 'two.txt', content: '$NAME\n' },
      { name: 'three', content: 'indented\n' },
    ]);
    expect(c.sources).toEqual([]);
    expect(c.dest).toBe('/etc');
  });
  it('COPY inherits the user for ownership lookups', () => {
    expect(one('FROM a\nUSER 1000\nCOPY x /y\n', 'copy').user).toBe('1000');
  });
});

describe('image config of a stage', () => {
  it('scratch gets PATH and the target platform', () => {
    const c = target(build('FROM scratch\n', { targetPlatform: { os: 'linux', architecture: 'arm64' } })).config;
    expect(c).toMatchObject({ env: [['PATH', PATH_DEFAULT]], workingDir: '/', user: '', os: 'linux', architecture: 'arm64', onBuild: [], labels: {} });
  });
  it('scratch starts in WorkingDir "/" (BuildKit emptyImage); an image without one has none; a stage FROM a scratch stage keeps "/"', () => {
    expect(target(build('FROM scratch\nENV A=1\n')).config.workingDir).toBe('/');
    expect(target(build('FROM img\n', { baseImages: { img: { env: [] } } })).config.workingDir).toBe('');
    expect(target(build('FROM scratch AS s\nFROM s\nENV B=1\n')).config.workingDir).toBe('/');
    expect(one('FROM scratch\nWORKDIR app\n', 'workdir').path).toBe('/app');
  });
  it('Shell is recorded once set, even to the default /bin/sh -c (SHELL or the base image)', () => {
    expect(target(build('FROM scratch\n')).config.shellSet).toBeUndefined();
    const explicit = target(build('FROM scratch\nSHELL ["/bin/sh", "-c"]\n')).config;
    expect(explicit).toMatchObject({ shell: ['/bin/sh', '-c'], shellSet: true });
    expect(toImageConfig(explicit, [], [], '').config!.Shell).toEqual(['/bin/sh', '-c']);
    expect(toImageConfig(target(build('FROM scratch\n')).config, [], [], '').config!.Shell).toBeUndefined();
    const inherited = target(build('FROM img\n', { baseImages: { img: { env: [], shell: ['/bin/sh', '-c'] } } })).config;
    expect(toImageConfig(inherited, [], [], '').config!.Shell).toEqual(['/bin/sh', '-c']);
    const fromStage = target(build('FROM scratch AS s\nSHELL ["/bin/bash", "-c"]\nFROM s\nCMD run\n')).config;
    expect(fromStage).toMatchObject({ shell: ['/bin/bash', '-c'], shellSet: true, cmd: ['/bin/bash', '-c', 'run'] });
  });
  it('scratch takes the target platform even with FROM --platform (BuildKit emptyImage(targetPlatform))', () => {
    const c = target(build('FROM --platform=linux/arm/v7 scratch\n')).config;
    expect(c).toMatchObject({ os: 'linux', architecture: 'amd64' });
    expect(c.variant).toBeUndefined();
    const viaArg = target(build('FROM --platform=$TARGETPLATFORM scratch\n', { buildArgs: { TARGETPLATFORM: 'linux/arm64' } }));
    expect(viaArg.platform).toBe('linux/arm64');
    expect(viaArg.config.architecture).toBe('amd64');
    // An image base still follows --platform.
    expect(target(build('FROM --platform=linux/arm64 img\n')).config.architecture).toBe('arm64');
  });
  it('scratch config as exported: Env PATH, WorkingDir "/", no Cmd', () => {
    const c = toImageConfig(target(build('FROM scratch\n')).config, [], [], '').config;
    expect(c).toEqual({ Env: ['PATH=' + PATH_DEFAULT], WorkingDir: '/' });
  });
  it('inherits the base image config', () => {
    const img = {
      env: ['PATH=/x', 'LANG=C'],
      cmd: ['sh'],
      workingDir: '/srv',
      user: 'www',
      labels: { a: '1' },
      stopSignal: 'SIGQUIT',
      os: 'linux',
      architecture: 'arm',
      variant: 'v7',
      volumes: ['/v'],
    };
    const c = target(build('FROM img\nLABEL b=2\n', { baseImages: { img } })).config;
    expect(c).toMatchObject({
      env: [
        ['PATH', '/x'],
        ['LANG', 'C'],
      ],
      cmd: ['sh'],
      workingDir: '/srv',
      user: 'www',
      labels: { a: '1', b: '2' },
      stopSignal: 'SIGQUIT',
      architecture: 'arm',
      variant: 'v7',
      volumes: ['/v'],
    });
  });
  it('a stage from a stage inherits its final config', () => {
    const g = build('FROM a AS one\nENV X=1\nWORKDIR /one\nUSER u\nFROM one\nRUN env\n');
    expect(target(g).config).toMatchObject({
      env: [
        ['PATH', PATH_DEFAULT],
        ['X', '1'],
      ],
      workingDir: '/one',
      user: 'u',
    });
    expect(target(g).base).toEqual({ kind: 'stage', index: 0 });
  });
});

describe('COPY heredoc expansion keeps quotes (BuildKit ExpandRaw)', () => {
  it('expands variables but leaves quotes and unknown text alone', () => {
    const c = one('FROM a\nARG V=1\nCOPY <<EOF /f\necho "v=$V" \'${V}\'\nEOF\n', 'copy');
    expect(c.inline).toEqual([{ name: 'EOF', content: 'echo "v=1" \'1\'\n' }]);
  });
});
