// Digests: the only names blobs have. A digest is validated before it is ever used to build a path
// or URL, so `sha256:../../etc/passwd` and friends are refused at the door.

import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

/** `sha256:<64 lowercase hex>`. A branded string so unchecked text cannot pass for one. */
export type Digest = string & { readonly __digest: unique symbol };

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export class InvalidDigestError extends Error {
  constructor(
    readonly value: string,
    context?: string,
  ) {
    super(`${context ? `${context}: ` : ''}invalid digest ${JSON.stringify(value)} (want sha256:<64 lowercase hex>)`);
    this.name = 'InvalidDigestError';
  }
}

export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/** Validates and brands a digest; `context` names where it came from for the error. */
export function parseDigest(value: string, context?: string): Digest {
  if (!isDigest(value)) throw new InvalidDigestError(value, context);
  return value;
}

/** The hex part of a validated digest: safe as a file name. */
export function digestHex(d: Digest): string {
  return d.slice('sha256:'.length);
}

export function digestFromHex(hex: string): Digest {
  return parseDigest(`sha256:${hex}`);
}

/** Digest of bytes already in memory. */
export function sha256Digest(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

/** Incremental hasher that also counts bytes, for streams whose digest and size must be checked. */
export class Sha256Hasher {
  private readonly hash: Hash = createHash('sha256');
  private bytes = 0;
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
  }
  get size(): number {
    return this.bytes;
  }
  /** May be called once. */
  digest(): Digest {
    return `sha256:${this.hash.digest('hex')}` as Digest;
  }
}

/** A pass-through stream that hashes what flows through it; read `.result()` after 'end'. */
export class DigestingStream extends Transform {
  private readonly hasher = new Sha256Hasher();
  private final?: { digest: Digest; size: number };
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hasher.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.final = { digest: this.hasher.digest(), size: this.hasher.size };
    cb();
  }
  result(): { digest: Digest; size: number } {
    if (!this.final) throw new Error('DigestingStream.result() called before the stream ended');
    return this.final;
  }
}

export function sha256(): Sha256Hasher {
  return new Sha256Hasher();
}
