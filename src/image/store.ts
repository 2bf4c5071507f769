// kiln's own image store: names ("docker.io/library/app:1.0") pointing at manifests in the content
// store. `-t` writes here, `kiln images` lists it, and FROM finds local images here first, as
// `docker build` does with the daemon's images.

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Descriptor, Digest } from '../oci/index.js';

export interface ImageRecord {
  name: string;
  manifest: Descriptor;
  config: Digest;
  /** Sum of the compressed layer sizes, for `kiln images`. */
  size: number;
  created: string;
}

interface StoreFile {
  version: 1;
  images: Record<string, ImageRecord>;
}

export class ImageStore {
  constructor(private readonly file: string) {}

  async list(): Promise<ImageRecord[]> {
    return Object.values((await this.read()).images).sort((a, b) => a.name.localeCompare(b.name));
  }

  async get(name: string): Promise<ImageRecord | undefined> {
    return (await this.read()).images[name];
  }

  async put(records: ImageRecord[]): Promise<void> {
    await this.update((f) => {
      for (const r of records) f.images[r.name] = r;
    });
  }

  async remove(name: string): Promise<boolean> {
    let had = false;
    await this.update((f) => {
      had = name in f.images;
      delete f.images[name];
    });
    return had;
  }

  private async read(): Promise<StoreFile> {
    try {
      const parsed = JSON.parse(await fsp.readFile(this.file, 'utf8')) as StoreFile;
      if (parsed.version !== 1 || typeof parsed.images !== 'object') throw new Error('unknown format');
      return parsed;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, images: {} };
      throw new Error(`image store ${this.file} is unreadable: ${(err as Error).message}`);
    }
  }

  // Read-modify-write under a lock file, replaced atomically, so two builds tagging at once in two
  // processes on one root neither lose a name nor leave a torn file.
  private async update(change: (f: StoreFile) => void): Promise<void> {
    await fsp.mkdir(path.dirname(this.file), { recursive: true });
    const release = await acquireLock(this.file + '.lock');
    try {
      const f = await this.read();
      change(f);
      const tmp = `${this.file}.${process.pid}.tmp`;
      await fsp.writeFile(tmp, JSON.stringify(f, null, 1));
      await fsp.rename(tmp, this.file);
    } finally {
      await release();
    }
  }
}

const LOCK_STALE_MS = 30_000;

async function acquireLock(lockPath: string): Promise<() => Promise<void>> {
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await fsp.open(lockPath, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      return () => fsp.rm(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A holder that was killed leaves its lock behind; an old lock is taken over.
      const st = await fsp.stat(lockPath).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > LOCK_STALE_MS) await fsp.rm(lockPath, { force: true });
      if (attempt > 2000) throw new Error(`timed out waiting for lock ${lockPath}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
