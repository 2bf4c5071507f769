// createdBy: the history text BuildKit writes for each instruction (dockerfile2llb commitToHistory).
import { describe, expect, it } from 'vitest';
import { steps } from './helpers.js';

const created = (text: string, opts = {}) => steps(text, opts).map((s) => s.createdBy);

describe('history texts', () => {
  const cases: [string, string, string][] = [
    ['RUN shell form', 'RUN make', 'RUN /bin/sh -c make # buildkit'],
    ['RUN exec form', 'RUN ["make", "all"]', 'RUN make all # buildkit'],
    ['COPY', 'COPY file /x', 'COPY file /x # buildkit'],
    ['COPY with flags (not --from or --link)', 'COPY --link --chown=1:2 --chmod=644 a b /d/', 'COPY --chown=1:2 --chmod=644 a b /d/ # buildkit'],
    ['COPY --parents', 'COPY --parents a/./b /d/', 'COPY --parents a/./b /d/ # buildkit'],
    ['ADD url', 'ADD https://e.org/f /f', 'ADD https://e.org/f /f # buildkit'],
    ['ENV', 'ENV A=b C="d e"', 'ENV A=b C=d e'],
    ['ENV legacy', 'ENV A b c', 'ENV A=b c'],
    ['LABEL', 'LABEL a=1', 'LABEL a=1'],
    // Absolute: as written (BuildKit's system.NormalizePath cleans only what it joins).
    ['WORKDIR absolute', 'WORKDIR /app/../srv//', 'WORKDIR /app/../srv//'],
    ['USER', 'USER 1000:1000', 'USER 1000:1000'],
    ['CMD exec', 'CMD ["sh"]', 'CMD ["sh"]'],
    ['CMD shell', 'CMD echo "hi"', 'CMD ["/bin/sh" "-c" "echo \\"hi\\""]'],
    ['ENTRYPOINT', 'ENTRYPOINT ["/e", "a\\tb"]', 'ENTRYPOINT ["/e" "a\\tb"]'],
    ['EXPOSE', 'EXPOSE 8080 80/udp', 'EXPOSE map[80/udp:{} 8080/tcp:{}]'],
    ['VOLUME', 'VOLUME /a /b', 'VOLUME [/a /b]'],
    ['SHELL', 'SHELL ["/bin/bash", "-c"]', 'SHELL [/bin/bash -c]'],
    ['STOPSIGNAL', 'STOPSIGNAL SIGINT', 'STOPSIGNAL SIGINT'],
    ['MAINTAINER', 'MAINTAINER me', 'MAINTAINER me'],
    ['ARG', 'ARG A B=2', 'ARG A B=2'],
    [
      'HEALTHCHECK',
      'HEALTHCHECK --interval=5m --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1',
      'HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "5m0s" "3s" "0s" "0s" \'\\x03\'}',
    ],
    [
      'HEALTHCHECK durations',
      'HEALTHCHECK --interval=1h1m1.5s --start-period=1500us CMD ["x"]',
      'HEALTHCHECK &{["CMD" "x"] "1h1m1.5s" "0s" "1.5ms" "0s" \'\\x00\'}',
    ],
    ['HEALTHCHECK NONE', 'HEALTHCHECK NONE', 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}'],
    ['ONBUILD writes no history', 'ONBUILD RUN x', ''],
  ];
  for (const [name, line, want] of cases) it(name, () => expect(created(`FROM a\n${line}\n`)).toEqual([want]));

  it('WORKDIR: a relative path is joined and cleaned, an empty one keeps the workdir as written', () => {
    expect(created('FROM a\nWORKDIR /app//\nWORKDIR ../srv/./x/\n')).toEqual(['WORKDIR /app//', 'WORKDIR /srv/x']);
    expect(created('FROM a\nWORKDIR /app//\nWORKDIR $UNSET\n')).toEqual(['WORKDIR /app//', 'WORKDIR /app//']);
  });
  it('RUN with build args in scope gets the |N K=V prefix', () => {
    expect(created('FROM a\nARG A=1 B\nRUN make\n').pop()).toBe('RUN |2 A=1 B= /bin/sh -c make # buildkit');
  });
  it('the |N prefix shows the value in the RUN environment (ENV overriding an ARG)', () => {
    expect(created('FROM a\nARG V=arg\nENV V=env\nRUN x\n').pop()).toBe('RUN |1 V=env /bin/sh -c x # buildkit');
  });
  it('heredoc sources appear as <<name', () => {
    expect(created('FROM a\nCOPY <<EOF /f\nx\nEOF\n')).toEqual(['COPY <<EOF /f # buildkit']);
  });
  it('heredoc RUN shows the content passed to the shell', () => {
    expect(created('FROM a\nRUN <<EOF\necho a\nEOF\n')).toEqual(['RUN /bin/sh -c echo a\n # buildkit']);
  });
});
