// What a daemon remembers of its builds: the running ones and the most recent finished ones, with
// their steps, durations, cache hits and errors (what `docker buildx history ls/inspect` shows).
// Kept in memory; a restarted daemon starts a new history.

import type { BuildErrorInfo, ProgressEvent } from '../solver/index.js';

export type BuildState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface StepRecord {
  id: number;
  name: string;
  status: 'started' | 'cached' | 'done' | 'error';
  durationMs?: number;
  /** Why it ran instead of coming from the cache. */
  reason?: string;
  error?: string;
}

export interface BuildRecord {
  id: string;
  /** Who sent it (the client's identity header), for fairness and for reading the list. */
  client: string;
  state: BuildState;
  dockerfile: string;
  target?: string;
  names: string[];
  createdAt: string;
  startedAt?: string;
  completedAt?: string;
  durationMs?: number;
  steps: StepRecord[];
  /** Steps that came from the cache, and all filesystem steps (BuildKit's "cached/total"). */
  cachedSteps: number;
  totalSteps: number;
  imageId?: string;
  error?: BuildErrorInfo;
}

/** Internal vertices ("[internal] load build context") are not steps of the Dockerfile. */
const STEP = /^\[[^\]]*\d+\/\d+\] /;

export class BuildHistory {
  private readonly records = new Map<string, BuildRecord>();

  constructor(private readonly keep = 100) {}

  add(record: Omit<BuildRecord, 'steps' | 'cachedSteps' | 'totalSteps' | 'state' | 'createdAt'>): BuildRecord {
    const r: BuildRecord = { ...record, state: 'queued', createdAt: new Date().toISOString(), steps: [], cachedSteps: 0, totalSteps: 0 };
    this.records.set(r.id, r);
    this.trim();
    return r;
  }

  get(id: string): BuildRecord | undefined {
    return this.records.get(id);
  }

  /** Newest first. */
  list(): BuildRecord[] {
    return [...this.records.values()].reverse();
  }

  started(r: BuildRecord): void {
    r.state = 'running';
    r.startedAt = new Date().toISOString();
  }

  /** Folds a progress event into the record's steps. */
  event(r: BuildRecord, e: ProgressEvent): void {
    if (e.type !== 'vertex') return;
    let step = r.steps.find((s) => s.id === e.id);
    if (!step) {
      step = { id: e.id, name: e.name, status: e.status };
      r.steps.push(step);
    }
    step.status = e.status;
    if (e.durationMs !== undefined) step.durationMs = e.durationMs;
    if (e.reason !== undefined) step.reason = e.reason;
    if (e.error !== undefined) step.error = e.error;
    const steps = r.steps.filter((s) => STEP.test(s.name));
    r.totalSteps = steps.length;
    r.cachedSteps = steps.filter((s) => s.status === 'cached').length;
  }

  finished(r: BuildRecord, outcome: { imageId?: string; error?: BuildErrorInfo }): void {
    r.completedAt = new Date().toISOString();
    r.durationMs = Date.parse(r.completedAt) - Date.parse(r.startedAt ?? r.createdAt);
    if (outcome.error) {
      r.state = outcome.error.cancelled ? 'cancelled' : 'failed';
      r.error = outcome.error;
    } else {
      r.state = 'completed';
      if (outcome.imageId) r.imageId = outcome.imageId;
    }
    this.trim();
  }

  /** Forgets the oldest finished records beyond `keep`; running and queued ones are always kept. */
  private trim(): void {
    let excess = this.records.size - this.keep;
    for (const [id, r] of this.records) {
      if (excess <= 0) break;
      if (r.state === 'queued' || r.state === 'running') continue;
      this.records.delete(id);
      excess--;
    }
  }
}
