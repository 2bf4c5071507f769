// Layers of built steps, computed when an export needs them and remembered per snapshot and
// compression, so later exports (and later builds hitting the cache) reuse the same blob. A build
// with SOURCE_DATE_EPOCH gets layers whose file times are clamped to it: another blob of the same
// snapshot, remembered apart ("<snapshot>.<compression>.sde<epoch>"), so builds with another epoch
// or none never reuse it. So is a layer compressed at a level other than the default
// (compression-level): "<snapshot>.<compression>-l<level>[.sde<epoch>]".
//
// An uncompressed layer asked for with `defer` (an image that stays in kiln's store) is only hashed:
// the content store records its digest with a note naming the snapshot (and epoch), and makes the tar
// from the snapshot, through makeDeferred, the first time something reads it (a push, a save, a load
// into Docker). The snapshot is immutable, and the walk and the tar are deterministic, so the bytes
// made later are the bytes hashed now (the store checks). GC makes such blobs before it removes a
// snapshot they come from (deferredSnapshot tells it which).

import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { ContentStore } from '../cache/content-store.js';
import { parseDigest, type Descriptor, type Digest } from '../oci/index.js';
import type { Compression, Snapshotter } from '../snapshotter/index.js';
import type { RootLayout } from './state-root.js';
import { uniqueKey } from './mounted.js';
import { replaceFile } from '../util/atomic-file.js';

export type LayerRecord = { empty: true } | { empty: false; descriptor: Descriptor; diffId: Digest };

export class LayerRecords {
  private readonly inflight = new Map<string, Promise<LayerRecord>>();

  constructor(
    private readonly layout: RootLayout,
    private readonly snapshotter: Snapshotter,
    private readonly store: ContentStore,
  ) {}

  /**
   * The layer a committed step snapshot adds over its parent ({empty: true} when it changes nothing);
   * with `epoch` (seconds), file times newer than it are written as it.
   */
  get(snapshot: string, compression: Compression, epoch?: number, level?: number, opts: { defer?: boolean } = {}): Promise<LayerRecord> {
    const lvl = compression === 'none' ? undefined : level;
    const id = recordId(snapshot, compression, epoch, lvl);
    let p = this.inflight.get(id);
    if (!p) {
      const defer = compression === 'none' && opts.defer === true;
      p = this.load(snapshot, compression, epoch, path.join(layersDir(this.layout), `${id}.json`), lvl, defer);
      this.inflight.set(id, p);
      p.catch(() => this.inflight.delete(id));
    }
    return p;
  }

  /** Forgets what it remembered of a snapshot's layers (GC removed the snapshot or its blobs). */
  forget(snapshot: string): void {
    for (const id of this.inflight.keys()) if (RECORD_ID.exec(id)?.[1] === snapshot) this.inflight.delete(id);
  }

  /** Records a layer known by other means (imported cache), so exports reuse that very blob. */
  async remember(snapshot: string, compression: Compression, rec: LayerRecord): Promise<void> {
    const id = `${snapshot}.${compression}`;
    await writeRecord(path.join(layersDir(this.layout), `${id}.json`), rec);
    this.inflight.set(id, Promise.resolve(rec));
  }

  private async load(
    snapshot: string,
    compression: Compression,
    epoch: number | undefined,
    recordFile: string,
    level: number | undefined,
    defer: boolean,
  ): Promise<LayerRecord> {
    const known = await readRecord(recordFile);
    if (known && (known.empty || (await this.store.has(known.descriptor.digest)))) return known;
    // Deferred: only hashed, the store keeps a note of what makes it. Else written to a private file.
    const dest = defer ? undefined : path.join(this.layout.tmp, uniqueKey('layer'));
    if (dest !== undefined) await fsp.mkdir(this.layout.tmp, { recursive: true });
    try {
      const diff = await this.snapshotter.diff(snapshot, {
        ...(dest !== undefined && { dest }),
        compression,
        ...(epoch !== undefined && { clampMtime: epoch }),
        ...(level !== undefined && { level }),
      });
      let rec: LayerRecord;
      if (diff.empty) {
        rec = { empty: true };
      } else {
        const blob = { digest: parseDigest(diff.digest), size: diff.size };
        // The diff hashed the blob as it wrote it, in a private file: move it in rather than copy it.
        const descriptor =
          dest === undefined
            ? await this.store.defer(blob, deferredSource(snapshot, epoch), diff.mediaType)
            : await this.store.adopt(blob, dest, diff.mediaType);
        rec = { empty: false, descriptor, diffId: parseDigest(diff.diffID) };
      }
      await writeRecord(recordFile, rec);
      return rec;
    } finally {
      if (dest !== undefined) await fsp.rm(dest, { force: true });
    }
  }

