// ADD <url>: fetch an http(s) resource (through util/http-request.ts, as the registry client does: no
// undici to load, and the same trusted certificates) to a temporary file, verify --checksum while streaming, and
// report what BuildKit's http source records: the file name from the URL path, the Last-Modified time.
// Remote files are never extracted. Git repositories are git.ts's.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import { STATUS_CODES } from 'node:http';
import * as path from 'node:path';
import { redactCredentials } from '../frontend/urls.js';
import { type HttpResponse, httpRequest } from '../util/http-request.js';

export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadError';
  }
}

export function isHttpUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/** The file name BuildKit gives a downloaded URL: the last element of its path, or "__unnamed__". */
export function urlFilename(url: string): string {
  let p: string;
  try {
    p = new URL(url).pathname;
  } catch {
    return '__unnamed__';
  }
  try {
    p = decodeURIComponent(p);
  } catch {
    // keep it encoded
  }
  const base = path.posix.basename(p);
  return base === '' || base === '.' || base === '..' || base === '/' ? '__unnamed__' : base;
}

const ALGOS: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

export function parseChecksum(spec: string): { algo: string; hex: string } {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(spec);
  if (!m || ALGOS[m[1]!] === undefined || ALGOS[m[1]!] !== m[2]!.length) {
    throw new DownloadError(`invalid --checksum=${spec}: want sha256:<64 hex digits> (or sha384/sha512)`);
  }
  return { algo: m[1]!, hex: m[2]! };
}

export interface Downloaded {
  /** Temporary file holding the content; the caller moves or removes it (see `cleanup`). */
  file: string;
  filename: string;
  size: number;
  /** sha256 digest of the content, "sha256:<hex>". */
  digest: string;
  /** From Last-Modified, when the server sent one. */
  lastModified?: Date;
  cleanup: () => Promise<void>;
}

export interface DownloadOptions {
  checksum?: string;
  /** The download fails when the server stays silent this long (default 300 s); a slow one that keeps sending is waited for. */
  timeoutMs?: number;
  maxBytes?: number;
}

/**
 * A URL with credentials (https://user:token@host/f): they become a Basic Authorization header
 * (what Go's http client, and so BuildKit, does with them), which httpRequest drops when a
 * redirect leaves the URL's origin.
 */
function withoutCredentials(url: string): { url: string; headers: Record<string, string> } {
  const u = new URL(url);
  if (u.username === '' && u.password === '') return { url, headers: {} };
  const auth = Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64');
  u.username = '';
  u.password = '';
  return { url: u.toString(), headers: { authorization: `Basic ${auth}` } };
}

export async function download(rawUrl: string, opts: DownloadOptions = {}): Promise<Downloaded> {
  // Messages name the URL with its credentials redacted; they may reach logs and other people.
  const url = redactCredentials(rawUrl);
  if (!isHttpUrl(rawUrl)) throw new DownloadError(`unsupported URL ${url}: only http and https are supported`);
  const want = opts.checksum !== undefined ? parseChecksum(opts.checksum) : undefined;
  let res: HttpResponse;
  try {
    const plain = withoutCredentials(rawUrl);
    res = await httpRequest(plain.url, { headers: plain.headers, idleTimeoutMs: opts.timeoutMs ?? 300_000 });
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    throw new DownloadError(`failed to fetch ${url}: ${cause?.message ?? (err as Error).message}`);
  }
  if (!res.ok) {
    await res.discard();
    throw new DownloadError(`failed to fetch ${url}: HTTP ${res.status} ${STATUS_CODES[res.status] ?? ''}`.trimEnd());
  }
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'kiln-add-'));
  const cleanup = () => fsp.rm(dir, { recursive: true, force: true });
  const file = path.join(dir, 'content');
  const sha256 = createHash('sha256');
  const check = want && want.algo !== 'sha256' ? createHash(want.algo) : undefined;
  let size = 0;
  try {
    const out = fs.createWriteStream(file, { mode: 0o600 });
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (opts.maxBytes !== undefined && size > opts.maxBytes) throw new DownloadError(`${url} is larger than the ${opts.maxBytes}-byte limit`);
        sha256.update(chunk);
        check?.update(chunk);
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
    } finally {
      await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    }
    const sha = sha256.digest('hex');
    if (want) {
      const got = want.algo === 'sha256' ? sha : check!.digest('hex');
      if (got !== want.hex) {
        throw new DownloadError(`checksum mismatch for ${url}: expected ${want.algo}:${want.hex}, got ${want.algo}:${got}`);
      }
    }
    const lm = res.headers.get('last-modified');
    const lastModified = lm ? new Date(lm) : undefined;
    return {
      file,
      filename: urlFilename(rawUrl),
      size,
      digest: `sha256:${sha}`,
      ...(lastModified && !Number.isNaN(lastModified.getTime()) ? { lastModified } : {}),
      cleanup,
    };
  } catch (err) {
    res.body.destroy();
    await cleanup();
    if (err instanceof DownloadError) throw err;
    throw new DownloadError(`failed to fetch ${url}: ${(err as Error).message}`);
  }
}
