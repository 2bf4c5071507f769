// COPY and ADD as BuildKit runs them (its Dockerfile frontend plus fsutil's copier), from a source
// root into a destination rootfs directory.
//
// Sources: cleaned inside the source root ("../../x" is "/x" of the root), wildcards per path element
// with Go's filepath.Match syntax, each source followed through symlinks inside the root. A plain
// source that does not exist is an error ("not found"); a wildcard that matches nothing copies
// nothing, as BuildKit's Dockerfile frontend allows empty wildcards (its parent directory must exist),
// and then does not create the destination either.
//
// Destination: resolved inside the rootfs, never out of it. A source directory copies its contents;
// a file goes to `dest` itself unless `dest` is (or is written as) a directory, then to dest/<name>.
// More than one source item to a destination that is not a directory are copied there in turn, the
// last one winning, as BuildKit does. Missing parents are created (0755, owned by the --chown user
// or root).

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { redactCredentials } from '../frontend/urls.js';
import { cleanPath } from '../context/gopath.js';
import { PatternMatcher } from '../context/patterns.js';
import { isInside, mkdirAllInRoot, resolveInRootSync } from '../fsutil/rootpath.js';
import { detectArchive, extractTar } from './archive.js';
import { ExpandError, expandSource, type EntryKind } from './expand.js';
import { download, isHttpUrl } from './download.js';
import { parseGitRef, type GitRef } from '../frontend/git-ref.js';
import { checkoutGit, resolveGit } from './git.js';
import { applyMeta, clearForFile } from './meta.js';
import { lstatOrUndefinedSync } from '../fsutil/stat.js';
import { parseChmod, resolveChown, type Owner } from './owner.js';
import { openSource, type SourceView } from './source.js';
import { TreeCopier } from './tree.js';
import { CopyError, emptySummary, type CopyOp, type CopySummary } from './types.js';

/** One thing to copy, after wildcard expansion. */
type Item =
  | {
      kind: 'path';
      /** As named/matched, relative to the source root, not followed (its base is the copy's name). */
      rel: string;
      /** Followed through symlinks. */
      resolved: string;
      /** --parents: the part of the path to recreate under the destination. */
      keep: string;
      /** The root-relative directory `keep` is relative to (for the parents' metadata). */
      keepBase: string;
      /** What --exclude matches the item itself against ("" = the user named it: never excluded). */
      excludeRel: string;
    }
  | { kind: 'inline'; name: string; content: string }
  | { kind: 'url'; url: string }
  | { kind: 'git'; url: string; git: GitRef };

/** A relative path that path.relative would change: empty, a "." or ".." element, "//", a trailing "/". */
const UNNORMAL = /^$|(^|\/)\.\.?(\/|$)|\/\/|\/$/;

