// ADD of a git repository at the file-operation level: repositories served on 127.0.0.1 by
// `git daemon` and `git http-backend`, resolved and checked out by src/fileop/git.ts, copied into a
// rootfs. Hostile repositories (links out, ".git" paths, ext:: and file:// submodules) stay inside.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseGitRef } from '../../src/frontend/git-ref.js';
import { copy } from '../../src/fileop/copy.js';
import { resolveGit } from '../../src/fileop/git.js';
import type { CopySpec } from '../../src/fileop/types.js';
import { makeFixture, type Fixture } from './helpers.js';
import { commitFiles, gitIn, initRepo, publish, push, startGitDaemon, startHttpBackend, type GitServer } from '../helpers/git-server.js';

const PASSWORD = `gitpw-${process.pid}`;
let base: string;
let repos: string;
let work: string;
let daemon: GitServer;
let httpd: GitServer & { requests: string[] };
let authd: GitServer & { requests: string[] };
let first: string;
let second: string;
let tagObject: string;

beforeAll(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-git-'));
  repos = path.join(base, 'repos');
  fs.mkdirSync(repos);
  work = path.join(base, 'work');
  first = initRepo(work, { 'a.txt': 'one\n', 'run.sh': '#!/bin/sh\necho hi\n', 'sub/deep/d.txt': 'deep\n', link: '->a.txt', 'sub/up': '->../a.txt' });
  gitIn(work, ['tag', 'v1']);
  gitIn(work, ['tag', '-a', 'v1a', '-m', 'annotated']);
  tagObject = gitIn(work, ['rev-parse', 'v1a']);
  second = commitFiles(work, { 'a.txt': 'two\n' }, 'second');
  gitIn(work, ['branch', 'feature', first]);
  publish(work, repos, 'r.git');
  daemon = await startGitDaemon(repos);
  httpd = await startHttpBackend(repos);
  authd = await startHttpBackend(repos, { user: 'ci', password: PASSWORD });
});
afterAll(async () => {
  await daemon?.stop();
  await httpd?.stop();
  await authd?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

let f: Fixture;
let tmpDir: string;
beforeEach(() => {
  f = makeFixture();
  tmpDir = path.join(f.base, 'store-tmp');
});
afterEach(() => f.cleanup());

function addGit(url: string, more: Partial<CopySpec> = {}) {
  return copy({
    spec: { instruction: 'ADD', sources: [], urls: [url], dest: '/src', destIsDir: false, location: { file: 'Dockerfile', line: 7, endLine: 7 }, ...more },
    destRoot: f.rootfs,
    git: { tmpDir, timeoutMs: 60_000 },
  });
}

const read = (rel: string) => fs.readFileSync(f.dst(rel), 'utf8');

describe('ADD git: refs', () => {
  it('a branch over git://: the tree with modes and links, owned by root, no .git, temp dir cleaned', async () => {
    const s = await addGit(`${daemon.url}/r.git#main`);
    expect(read('src/a.txt')).toBe('two\n');
    expect(read('src/sub/deep/d.txt')).toBe('deep\n');
    expect(fs.statSync(f.dst('src/run.sh')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(f.dst('src/a.txt')).mode & 0o7777).toBe(0o644);
    expect(fs.readlinkSync(f.dst('src/link'))).toBe('a.txt');
    expect(fs.readlinkSync(f.dst('src/sub/up'))).toBe('../a.txt');
    const st = fs.lstatSync(f.dst('src/a.txt'));
    expect([st.uid, st.gid]).toEqual([0, 0]);
    expect(fs.existsSync(f.dst('src/.git'))).toBe(false);
    expect(s.downloaded).toEqual([`${daemon.url}/r.git#main`]);
    expect(fs.readdirSync(tmpDir)).toEqual([]);
    // mtimes are the checkout's, as BuildKit leaves them (not the 2024 commit date).
    expect(Date.now() - fs.statSync(f.dst('src/a.txt')).mtimeMs).toBeLessThan(10 * 60_000);
  });

  it('several repositories into one directory; a file in the way is an error', async () => {
    await copy({
      spec: { instruction: 'ADD', sources: [], urls: [`${daemon.url}/r.git#main:sub/deep`, `${httpd.url}/r.git#v1:sub`], dest: '/multi/', destIsDir: true },
      destRoot: f.rootfs,
      git: { tmpDir },
    });
    expect(fs.readdirSync(f.dst('multi')).sort()).toEqual(['d.txt', 'deep', 'up']);
    fs.writeFileSync(f.dst('file'), 'x');
    await expect(addGit(`${daemon.url}/r.git#main`, { dest: '/file' })).rejects.toThrow(
      'Dockerfile:7: ADD ' + `${daemon.url}/r.git#main: cannot copy a git repository to non-directory /file`,
    );
  });

  it('a lightweight tag, an annotated tag and a commit over http (git http-backend)', async () => {
    await addGit(`${httpd.url}/r.git#v1`, { dest: '/t1' });
    expect(read('t1/a.txt')).toBe('one\n');
    await addGit(`${httpd.url}/r.git#v1a`, { dest: '/t2' });
    expect(read('t2/a.txt')).toBe('one\n');
    await addGit(`${httpd.url}/r.git#${first}`, { dest: '/t3' });
    expect(read('t3/a.txt')).toBe('one\n');
    await addGit(`${httpd.url}/r.git`, { dest: '/t4' });
    expect(read('t4/a.txt')).toBe('two\n');
    await addGit(`${httpd.url}/r.git#refs/heads/feature`, { dest: '/t5' });
    expect(read('t5/a.txt')).toBe('one\n');
  });

  it('resolves refs to commits as BuildKit: branch, tag, annotated tag (its commit), sha, default branch', async () => {
    const r = (ref: string, checksum?: string) => resolveGit(parseGitRef(`${daemon.url}/r.git${ref}`)!, checksum, tmpDir);
    expect(await r('#main')).toEqual({ commit: second, ref: 'refs/heads/main' });
    expect(await r('')).toEqual({ commit: second, ref: 'refs/heads/main' });
    expect(await r('#v1')).toEqual({ commit: first, ref: 'refs/tags/v1' });
    expect(await r('#v1a')).toEqual({ commit: first, ref: 'refs/tags/v1a', tagObject });
    expect(await r(`#${first}`)).toEqual({ commit: first, ref: first });
  });

  it('URL queries: ?branch=, ?tag= with ?subdir=, ?ref=, ?checksum= (BuildKit 0.24)', async () => {
    await addGit(`${httpd.url}/r.git?branch=feature`, { dest: '/q1' });
    expect(read('q1/a.txt')).toBe('one\n');
    await addGit(`${daemon.url}/r.git?tag=v1&subdir=sub/deep`, { dest: '/q2' });
    expect(fs.readdirSync(f.dst('q2'))).toEqual(['d.txt']);
    await addGit(`${daemon.url}/r.git?tag=v1a#refs/tags/v1a`, { dest: '/q3' });
    expect(read('q3/a.txt')).toBe('one\n');
    await addGit(`${daemon.url}/r.git?ref=main&checksum=${second.slice(0, 8)}`, { dest: '/q4' });
    expect(read('q4/a.txt')).toBe('two\n');
    // A tag asked for as a branch is not found; a checksum that is not the commit fails.
    await expect(addGit(`${daemon.url}/r.git?branch=v1`, { dest: '/x' })).rejects.toThrow('does not contain ref refs/heads/v1');
    await expect(addGit(`${daemon.url}/r.git?branch=main&commit=${first}`, { dest: '/x' })).rejects.toThrow(
      `expected checksum to match ${first}, got ${second}`,
    );
    await expect(addGit(`${daemon.url}/r.git?checksum=${first}`, { dest: '/x', checksum: second })).rejects.toThrow('checksum conflicts');
    expect(fs.existsSync(f.dst('x'))).toBe(false);
  });

  it('a ref the repository lacks is a clear error naming the line and ref', async () => {
    await expect(addGit(`${daemon.url}/r.git#nope`)).rejects.toThrow(
      `Dockerfile:7: ADD ${daemon.url}/r.git#nope: repository ${daemon.url}/r.git does not contain ref nope`,
    );
    await expect(addGit(`${daemon.url}/missing.git#main`)).rejects.toThrow(/Dockerfile:7: .*failed to fetch remote/);
  });

  it('--checksum: a prefix of the commit (or annotated tag) sha passes, another fails naming both', async () => {
    await addGit(`${daemon.url}/r.git#main`, { checksum: second.slice(0, 10) });
    expect(read('src/a.txt')).toBe('two\n');
    await addGit(`${daemon.url}/r.git#v1a`, { checksum: tagObject, dest: '/tag' });
    await addGit(`${daemon.url}/r.git#${first}`, { checksum: first, dest: '/sha' });
    await expect(addGit(`${daemon.url}/r.git#main`, { checksum: first, dest: '/bad' })).rejects.toThrow(`expected checksum to match ${first}, got ${second}`);
    await expect(addGit(`${daemon.url}/r.git#${second}`, { checksum: first, dest: '/bad' })).rejects.toThrow(
      `expected checksum to match ${first}, got ${second}`,
    );
    await expect(addGit(`${daemon.url}/r.git#v1a`, { checksum: 'abc0', dest: '/bad' })).rejects.toThrow(`got ${tagObject} or ${first}`);
    await expect(addGit(`${daemon.url}/r.git#main`, { checksum: 'foobar', dest: '/bad' })).rejects.toThrow(
      'invalid checksum foobar for Git URL, expected hex commit hash',
    );
    expect(fs.existsSync(f.dst('bad'))).toBe(false);
  });
});

describe('ADD git: subdirectories, --keep-git-dir, --chown', () => {
  it('#REF:SUBDIR copies the directory contents; a missing or symlinked subdir is refused', async () => {
    await addGit(`${daemon.url}/r.git#main:sub`);
    expect(fs.readdirSync(f.dst('src')).sort()).toEqual(['deep', 'up']);
    expect(read('src/deep/d.txt')).toBe('deep\n');
    await addGit(`${daemon.url}/r.git#main:sub/deep/`, { dest: '/d/' });
    expect(fs.readdirSync(f.dst('d'))).toEqual(['d.txt']);
    await expect(addGit(`${daemon.url}/r.git#main:nope`, { dest: '/x' })).rejects.toThrow('subdirectory nope not found');
    await expect(addGit(`${daemon.url}/r.git#main:link`, { dest: '/x' })).rejects.toThrow('is not a directory (it is a symlink)');
  });

  it('--keep-git-dir keeps a clean .git at the commit, origin redacted; --chown owns everything', async () => {
    const url = `http://ci:${PASSWORD}@${authd.url.slice('http://'.length)}/r.git#v1a`;
    await addGit(url, { keepGitDir: true, chown: '4242:4343' });
    const dest = f.dst('src');
    expect(gitIn(dest, ['-c', `safe.directory=${dest}`, 'rev-parse', 'HEAD'])).toBe(first);
    expect(gitIn(dest, ['-c', `safe.directory=${dest}`, 'status', '--porcelain'])).toBe('');
    const config = fs.readFileSync(path.join(dest, '.git/config'), 'utf8');
    expect(config).toContain(`url = http://ci:xxxxx@${authd.url.slice('http://'.length)}/r.git`);
    expect(config).not.toContain(PASSWORD);
    expect(fs.existsSync(path.join(dest, '.git/FETCH_HEAD'))).toBe(false);
    for (const p of ['a.txt', '.git/config', 'sub/deep']) {
      const st = fs.lstatSync(path.join(dest, p));
      expect([p, st.uid, st.gid]).toEqual([p, 4242, 4343]);
    }
    // --keep-git-dir with a subdirectory: no .git (BuildKit keeps it only for the whole tree).
    await addGit(`${daemon.url}/r.git#main:sub`, { keepGitDir: true, dest: '/kept-sub' });
    expect(fs.existsSync(f.dst('kept-sub/.git'))).toBe(false);
  });

  it('credentials authenticate over http and never appear in errors', async () => {
    const host = authd.url.slice('http://'.length);
    await addGit(`http://ci:${PASSWORD}@${host}/r.git#main`);
    expect(read('src/a.txt')).toBe('two\n');
    const err = await addGit(`http://ci:${PASSWORD}@${host}/r.git#nope`, { dest: '/x' }).catch((e: Error) => e);
    expect(String(err)).toContain(`http://ci:xxxxx@${host}/r.git`);
    expect(String(err)).not.toContain(PASSWORD);
    // Without credentials: no prompt (it would hang), a clear failure.
    await expect(addGit(`${authd.url}/r.git#main`, { dest: '/y' })).rejects.toThrow(/failed to fetch remote/);
  });
});

describe('ADD git: submodules and hostile repositories', () => {
  it('fetches submodules (absolute URL) without leaving .git links behind', async () => {
    const lib = path.join(base, 'libwork');
    initRepo(lib, { 'lib.txt': 'library\n' });
    publish(lib, repos, 'lib.git');
    const app = path.join(base, 'appwork');
    initRepo(app, { 'app.txt': 'app\n' });
    gitIn(app, ['-c', 'protocol.file.allow=always', 'submodule', 'add', '-q', `${daemon.url}/lib.git`, 'vendor/lib']);
    commitFiles(app, {}, 'add submodule');
    publish(app, repos, 'app.git');
    await addGit(`${daemon.url}/app.git#main`);
    expect(read('src/vendor/lib/lib.txt')).toBe('library\n');
    expect(fs.existsSync(f.dst('src/vendor/lib/.git'))).toBe(false);
    expect(read('src/.gitmodules')).toContain('vendor/lib');
  });

  it('links pointing out are copied as links, never followed', async () => {
    const evil = path.join(base, 'evil-links');
    initRepo(evil, { 'etc-link': '->/etc', passwd: '->../../../../../../etc/passwd', 'dir/x': 'x' });
    publish(evil, repos, 'links.git');
    await addGit(`${daemon.url}/links.git#main`);
    expect(fs.readlinkSync(f.dst('src/etc-link'))).toBe('/etc');
    expect(fs.readlinkSync(f.dst('src/passwd'))).toBe('../../../../../../etc/passwd');
    await expect(addGit(`${daemon.url}/links.git#main:etc-link`, { dest: '/x' })).rejects.toThrow('is not a directory (it is a symlink)');
    expect(fs.existsSync(f.dst('x'))).toBe(false);
  });

  it('a tree with a ".git" entry (hooks smuggled in) never lands and no hook runs', async () => {
    const evil = path.join(base, 'evil-dotgit');
    initRepo(evil, { 'ok.txt': 'ok\n' });
    const marker = path.join(base, `hook-ran-${process.pid}`);
    const hook = gitIn(evil, ['hash-object', '-w', '--stdin'], `#!/bin/sh\ntouch ${marker}\n`);
    const hooks = gitIn(evil, ['mktree'], `100755 blob ${hook}\tpost-checkout\n`);
    const dotgit = gitIn(evil, ['mktree'], `040000 tree ${hooks}\thooks\n`);
    const okBlob = gitIn(evil, ['rev-parse', 'HEAD:ok.txt']);
    const root = gitIn(evil, ['mktree'], `040000 tree ${dotgit}\t.git\n100644 blob ${okBlob}\tok.txt\n`);
    const commit = gitIn(evil, ['commit-tree', root, '-m', 'evil'], '');
    gitIn(evil, ['update-ref', 'refs/heads/main', commit]);
    publish(evil, repos, 'dotgit.git');
    // git never writes a ".git" path of a tree (it skips or refuses it): either way nothing of it lands.
    const plain = await addGit(`${daemon.url}/dotgit.git#main`).then(
      () => 'ok',
      (e: Error) => e.message,
    );
    const kept = await addGit(`${daemon.url}/dotgit.git#main`, { keepGitDir: true, dest: '/k' }).then(
      () => 'ok',
      (e: Error) => e.message,
    );
    expect([plain, kept].every((r) => r === 'ok' || /invalid path|failed to checkout/.test(r))).toBe(true);
    if (plain === 'ok') expect(read('src/ok.txt')).toBe('ok\n');
    expect(fs.existsSync(f.dst('k/.git/hooks/post-checkout'))).toBe(false);
    expect(fs.existsSync(marker)).toBe(false);
    expect(fs.existsSync(f.dst('src/.git'))).toBe(false);
  });

  it.each([
    ['ext::', (m: string) => `ext::sh -c touch% ${m}`],
    ['file://', (_m: string) => `file://${path.join(repos, 'r.git')}`],
    ['a local path', (_m: string) => path.join(repos, 'r.git')],
  ])('a submodule URL using %s is refused by the protocol allow-list', async (_what, urlOf) => {
    const marker = path.join(base, `ext-ran-${process.pid}`);
    const evil = path.join(base, `evil-sub-${Math.random().toString(36).slice(2)}`);
    initRepo(evil, { '.gitmodules': `[submodule "x"]\n\tpath = x\n\turl = ${urlOf(marker)}\n` });
    gitIn(evil, ['update-index', '--add', '--cacheinfo', `160000,${first},x`]);
    gitIn(evil, ['commit', '-q', '-m', 'sub']);
    const name = `${path.basename(evil)}.git`;
    publish(evil, repos, name);
    await expect(addGit(`${daemon.url}/${name}#main`)).rejects.toThrow(/failed to update submodules.*(not allowed|transport)/s);
    expect(fs.existsSync(marker)).toBe(false);
  });
});

describe('ADD git: .gitmodules commands', () => {
  it('an "update = !command" in .gitmodules never runs', async () => {
    const lib = path.join(base, 'libwork2');
    const libCommit = initRepo(lib, { 'lib.txt': 'library\n' });
    publish(lib, repos, 'lib2.git');
    const marker = path.join(base, `update-ran-${process.pid}`);
    const evil = path.join(base, 'evil-update');
    initRepo(evil, { '.gitmodules': `[submodule "x"]\n\tpath = x\n\turl = ${daemon.url}/lib2.git\n\tupdate = !touch ${marker}\n` });
    gitIn(evil, ['update-index', '--add', '--cacheinfo', `160000,${libCommit},x`]);
    gitIn(evil, ['commit', '-q', '-m', 'sub']);
    publish(evil, repos, 'evil-update.git');
    // git refuses a command from .gitmodules outright (CVE-2019-19604): a clear failure.
    await expect(addGit(`${daemon.url}/evil-update.git#main`)).rejects.toThrow('failed to update submodules');
    await addGit(`${daemon.url}/evil-update.git#main`, { keepGitDir: true, dest: '/k' }).catch((e: Error) => e);
    expect(fs.existsSync(marker)).toBe(false);
  });
});

describe('ADD git: a moved branch', () => {
  it('checks out the commit it was resolved to, even after the branch moved', async () => {
    const moving = path.join(base, 'moving');
    const c1 = initRepo(moving, { 'v.txt': '1\n' });
    const bare = publish(moving, repos, 'moving.git');
    const url = `${daemon.url}/moving.git#main`;
    const resolved = await resolveGit(parseGitRef(url)!, undefined, tmpDir);
    expect(resolved.commit).toBe(c1);
    commitFiles(moving, { 'v.txt': '2\n' }, 'moved');
    push(moving, bare);
    await copy({
      spec: { instruction: 'ADD', sources: [], urls: [url], dest: '/m', destIsDir: false },
      destRoot: f.rootfs,
      git: { tmpDir, resolved: new Map([[url, resolved]]) },
    });
    expect(read('m/v.txt')).toBe('1\n');
  });
});

describe('ADD git: no git on the host', () => {
  it('says so', async () => {
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await expect(resolveGit(parseGitRef(`${daemon.url}/r.git#main`)!, undefined, tmpDir)).rejects.toThrow('git is not installed on this host');
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe('ADD git: a remote that never answers', () => {
  it('is ended by the timeout and by the cancel signal, with a clear error and nothing left over', async () => {
    const sockets: net.Socket[] = [];
    let closed = 0;
    const silent = net.createServer((s) => {
      sockets.push(s);
      s.on('error', () => undefined)
        .on('close', () => closed++)
        .resume();
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as AddressInfo).port;
    try {
      // git:// is git's own connection; over http it is git-remote-http's, a helper process.
      for (const url of [`git://127.0.0.1:${port}/r.git#main`, `http://127.0.0.1:${port}/r.git#main`]) {
        const started = Date.now();
        await expect(resolveGit(parseGitRef(url)!, undefined, tmpDir, { timeoutMs: 700 })).rejects.toThrow('git ls-remote timed out after 1s');
        expect(Date.now() - started).toBeLessThan(10_000);
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 300);
        await expect(resolveGit(parseGitRef(url)!, undefined, tmpDir, { signal: ac.signal })).rejects.toThrow('git ls-remote cancelled');
      }
      expect(fs.readdirSync(tmpDir)).toEqual([]);
      // Every connection git opened is closed: its process group was killed.
      await new Promise((r) => setTimeout(r, 300));
      expect(sockets.length).toBeGreaterThanOrEqual(4);
      expect(closed).toBe(sockets.length);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});
