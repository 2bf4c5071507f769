// ADD sources that name a git repository, parsed as BuildKit's gitutil.ParseGitRef does:
//   https://HOST/PATH.git#REF:SUBDIR   (http(s) only when the path ends in ".git")
//   git://HOST/PATH#REF:SUBDIR, ssh://[USER@]HOST/PATH#REF:SUBDIR
//   USER@HOST:PATH#REF:SUBDIR          (scp-like, ssh)
// REF is a branch, a tag or a full commit sha (empty: the remote's default branch); SUBDIR a
// directory of the repository whose contents are copied instead of the whole tree. "github.com/o/r"
// without a scheme is a local path to BuildKit's ADD (indistinguishable from one), and so it is here.
// Pure: no I/O; the solver resolves and fetches.

export type GitScheme = 'https' | 'http' | 'git' | 'ssh';

export interface GitRef {
  /** What git fetches from: the source without its fragment (credentials, if any, included). */
  remote: string;
  scheme: GitScheme;
  /** Branch, tag (short or refs/... form) or commit sha; "" for the default branch. */
  ref: string;
  /** Clean relative path inside the repository ("" for the whole tree). */
  subdir: string;
  /** `?checksum=` (or `?commit=`): a commit sha or prefix the ref must resolve to. */
  checksum?: string;
  /** Why the source cannot be used (conflicting or unknown query parameters), if it cannot. */
  invalid?: string;
}

// user@host:path; neither may start with "-", which ssh would take for an option.
const SCP_LIKE = /^([A-Za-z0-9_][A-Za-z0-9_-]*)@([A-Za-z0-9][A-Za-z0-9.-]*):(.*)$/;

/** The git source `src` names, or undefined when it is no git source (a local path or plain URL). */
export function parseGitRef(src: string): GitRef | undefined {
  if (src.startsWith('./') || src.startsWith('../')) return undefined;
  const hash = src.indexOf('#');
  const remote = hash >= 0 ? src.slice(0, hash) : src;
  const fragment = hash >= 0 ? src.slice(hash + 1) : '';
  let scheme: GitScheme;
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(remote);
  if (m) {
    const s = m[1]!.toLowerCase();
    if (s === 'http' || s === 'https') {
      let pathname: string;
      try {
        pathname = new URL(remote).pathname;
      } catch {
        return undefined;
      }
      if (!pathname.endsWith('.git')) return undefined;
      scheme = s;
    } else if (s === 'git' || s === 'ssh') {
      scheme = s;
      // A host or user starting with "-" would be an option to ssh: not a repository.
      if (/^[a-z]+:\/\/([^/@]*@)?-/i.test(remote) || /^[a-z]+:\/\/-/i.test(remote)) return undefined;
    } else {
      return undefined;
    }
  } else if (SCP_LIKE.test(remote)) {
    scheme = 'ssh';
  } else {
    return undefined;
  }
  const colon = fragment.indexOf(':');
  const out: GitRef = { remote, scheme, ref: colon >= 0 ? fragment.slice(0, colon) : fragment, subdir: colon >= 0 ? fragment.slice(colon + 1) : '' };
  if (m && remote.includes('?')) applyQuery(out);
  return out;
}

/**
 * BuildKit's URL queries (Dockerfile 1.18): ?ref=, ?branch= (refs/heads/...), ?tag= (refs/tags/...),
 * ?subdir=, ?checksum= (alias ?commit=). The query is not sent to the server. A fragment may say
 * the same thing again, but not something else.
 */
function applyQuery(g: GitRef): void {
  const u = new URL(g.remote);
  const refs: string[] = [];
  let subdir: string | undefined;
  for (const [key, value] of u.searchParams) {
    switch (key) {
      case 'ref':
        refs.push(value);
        break;
      case 'branch':
        refs.push(`refs/heads/${value}`);
        break;
      case 'tag':
        refs.push(`refs/tags/${value}`);
        break;
      case 'subdir':
        subdir = value;
        break;
      case 'checksum':
      case 'commit':
        if (g.checksum !== undefined && g.checksum !== value) g.invalid ??= `checksum conflicts: ${g.checksum} and ${value}`;
        g.checksum = value;
        break;
      default:
        g.invalid ??= `unsupported git URL query parameter ${JSON.stringify(key)} (supported: ref, branch, tag, subdir, checksum, commit)`;
    }
  }
  u.search = '';
  g.remote = u.toString();
  const same = (a: string, b: string) => a === b || a.replace(/^refs\/(heads|tags)\//, '') === b;
  if (refs.length > 1) g.invalid ??= `ref conflicts: ${refs.join(', ')}`;
  if (refs.length > 0) {
    if (g.ref !== '' && !same(refs[0]!, g.ref) && !same(g.ref, refs[0]!)) g.invalid ??= `ref conflicts: ${refs[0]} and ${g.ref}`;
    else g.ref = refs[0]!;
  }
  if (subdir !== undefined) {
    if (g.subdir !== '' && g.subdir !== subdir) g.invalid ??= `subdir conflicts: ${subdir} and ${g.subdir}`;
    g.subdir = subdir;
  }
}

export function isGitSource(src: string): boolean {
  return parseGitRef(src) !== undefined;
}

/** A full commit sha (sha1, or sha256 repositories). */
export function isCommitSha(s: string): boolean {
  return /^[0-9a-f]{40}$/.test(s) || /^[0-9a-f]{64}$/.test(s);
}

/**
 * Why `ref` cannot be a git ref name (git check-ref-format's rules, loosely), or undefined. A ref
 * that starts with "-" would be read by git as an option, so it is refused before git sees it.
 */
export function invalidGitRef(ref: string): string | undefined {
  if (ref === '') return undefined;
  if (ref.startsWith('-')) return 'a ref cannot start with "-"';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(ref)) return 'a ref cannot contain spaces, control characters or any of ~^:?*[\\';
  if (ref.includes('..') || ref.includes('@{') || ref.includes('//')) return 'a ref cannot contain "..", "@{" or "//"';
  if (ref.startsWith('/') || ref.endsWith('/') || ref.endsWith('.') || ref.endsWith('.lock') || ref === '@') return 'not a valid ref name';
  if (ref.split('/').some((c) => c.startsWith('.'))) return 'a ref component cannot start with "."';
  return undefined;
}

/** The subdirectory as a clean relative path; throws when it would leave the repository. */
export function cleanSubdir(subdir: string): string {
  const out: string[] = [];
  for (const c of subdir.split('/')) {
    if (c === '' || c === '.') continue;
    if (c !== '..') out.push(c);
    else if (out.pop() === undefined) throw new Error(`git subdirectory ${JSON.stringify(subdir)} leaves the repository`);
  }
  return out.join('/');
}

/** What is wrong with a parsed git source (an invalid ref, a subdirectory out of the tree), if anything. */
export function gitSourceProblem(g: GitRef): string | undefined {
  if (g.invalid !== undefined) return g.invalid;
  if (g.checksum !== undefined && !/^[0-9a-fA-F]+$/.test(g.checksum)) return `invalid checksum ${g.checksum} for Git URL, expected hex commit hash`;
  const bad = invalidGitRef(g.ref);
  if (bad !== undefined) return `invalid git ref ${JSON.stringify(g.ref)}: ${bad}`;
  try {
    cleanSubdir(g.subdir);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}
