// The OCI runtime spec (config.json) for one RUN step. Pure: resolved inputs in, a JSON object out.
//
// The security settings are Docker's defaults for `docker run` / BuildKit's sandbox mode:
// Docker's 14 default capabilities, no_new_privs off (setuid binaries such as `su` work in RUN, as in
// Docker), the masked and read-only /proc and /sys paths containerd and BuildKit use, and a seccomp
// profile (seccomp.ts). The mounts are BuildKit's set: /proc, a small tmpfs /dev, devpts, /dev/shm,
// mqueue, read-only sysfs and cgroup.

import { readFileSync } from 'node:fs';
import { defaultSeccompProfile } from './seccomp.js';

export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Kernel interfaces that leak host information or control: hidden (containerd's / BuildKit's list). */
export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Docker's (containerd's) default PATH, used when the step's env has none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface SpecInput {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  hostname: string;
  network: 'host' | 'none';
  /** Mounts after the defaults, in order (etc files and the caller's mounts). */
  mounts: OciMount[];
  memoryBytes?: number;
  /** Whether the kernel accounts swap (memsw on cgroup v1, memory.swap.max on v2): then swap is capped too. */
  swapAccounting?: boolean;
  pids?: number;
  /** RLIMIT_NOFILE for the process (see nofileLimit). */
  nofile: { soft: number; hard: number };
  /** Relative cgroups path: runc nests it under its own cgroup. */
  cgroupsPath: string;
  /**
   * RUN --security=insecure (the security.insecure entitlement), as BuildKit runs it: every
   * capability kiln itself holds, no seccomp filter, no masked or read-only paths, writable /sys and
   * cgroups. Devices stay denied.
   */
  insecure?: boolean;
}

/** Capability names by number (linux/capability.h), for "every capability this process holds". */
const CAPABILITY_NAMES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
];

/**
 * The capabilities in this process's bounding set (/proc/self/status CapBnd): all of them for an
 * insecure step. Asking runc for one kiln does not hold would fail the container ("unable to apply
 * caps"), as on machines whose bounding set lacks CAP_SYS_RESOURCE.
 */
export function heldCapabilities(status: string): string[] {
  const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (hex === undefined) return [...DEFAULT_CAPABILITIES];
  const mask = BigInt(`0x${hex}`);
  return CAPABILITY_NAMES.filter((_, bit) => (mask >> BigInt(bit)) & 1n).map((n) => `CAP_${n}`);
}

function defaultMounts(insecure = false): OciMount[] {
  const ro = insecure ? 'rw' : 'ro';
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', ro] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', ro] },
  ];
}

/** Docker's default mounts' destinations (stubs runc may create in the rootfs). */
export const DEFAULT_MOUNT_DESTINATIONS: readonly string[] = defaultMounts().map((m) => m.destination);

export function buildSpec(input: SpecInput): Record<string, unknown> {
  const caps = input.insecure ? heldCapabilities(readFileSync('/proc/self/status', 'utf8')) : [...DEFAULT_CAPABILITIES];
  const namespaces: { type: string }[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }];
  // A network namespace without a path: runc brings its `lo` up itself, so "none" still has loopback.
  if (input.network === 'none') namespaces.push({ type: 'network' });

  const resources: Record<string, unknown> = {
    // Deny every device, then runc adds back the standard ones it creates (null, zero, full, tty, random, urandom, pts).
    devices: [{ allow: false, access: 'rwm' }],
  };
  if (input.memoryBytes !== undefined) {
    // swap == limit: no swap beyond the limit, so a hog is killed instead of thrashing. runc fails when
    // asked to set swap on a kernel that does not account it, hence the flag.
    resources.memory = input.swapAccounting ? { limit: input.memoryBytes, swap: input.memoryBytes } : { limit: input.memoryBytes };
  }
  if (input.pids !== undefined) resources.pids = { limit: input.pids };

  return {
    ociVersion: '1.0.2',
    root: { path: input.rootfs, readonly: false },
    hostname: input.hostname,
    process: {
      terminal: false,
      user: { uid: input.uid, gid: input.gid, additionalGids: input.additionalGids },
      args: input.args,
      env: input.env,
      cwd: input.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: input.nofile.soft, hard: input.nofile.hard }],
      noNewPrivileges: false,
    },
    mounts: [...defaultMounts(input.insecure), ...input.mounts],
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      resources,
      ...(input.insecure
        ? { maskedPaths: [], readonlyPaths: [] }
        : { maskedPaths: [...MASKED_PATHS], readonlyPaths: [...READONLY_PATHS], seccomp: defaultSeccompProfile() }),
    },
  };
}

/**
 * Docker's effective default since 25.0 (containerd no longer raises it): soft 1024, hard 524288. runc
 * applies rlimits after dropping CAP_SYS_RESOURCE, so neither may exceed the hard limit kiln itself
 * runs with (`callerHard`, from /proc/self/limits), or the container fails to start.
 */
export function nofileLimit(callerHard: number): { soft: number; hard: number } {
  const hard = Math.min(524288, callerHard);
  return { soft: Math.min(1024, hard), hard };
}

/** Env for the process: PATH defaulted, HOME from the user when unset. Later duplicates win, once. */
export function processEnv(env: string[], home: string): string[] {
  const order: string[] = [];
  const values = new Map<string, string>();
  for (const kv of env) {
    const eq = kv.indexOf('=');
    const key = eq === -1 ? kv : kv.slice(0, eq);
    if (key === '') continue;
    if (!values.has(key)) order.push(key);
    values.set(key, eq === -1 ? '' : kv.slice(eq + 1));
  }
  if (!values.has('PATH')) {
    order.unshift('PATH');
    values.set('PATH', DEFAULT_PATH);
  }
  if (!values.has('HOME')) {
    order.push('HOME');
    values.set('HOME', home);
  }
  return order.map((k) => `${k}=${values.get(k)}`);
}
