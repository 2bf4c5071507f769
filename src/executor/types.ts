// The executor's boundary: plain data in, an exit status out.

/** An extra mount for one RUN step (cache/bind/secret mounts are prepared by the caller). */
export type ExecMount =
  /** A host directory or file (a snapshot's mount point, a cache dir, the context). */
  | { type: 'bind'; source: string; target: string; readonly: boolean }
  /** A fresh tmpfs; `size` in bytes. */
  | { type: 'tmpfs'; target: string; size?: number; mode?: number }
  /**
   * A read-only file whose content kiln writes into the bundle (secrets, heredoc scripts): it never
   * touches the rootfs, so it cannot end up in the layer.
   */
  | { type: 'file'; target: string; content: string | Uint8Array; mode?: number; uid?: number; gid?: number };

export interface ExecLimits {
  memoryBytes?: number;
  pids?: number;
}

export interface RunOptions {
  /** An already mounted root file system (the snapshotter mounted it). Written to by the step. */
  rootfs: string;
  /** kiln's state directory: runc's state goes to <stateDir>/runc, bundles to <stateDir>/bundles. */
  stateDir: string;
  args: string[];
  /** "K=V" entries. PATH gets Docker's default when absent, HOME the user's home. */
  env?: string[];
  /** Working directory inside the container; created (root-owned, 0755) when missing. Default "/". */
  cwd?: string;
  /** As in USER: name, uid, name:group, uid:gid. Resolved against the rootfs's own /etc files. */
  user?: string;
  /** Default "kiln". */
  hostname?: string;
  /** 'none' gets a fresh network namespace with only `lo` (up); 'host' shares the host's. */
  network: 'host' | 'none';
  /** RUN --security=insecure, once the security.insecure entitlement is granted (see buildSpec). */
  insecure?: boolean;
  /** Extra /etc/hosts lines (--add-host). */
  extraHosts?: { host: string; ip: string }[];
  mounts?: ExecMount[];
  limits?: ExecLimits;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  signal?: AbortSignal;
  /**
   * The run carries secrets (secret file mounts, secret environment variables): the bundle, which
   * holds them and config.json, lives on a private tmpfs, unmounted after the run, so their bytes
   * never touch kiln's disk.
   */
  sensitive?: boolean;
  /** Bytes of output (stdout and stderr, interleaved) kept for `outputTail`. Default 64 KiB. */
  tailBytes?: number;
  /** The runc binary. Default "runc" from PATH. */
  runc?: string;
}

export interface RunResult {
  /** The process's exit status; 128+N when it died of signal N (runc's convention, as Docker's). */
  exitCode: number;
  /** Set when kiln itself killed the step (abort): "SIGKILL". */
  signal?: string;
  /** The last `tailBytes` of output, stdout and stderr interleaved in arrival order, for error messages. */
  outputTail: string;
}

export class ExecutorError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ExecutorError';
  }
}
