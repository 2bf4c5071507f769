// COPY and ADD: sources (context, stage, image, URL, git), their flags (--from, --chown,
// --chmod, --link, --parents, --exclude, --checksum, --keep-git-dir) and the history text.

import { posix } from 'node:path';
import { parseChmod } from '../fsutil/chmod.js';
import type { Parsed } from './instructions.js';
import { effectiveLink } from './link.js';
import { gitSourceProblem, isGitSource, parseGitRef } from './git-ref.js';
import { redactCredentials } from './urls.js';
import { processWord } from './shell-lex.js';
import type { CopyStep, SourceLocation } from './types.js';
import { type State, clone, envGet, type DispatchCtx } from './stage-state.js';

const reDigest: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

function isHTTPSource(src: string): boolean {
  return /^https?:\/\//.test(src) && !isGitSource(src);
}

export function dispatchCopy(
  ctx: DispatchCtx,
  st: State,
  c: Parsed & { kind: 'copy' | 'add' },
  base: { location: SourceLocation; original: string; fromOnBuild?: true },
  expand: (w: string) => string,
  reportUnmatched: (u: Set<string>) => void,
  failAt: (m: string) => never,
): CopyStep {
  const isAdd = c.kind === 'add';
  const name = isAdd ? 'ADD' : 'COPY';
  const chown = c.chown !== undefined && c.chown !== '' ? expand(c.chown) : undefined;
  const chmod = c.chmod !== undefined && c.chmod !== '' ? expand(c.chmod) : undefined;
  const checksum = c.checksum !== undefined && c.checksum !== '' ? expand(c.checksum) : undefined;
  const srcs = c.sources.map(expand);
  const destRaw = expand(c.dest);
  if (chmod !== undefined) {
    try {
      parseChmod(chmod);
    } catch (err) {
      failAt((err as Error).message);
    }
  }
  let link = false;
  try {
    link = effectiveLink(c.link, chown, chmod);
  } catch (err) {
    failAt(`${name} ${(err as Error).message}`);
  }
  const sources: string[] = [];
  const urls: string[] = [];
  for (const s of srcs) {
    const git = parseGitRef(s);
    if (git) {
      if (!isAdd) failAt("source can't be a git ref for COPY");
      const bad = gitSourceProblem(git);
      if (bad !== undefined) failAt(`${redactCredentials(s)}: ${bad}`);
      urls.push(s);
    } else if (isHTTPSource(s)) {
      if (!isAdd) failAt("source can't be a URL for COPY");
      urls.push(s);
    } else {
      sources.push(s);
    }
  }
  if (checksum !== undefined) {
    if (srcs.length !== 1) failAt("checksum can't be specified for multiple sources");
    if (isGitSource(srcs[0]!)) {
      // For git the checksum is the commit (or annotated tag) sha, or a prefix of it (BuildKit).
      if (!/^[0-9a-fA-F]+$/.test(checksum)) failAt(`invalid checksum ${checksum} for Git URL, expected hex commit hash`);
    } else {
      if (!isHTTPSource(srcs[0])) failAt("checksum can't be specified for non-HTTP(S) sources");
      const m = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):(.*)$/.exec(checksum);
      if (!m) failAt(`invalid checksum digest format: ${checksum}`);
      const len = reDigest[m[1]];
      if (len === undefined) failAt(`unsupported digest algorithm: ${m[1]}`);
      if (!new RegExp(`^[a-f0-9]{${len}}$`).test(m[2])) failAt(`invalid checksum digest format: ${checksum}`);
    }
  }
  const inline = c.contents.map((h) => {
    if (!h.expand) return { name: h.path, content: h.data };
    // BuildKit's ExpandRaw: a backslash-escaped lexer that leaves quotes as they are.
    let r;
    try {
      r = processWord(h.data, (k) => envGet(st.env, k), '\\', { skipProcessQuotes: true });
    } catch (e) {
      failAt((e as Error).message);
    }
    reportUnmatched(r.unmatched);
    return { name: h.path, content: r.result };
  });

  const workdir = st.config.workingDir || '/';
  const destIsDir = destRaw === '' || destRaw === '.' || destRaw.endsWith('/') || destRaw.endsWith('/.');
  let dest = destRaw.startsWith('/') ? posix.normalize(destRaw) : posix.join(workdir, destRaw === '' ? '.' : destRaw);
  if (dest.length > 1) dest = dest.replace(/\/+$/, '');

  let createdBy = name;
  if (c.parents) createdBy += ' --parents';
  if (chown !== undefined) createdBy += ' --chown=' + chown;
  if (chmod !== undefined) createdBy += ' --chmod=' + chmod;
  for (const s of srcs) createdBy += ' ' + redactCredentials(s);
  for (const h of c.contents) createdBy += ' <<' + h.path;
  createdBy += ' ' + destRaw + ' # buildkit';

  const from = ctx.froms.get(c) ?? { kind: 'context' as const };
  const step: CopyStep = {
    ...base,
    // What progress and errors show: the instruction as written, credentials in URLs redacted.
    original: urls.length > 0 ? redactCredentials(base.original) : base.original,
    kind: 'copy',
    instruction: name,
    from,
    sources,
    urls,
    inline,
    dest,
    destIsDir,
    workdir,
    link,
    parents: c.parents,
    exclude: [...c.exclude],
    keepGitDir: c.keepGitDir,
    unpack: isAdd ? (c.unpack ?? true) : false,
    user: st.config.user,
    env: clone(st.config.env),
    createdBy,
  };
  if (chown !== undefined) step.chown = chown;
  if (chmod !== undefined) step.chmod = chmod;
  if (checksum !== undefined) step.checksum = checksum;
  return step;
}