  /**
   * The content store's maker of deferred layers: writes the uncompressed layer `source` names
   * (as deferredSource made it) to `dest`.
   */
  async makeDeferred(source: string, dest: string): Promise<{ digest: Digest; size: number }> {
    const from = parseDeferredSource(source);
    if (!from) throw new Error(`not a deferred layer: ${source}`);
    if (!(await this.snapshotter.stat(from.snapshot).catch(() => undefined)))
      throw new Error(`the build step snapshot ${from.snapshot} it was made from is gone`);
    const diff = await this.snapshotter.diff(from.snapshot, { dest, compression: 'none', ...(from.epoch !== undefined && { clampMtime: from.epoch }) });
    if (diff.empty) throw new Error(`snapshot ${from.snapshot} has no changes`);
    return { digest: parseDigest(diff.digest), size: diff.size };
  }
}

/** How a deferred layer's note names what makes it: the snapshot, and the epoch its times are clamped to. */
function deferredSource(snapshot: string, epoch: number | undefined): string {
  return JSON.stringify(epoch === undefined ? { layerOf: snapshot } : { layerOf: snapshot, sde: epoch });
}

function parseDeferredSource(source: string): { snapshot: string; epoch?: number } | undefined {
  try {
    const v = JSON.parse(source) as { layerOf?: unknown; sde?: unknown };
    if (typeof v.layerOf !== 'string') return undefined;
    return typeof v.sde === 'number' ? { snapshot: v.layerOf, epoch: v.sde } : { snapshot: v.layerOf };
  } catch {
    return undefined;
  }
}

/** The snapshot a deferred blob's source names (GC makes the blob before removing it); undefined for other sources. */
export function deferredSnapshot(source: string): string | undefined {
  return parseDeferredSource(source)?.snapshot;
}

/** A layer record's name: snapshot, compression (and level) and the epoch its file times are clamped to. */
function recordId(snapshot: string, compression: Compression, epoch: number | undefined, level?: number): string {
  const c = level === undefined ? compression : `${compression}-l${level}`;
  return epoch === undefined ? `${snapshot}.${c}` : `${snapshot}.${c}.sde${epoch}`;
}

/** Where the records live: one `<recordId>.json` each. */
function layersDir(layout: RootLayout): string {
  return path.join(layout.records, 'layers');
}

/** Splits a record's name (as recordId makes them) into snapshot, compression, epoch and level. */
const RECORD_ID = /^(.+)\.(gzip|zstd|none)(?:-l(\d+))?(?:\.sde(-?\d+))?$/;

/** One layer record on disk, as GC sees it: the blob it keeps alive (none when empty or torn). */
export interface LayerRecordFile {
  file: string;
  digest?: Digest;
  mtime: Date;
}

/**
 * Every layer record under the root, by the snapshot it belongs to, and the files there that are
 * no record (a killed write's temporaries). GC reads them here so that their names stay this
 * module's business.
 */
export async function listLayerRecords(layout: RootLayout): Promise<{ bySnapshot: Map<string, LayerRecordFile[]>; stray: string[] }> {
  const dir = layersDir(layout);
  const bySnapshot = new Map<string, LayerRecordFile[]>();
  const stray: string[] = [];
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    const file = path.join(dir, name);
    const m = name.endsWith('.json') ? RECORD_ID.exec(name.slice(0, -'.json'.length)) : null;
    if (!m) {
      stray.push(file);
      continue;
    }
    let digest: Digest | undefined;
    try {
      const rec = JSON.parse(await fsp.readFile(file, 'utf8')) as { empty?: boolean; descriptor?: { digest?: string } };
      if (!rec.empty && typeof rec.descriptor?.digest === 'string') digest = rec.descriptor.digest as Digest;
    } catch {
      // torn: the solver recomputes it; the file is still the step's to remove
    }
    const mtime = (await fsp.stat(file).catch(() => undefined))?.mtime ?? new Date(0);
    const list = bySnapshot.get(m[1]!) ?? [];
    list.push({ file, ...(digest ? { digest } : {}), mtime });
    bySnapshot.set(m[1]!, list);
  }
  return { bySnapshot, stray };
}

async function readRecord(file: string): Promise<LayerRecord | undefined> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8')) as LayerRecord;
  } catch {
    return undefined; // missing or torn: recompute
  }
}

async function writeRecord(file: string, rec: LayerRecord): Promise<void> {
  await replaceFile(file, JSON.stringify(rec), { mkdir: true });
}
