import { describe, expect, it } from 'vitest';
import { defaultSeccompProfile } from '../../src/executor/seccomp.js';
import { buildSpec, DEFAULT_PATH, nofileLimit, processEnv, type SpecInput } from '../../src/executor/spec.js';
import { TailBuffer } from '../../src/executor/tail.js';

const base: SpecInput = {
  rootfs: '/r',
  args: ['/bin/true'],
  env: [],
  cwd: '/',
  uid: 0,
  gid: 0,
  additionalGids: [],
  hostname: 'h',
  network: 'none',
  mounts: [],
  nofile: { soft: 1024, hard: 4096 },
  cgroupsPath: 'kiln/x',
};

describe('buildSpec', () => {
  it('unshares the network only for network none', () => {
    const ns = (s: Record<string, unknown>) => (s.linux as { namespaces: { type: string }[] }).namespaces.map((n) => n.type).sort();
    expect(ns(buildSpec(base))).toEqual(['cgroup', 'ipc', 'mount', 'network', 'pid', 'uts']);
    expect(ns(buildSpec({ ...base, network: 'host' }))).toEqual(['cgroup', 'ipc', 'mount', 'pid', 'uts']);
  });

  it('sets limits only when asked, swap only when accounted', () => {
    const res = (s: Record<string, unknown>) => (s.linux as { resources: Record<string, unknown> }).resources;
    expect(res(buildSpec(base)).memory).toBeUndefined();
    expect(res(buildSpec({ ...base, memoryBytes: 10, pids: 5 }))).toMatchObject({ memory: { limit: 10 }, pids: { limit: 5 } });
    expect(res(buildSpec({ ...base, memoryBytes: 10 })).memory).toEqual({ limit: 10 });
    expect(res(buildSpec({ ...base, memoryBytes: 10, swapAccounting: true })).memory).toEqual({ limit: 10, swap: 10 });
  });

  it('never grants ambient or inheritable capabilities', () => {
    const caps = (buildSpec(base).process as { capabilities: Record<string, string[]> }).capabilities;
    expect(Object.keys(caps).sort()).toEqual(['bounding', 'effective', 'permitted']);
    expect(caps.bounding).toHaveLength(14);
    expect(caps.bounding).not.toContain('CAP_SYS_ADMIN');
  });
});

describe('nofileLimit', () => {
  it("is Docker's 1024/524288, clamped to the caller's hard limit", () => {
    expect(nofileLimit(1048576)).toEqual({ soft: 1024, hard: 524288 });
    expect(nofileLimit(20000)).toEqual({ soft: 1024, hard: 20000 });
    expect(nofileLimit(512)).toEqual({ soft: 512, hard: 512 });
  });
});

describe('processEnv', () => {
  it('defaults PATH and HOME, keeps order, last duplicate wins', () => {
    expect(processEnv(['A=1', 'B=2', 'A=3'], '/home/u')).toEqual([`PATH=${DEFAULT_PATH}`, 'A=3', 'B=2', 'HOME=/home/u']);
    expect(processEnv(['HOME=/x', 'PATH=/p'], '/home/u')).toEqual(['HOME=/x', 'PATH=/p']);
  });
});

describe('defaultSeccompProfile', () => {
  it('denies the dangerous calls and namespace clones', () => {
    const p = defaultSeccompProfile('x64');
    const denied = p.syscalls.filter((s) => !s.args).flatMap((s) => s.names);
    for (const n of [
      'mount',
      'umount2',
      'pivot_root',
      'kexec_load',
      'init_module',
      'bpf',
      'keyctl',
      'open_by_handle_at',
      'userfaultfd',
      'unshare',
      'setns',
      'reboot',
      'swapon',
      'acct',
      'quotactl',
    ]) {
      expect(denied, n).toContain(n);
    }
    const cloneRules = p.syscalls.filter((s) => s.names.includes('clone'));
    expect(cloneRules.map((r) => r.args![0]!.value).reduce((a, b) => a | b, 0)).toBe(0x7e020000);
    expect(p.architectures).toContain('SCMP_ARCH_X86');
  });
});

describe('TailBuffer', () => {
  it('keeps exactly the last bytes', () => {
    const t = new TailBuffer(5);
    t.push(Buffer.from('abc'));
    t.push(Buffer.from('defg'));
    expect(t.toString()).toBe('cdefg');
    t.push(Buffer.from('0123456789'));
    expect(t.toString()).toBe('56789');
    t.push(Buffer.from('x'));
    expect(t.toString()).toBe('6789x');
  });
});