export async function copy(op: CopyOp): Promise<CopySummary> {
  const { spec } = op;
  const loc = spec.location;
  const fail = (msg: string, cause?: unknown): never => {
    throw new CopyError(msg, loc, cause !== undefined ? { cause } : undefined);
  };
  const wrap = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof CopyError) throw err;
      return fail(`${spec.instruction} ${what}: ${(err as Error).message}`, err);
    }
  };

  const urls = spec.urls ?? [];
  const inline = spec.inline ?? [];
  const destRoot = path.resolve(op.destRoot);
  const dest = cleanPath('/' + spec.dest);
  const summary = emptySummary();

  const gitRefs = new Map<string, GitRef>();
  for (const u of urls) {
    const g = parseGitRef(u);
    if (g) {
      if (!op.git) fail(`ADD of a git repository needs a git source here: ${redactCredentials(u)}`);
      gitRefs.set(u, g);
    } else if (!isHttpUrl(u)) fail(`unsupported URL ${redactCredentials(u)}: only http and https are supported`);
  }
  if (spec.checksum !== undefined && (urls.length === 0 || spec.sources.length > 0)) {
    fail(`--checksum can only be used with http(s) and git sources`);
  }

  const chmod = spec.chmod !== undefined ? await wrap('--chmod', async () => parseChmod(spec.chmod!)) : undefined;
  // An empty --chown (an ARG that expands to nothing) is no --chown: BuildKit's frontend skips it.
  const chown = spec.chown !== undefined && spec.chown !== '' ? await wrap(`--chown=${spec.chown}`, () => resolveChown(destRoot, spec.chown!)) : undefined;
  const exclude = spec.exclude && spec.exclude.length > 0 ? await wrap('--exclude', async () => new PatternMatcher(spec.exclude!)) : undefined;

  // Expand the sources.
  let view: SourceView | undefined;
  const items: Item[] = [];
  if (spec.sources.length > 0) {
    if (!op.source) fail(`${spec.instruction} has sources but no source root was given`);
    view = await wrap('source', () => openSource(op.source!));
    for (const raw of spec.sources) {
      items.push(...(await wrap(raw, async () => expandItems(view!, raw, spec.parents ?? false, op.source!.kind))));
    }
  }
  for (const f of inline) items.push({ kind: 'inline', name: f.name, content: f.content });
  for (const u of urls) {
    const g = gitRefs.get(u);
    items.push(g ? { kind: 'git', url: u, git: g } : { kind: 'url', url: u });
  }

  // Several items and a destination without a trailing slash are not an error in BuildKit (that
  // rule is the classic builder's): each source is one copy action to the same path, so with no
  // directory there the first makes a file (or directory) and the next ones copy over it.

  // Make the destination (or its parent) exist inside the rootfs. Not when nothing is to be copied
  // (only wildcards, all matching nothing): BuildKit's copy action then returns before it creates
  // the destination, so no directory appears.
  const created: Owner = chown ?? { uid: 0, gid: 0 };
  if (items.length > 0) {
    await wrap(`destination ${dest}`, () => mkdirAllInRoot(destRoot, spec.destIsDir ? dest : path.posix.dirname(dest), 0o755, created));
  }

  // The target as the image sees it. Called twice per entry of a copy (an incremental COPY of
  // 9,000 files spent ~25 ms in path.relative): a plain, normalised path below the root is sliced.
  const below = destRoot.endsWith('/') ? destRoot : `${destRoot}/`;
  const show = (host: string) =>
    host.startsWith(below) && !UNNORMAL.test(host.slice(below.length))
      ? host.slice(below.length - 1)
      : '/' + path.relative(destRoot, host).split(path.sep).join('/');
  const tree = view
    ? new TreeCopier(
        view,
        {
          ...(chown ? { chown } : {}),
          ...(chmod !== undefined ? { chmod } : {}),
          ...(exclude ? { exclude } : {}),
          ...(op.reuse ? { reuse: op.reuse } : {}),
          show,
        },
        summary,
      )
    : undefined;

  for (const item of items) {
    const destHost = await wrap(`destination ${dest}`, async () => resolveInRootSync(destRoot, dest));
    if (!isInside(destRoot, destHost)) fail(`destination ${dest} resolves outside the rootfs`);
    const destSt = lstatOrUndefinedSync(destHost);
    const intoDir = (name: string) => (destSt?.isDirectory() ? path.join(destHost, name) : destHost);

    if (item.kind === 'path') {
      await wrap(item.rel || '/', async () => {
        const st = view!.lstat(item.resolved)!;
        // A wildcard match is itself subject to --exclude (by its path below the wildcard's fixed
        // part); below it, paths are relative to the match, as for a source named directly.
        if (exclude && item.excludeRel !== '') {
          if (exclude.match(item.excludeRel).matched && !(st.isDirectory() && exclude.mayIncludeBelow(item.excludeRel))) return;
        }
        if (spec.parents) {
          // Recreate the kept parents under dest with the source directories' metadata.
          const comps = item.keep === '' ? [] : item.keep.split('/');
          let host = destSt?.isDirectory() ? destHost : fail(`--parents needs the destination ${dest} to be a directory`);
          let srcDir = item.keepBase;
          const upTo = st.isDirectory() ? comps.length : comps.length - 1;
          for (let i = 0; i < upTo; i++) {
            srcDir = srcDir === '' ? comps[i]! : `${srcDir}/${comps[i]}`;
            host = path.join(host, comps[i]!);
            tree!.ensureDirLike(view!.resolve(srcDir), host);
          }
          const target = st.isDirectory() ? host : path.join(host, comps[comps.length - 1] ?? path.posix.basename(item.rel));
          await tree!.copy(item.resolved, target, true);
          summary.targets.push(show(target));
          return;
        }
        if (st.isDirectory()) {
          if (destSt === undefined) {
            await fsp.mkdir(destHost, { mode: 0o755 });
            await fsp.chmod(destHost, 0o755);
            await fsp.chown(destHost, created.uid, created.gid);
          } else if (!destSt.isDirectory()) {
            fail(`cannot copy directory ${item.rel || '/'} to non-directory ${dest}`);
          }
          await tree!.copy(item.resolved, destHost, true);
          summary.targets.push(show(destHost));
          return;
        }
        if (spec.unpack && st.isFile()) {
          const compression = await detectArchive(view!.host(item.resolved));
          if (compression !== undefined) {
            // The destination (and its missing parents) belongs to the --chown user, as BuildKit's
            // unpack makes it with copy.MkdirAll(dest, 0755, chowner) before extracting.
            const r = await extractTar(view!.host(item.resolved), compression, destRoot, show(destHost), chown ? { chown } : {});
            summary.extracted += r.entries;
            summary.files += r.files;
            summary.directories += r.directories;
            summary.symlinks += r.symlinks;
            summary.hardlinks += r.hardlinks;
            summary.bytes += r.bytes;
            summary.targets.push(show(destHost));
            return;
          }
        }
        const target = intoDir(path.posix.basename(item.rel));
        await tree!.copy(item.resolved, target, true);
        summary.targets.push(show(target));
      });
    } else if (item.kind === 'inline') {
      await wrap(`<<${item.name}`, async () => {
        const name = path.posix.basename(item.name);
        if (name === '' || name === '.' || name === '..') fail(`invalid heredoc file name ${JSON.stringify(item.name)}`);
        const target = intoDir(name);
        await clearForFile(target, show(target));
        await fsp.writeFile(target, item.content, { flag: 'wx', mode: 0o600 });
        const now = new Date();
        await applyMeta(target, false, { ...created, mode: chmod ? chmod(0o644, false) : 0o644, atime: now, mtime: now });
        summary.files++;
        summary.bytes += Buffer.byteLength(item.content);
        summary.targets.push(show(target));
      });
    } else if (item.kind === 'git') {
      await wrap(redactCredentials(item.url), async () => {
        // The tree of the commit the cache key names (resolved by the caller), checked out in the
        // store's temporary directory and copied in like a directory from a stage: links stay links.
        const g = op.git!;
        const resolved = g.resolved?.get(item.url) ?? (await resolveGit(item.git, spec.checksum, g.tmpDir, g));
        const checkout = await checkoutGit(item.git, resolved, spec.keepGitDir ?? false, g.tmpDir, g);
        try {
          if (destSt === undefined) {
            await fsp.mkdir(destHost, { mode: 0o755 });
            await fsp.chmod(destHost, 0o755);
            await fsp.chown(destHost, created.uid, created.gid);
          } else if (!destSt.isDirectory()) {
            fail(`ADD ${redactCredentials(item.url)}: cannot copy a git repository to non-directory ${dest}`);
          }
          const gitView = await openSource({ kind: 'rootfs', dir: checkout.dir });
          const opts = { ...(chown ? { chown } : {}), ...(chmod !== undefined ? { chmod } : {}), ...(exclude ? { exclude } : {}), show };
          const copier = new TreeCopier(gitView, opts, summary);
          await copier.copy('', destHost, true);
          summary.downloaded.push(redactCredentials(item.url));
          summary.targets.push(show(destHost));
        } finally {
          await checkout.cleanup();
        }
      });
    } else {
      // Named in messages with any credentials redacted (the download itself uses them).
      await wrap(redactCredentials(item.url), async () => {
        const dl = await download(item.url, {
          ...(spec.checksum !== undefined ? { checksum: spec.checksum } : {}),
          ...(op.http?.timeoutMs !== undefined ? { timeoutMs: op.http.timeoutMs } : {}),
          ...(op.http?.maxBytes !== undefined ? { maxBytes: op.http.maxBytes } : {}),
        });
        try {
          const target = spec.destIsDir || destSt?.isDirectory() ? path.join(destHost, dl.filename) : destHost;
          await clearForFile(target, show(target));
          await fsp.copyFile(dl.file, target);
          const mtime = dl.lastModified ?? new Date();
          await applyMeta(target, false, { ...created, mode: chmod ? chmod(0o600, false) : 0o600, atime: mtime, mtime });
          summary.files++;
          summary.bytes += dl.size;
          summary.downloaded.push(redactCredentials(item.url));
          summary.targets.push(show(target));
        } finally {
          await dl.cleanup();
        }
      });
    }
  }
  return summary;
}

/** One source as written -> the items it names (several for a wildcard, none for an empty one). */
function expandItems(view: SourceView, raw: string, parents: boolean, kind: 'context' | 'rootfs'): Item[] {
  const kindOf = (rel: string): EntryKind | undefined => {
    const st = view.lstat(rel);
    return st === undefined ? undefined : st.isDirectory() ? 'dir' : 'other';
  };
  try {
    return expandSource({ resolve: (p) => view.resolve(p), kind: kindOf, readdir: (rel) => view.readdir(rel) }, raw, parents).map((x) => ({
      kind: 'path',
      rel: x.named,
      resolved: x.resolved,
      keep: x.keep,
      keepBase: x.keepBase,
      excludeRel: x.excludeRel,
    }));
  } catch (err) {
    if (!(err instanceof ExpandError) || err.reason !== 'not-found') throw err;
    const hint = view.hidden(err.path) ? ' (it is excluded by .dockerignore)' : '';
    throw new Error(`failed to compute cache key: ${JSON.stringify('/' + err.path)}: not found${hint}${kind === 'context' ? ' in the build context' : ''}`);
  }
}
