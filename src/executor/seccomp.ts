// The seccomp profile for RUN steps.
//
// Docker's default profile is an allowlist; ours is written the other way round on purpose: everything
// is allowed except the syscalls Docker's profile refuses to a container that holds Docker's default
// capabilities (no CAP_SYS_ADMIN, SYS_MODULE, SYS_PTRACE (but see ptrace), SYS_TIME, SYS_BOOT, ...).
// A build runs arbitrary toolchains, some newer than the profile; an allowlist breaks them with EPERM
// on every syscall it has not heard of, while the dangerous ones are a short, stable list. The cost is
// that a new dangerous syscall is allowed until it is added here: keep the list below current.
//
// Denied calls fail with EPERM, as under Docker. clone3 fails with ENOSYS instead (as Docker does),
// because seccomp cannot look inside its struct argument: libc then falls back to clone(2), whose flags
// we can check.

/** Syscalls Docker's default profile denies to an unprivileged container (by kernel name). */
const DENIED: readonly string[] = [
  // Mounting and namespaces (CAP_SYS_ADMIN in Docker's profile).
  'mount',
  'umount',
  'umount2',
  'pivot_root',
  'fsopen',
  'fsconfig',
  'fsmount',
  'fspick',
  'move_mount',
  'open_tree',
  'mount_setattr',
  'unshare',
  'setns',
  // Kernel code and the machine.
  'init_module',
  'finit_module',
  'delete_module',
  'create_module',
  'query_module',
  'get_kernel_syms',
  'kexec_load',
  'kexec_file_load',
  'reboot',
  'swapon',
  'swapoff',
  'acct',
  'bpf',
  'perf_event_open',
  'lookup_dcookie',
  'fanotify_init',
  'syslog',
  'quotactl',
  'quotactl_fd',
  'nfsservctl',
  'sethostname',
  'setdomainname',
  'vhangup',
  // Keyrings are not namespaced.
  'keyctl',
  'add_key',
  'request_key',
  // File handles bypass the mount namespace (open_by_handle_at is the "shocker" escape).
  'open_by_handle_at',
  'name_to_handle_at',
  // Poking other processes beyond ptrace (CAP_SYS_PTRACE in Docker's profile).
  'kcmp',
  'pidfd_getfd',
  'process_madvise',
  // Memory policy and page migration (CAP_SYS_NICE in Docker's profile).
  'get_mempolicy',
  'set_mempolicy',
  'set_mempolicy_home_node',
  'mbind',
  'move_pages',
  'migrate_pages',
  // Clocks (CAP_SYS_TIME), raw I/O ports (CAP_SYS_RAWIO).
  'settimeofday',
  'stime',
  'clock_settime',
  'clock_settime64',
  'iopl',
  'ioperm',
  // userfaultfd makes kernel races easy to win; obsolete calls nobody needs.
  'userfaultfd',
  'uselib',
  'ustat',
  'sysfs',
  '_sysctl',
  'vm86',
  'vm86old',
];

// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
const NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];
const AF_VSOCK = 40;
const EPERM = 1;
const ENOSYS = 38;

export interface SeccompSyscallRule {
  names: string[];
  action: 'SCMP_ACT_ERRNO' | 'SCMP_ACT_ALLOW';
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: string }[];
}

export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
  syscalls: SeccompSyscallRule[];
}

/** libseccomp architecture names: the native one plus the compat ABIs a process could switch to. */
function architectures(arch: string = process.arch): string[] {
  switch (arch) {
    case 'x64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    case 'ppc64':
      return ['SCMP_ARCH_PPC64LE'];
    case 's390x':
      return ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'];
    case 'riscv64':
      return ['SCMP_ARCH_RISCV64'];
    default:
      return [];
  }
}

export function defaultSeccompProfile(arch: string = process.arch): SeccompProfile {
  // s390 passes clone's flags second; everyone else first.
  const cloneFlagsArg = arch === 's390x' ? 1 : 0;
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: architectures(arch),
    syscalls: [
      { names: [...DENIED], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      // One rule per flag: separate rules are OR-ed, which expresses "any namespace flag set".
      ...NAMESPACE_FLAGS.map((flag) => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO' as const,
        errnoRet: EPERM,
        args: [{ index: cloneFlagsArg, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      })),
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
      // vsock reaches the hypervisor host, outside any network namespace.
      { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM, args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_EQ' }] },
    ],
  };
}
