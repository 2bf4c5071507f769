// ADD of a git repository over ssh (sshd on 127.0.0.1, started here): the build's `--ssh default`
// agent authenticates, and without one kiln's own user's keys are never used: a clear error.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRepo, publish, startSshd, type GitServer } from '../helpers/git-server.js';
import { kilnClient, killStarted, startDaemon } from '../helpers/daemon.js';
import { testEnv } from '../helpers/env.js';
import { kiln } from './helpers.js';

let dir: string;
let sshd: GitServer & { port: number };
let repo: string;
let first: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-git-ssh-'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'kiln-git-test', '-f', path.join(dir, 'id_git')]);
  sshd = await startSshd(path.join(dir, 'sshd'), fs.readFileSync(path.join(dir, 'id_git.pub'), 'utf8'));
  const work = path.join(dir, 'work');
  first = initRepo(work, { 'hello.txt': 'over ssh\n' });
  repo = publish(work, dir, 'app.git');
});
afterAll(async () => {
  await killStarted();
  await sshd?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function context(name: string, src: string): string {
  const ctx = path.join(dir, name);
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${testEnv().busybox}\nADD ${src} /app\nRUN cat /app/hello.txt\n`);
  return ctx;
}

describe('ADD git over ssh', () => {
  it('uses the --ssh default agent; the same commit is then a cache hit', () => {
    const ctx = context('ok', `${sshd.url}${repo}#main`);
    const r = kiln(['build', '--root', path.join(dir, 'root'), '--progress', 'plain', '--ssh', `default=${path.join(dir, 'id_git')}`, ctx], {
      env: { SSH_AUTH_SOCK: '' },
    });
    expect(r.stderr).toContain('over ssh');
    expect(r.code).toBe(0);
    const again = kiln(['build', '--root', path.join(dir, 'root'), '--progress', 'plain', context('again', `${sshd.url}${repo}#${first}`)], {
      env: { SSH_AUTH_SOCK: '' },
    });
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/ADD ssh:\/\/\S+ \/app\n#\d+ CACHED/);
  });

  it('without an agent fails on its line and says how to give one', () => {
    // A fresh root: on the first one this commit is a cache hit, which needs no remote at all.
    const ctx = context('noagent', `${sshd.url}${repo}#${first}`);
    const r = kiln(['build', '--root', path.join(dir, 'root2'), '--progress', 'plain', ctx], { env: { SSH_AUTH_SOCK: '' } });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Dockerfile:2:');
    expect(r.stderr).toContain('build with --ssh default');
  });

  it("through a daemon: the client's agent reaches the daemon's git", async () => {
    const daemon = await startDaemon({ root: path.join(dir, 'droot') });
    try {
      const ctx = context('daemon', `${sshd.url}${repo}#main`);
      const r = await kilnClient(['build', '--addr', daemon.addr, '--progress', 'plain', '--ssh', `default=${path.join(dir, 'id_git')}`, ctx], {
        env: { SSH_AUTH_SOCK: '' },
      });
      expect(r.stderr).toContain('over ssh');
      expect(r.code).toBe(0);
    } finally {
      await daemon.stop();
    }
  });
});
