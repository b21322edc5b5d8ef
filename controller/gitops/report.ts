/**
 * What the git source tells others: each job's source info for reconcile (`infoFor`, and which jobs'
 * info a sync changed), and state.json for the CLI. It reads the applied state (apply.ts), the
 * fetch's state (kept by source.ts) and the last `ugro sync` answered (sync-requests.ts).
 */
import { join } from 'node:path';
import type { JobSourceInfo } from '../api/job-source.ts';
import { writeFileAtomic } from '../store/files.ts';
import { isJobName } from '../store/store.ts';
import type { Applier } from './apply.ts';
import { type GitStateFile, STATE_VERSION } from './state.ts';
import { type JobTree, jobInfo, readyOf, type SourceState } from './sync-plan.ts';
import type { SyncRequests } from './sync-requests.ts';

/** The fetch's state: source.ts writes it, the report reads it. */
export interface FetchState {
  fetchError?: string;
  failures: number;
  fetched?: string;
  neverFetched: boolean;
  refused?: { revision: string; why: string; tree?: JobTree };
  lastFetchAt?: string;
  lastSuccessAt?: string;
  nextFetchAt?: string;
}

/** What the report shows of the source's options (GitSourceOptions, source.ts). */
export interface ReportOptions {
  url: string;
  branch: string;
  path: string;
  intervalMs: number;
  prune: boolean;
  pruneAll: boolean;
  requireSigned: boolean;
}

export class SourceReport {
  private readonly lastInfo = new Map<string, string>();
  private lastStateText?: string;
  private lastSyncKey?: string;

  constructor(
    private readonly o: ReportOptions,
    private readonly stateDir: string,
    private readonly applier: Applier,
    private readonly fetch: FetchState,
    private readonly requests: SyncRequests,
  ) {}

  /** After each sync: tell the controller which jobs' source info changed; update state.json. */
  async afterSync(notify: (names: string[]) => void): Promise<void> {
    // An idle fetch (nothing moved, nothing failed anew) changes no job's info: skip the walk.
    const key = JSON.stringify([
      this.applier.manifest.head,
      this.fetch.fetchError,
      this.fetch.refused?.revision,
      this.applier.guard,
      this.applier.pruned.size,
    ]);
    if (key === this.lastSyncKey) {
      await this.writeState();
      return;
    }
    this.lastSyncKey = key;
    const names = new Set([
      ...this.applier.manifest.jobs.keys(),
      ...this.applier.pruned.keys(),
      ...this.lastInfo.keys(),
    ]);
    for (const n of this.applier.tree?.jobs.keys() ?? []) names.add(n);
    const changed: string[] = [];
    for (const n of names) {
      const info = await this.infoFor(n);
      const text = info ? JSON.stringify(info) : '';
      if ((this.lastInfo.get(n) ?? '') !== text) changed.push(n);
      if (text) this.lastInfo.set(n, text);
      else this.lastInfo.delete(n);
    }
    if (changed.length) notify(changed);
    await this.writeState();
  }

  sourceState(): SourceState {
    return {
      url: this.o.url,
      branch: this.o.branch,
      ...(this.applier.manifest.head ? { applied: this.applier.manifest.head } : {}),
      ...(this.fetch.fetchError ? { fetchError: this.fetch.fetchError } : {}),
      ...(this.fetch.refused
        ? { refused: { revision: this.fetch.refused.revision, why: this.fetch.refused.why } }
        : {}),
      neverFetched: this.fetch.neverFetched && !this.applier.manifest.head,
    };
  }

  async infoFor(name: string): Promise<JobSourceInfo | undefined> {
    if (!isJobName(name)) return undefined;
    const local = await this.applier.localOf(name);
    const applied = this.applier.manifest.jobs.get(name);
    return jobInfo({
      name,
      source: this.sourceState(),
      tree: this.applier.tree,
      ...(this.fetch.refused?.tree ? { refusedTree: this.fetch.refused.tree } : {}),
      ...(applied ? { applied } : {}),
      ...(local ? { local } : {}),
      ...(this.applier.pruned.has(name) ? { prunedAt: this.applier.pruned.get(name) } : {}),
      ...(this.applier.keptWhy.has(name) ? { keptWhy: this.applier.keptWhy.get(name) } : {}),
      ...(this.applier.manifest.rewrittenFrom && this.applier.manifest.rewrittenJobs.includes(name)
        ? { rewrittenFrom: this.applier.manifest.rewrittenFrom }
        : {}),
    });
  }

  /** state.json for the CLI; written when anything but the fetch times changed (or `force`). */
  async writeState(force = false): Promise<void> {
    const headCommit = this.applier.manifest.head;
    const subject = this.applier.manifest.headSubject;
    const s = this.sourceState();
    const ready = readyOf(s);
    const doc: GitStateFile = {
      v: STATE_VERSION,
      active: true,
      pid: process.pid,
      url: this.o.url,
      branch: this.o.branch,
      path: this.o.path,
      intervalSeconds: this.o.intervalMs / 1000,
      prune: this.o.prune,
      pruneAll: this.o.pruneAll,
      requireSigned: this.o.requireSigned,
      ...(headCommit ? { applied: headCommit } : {}),
      ...(subject ? { appliedSubject: subject } : {}),
      ...(this.fetch.fetched ? { fetched: this.fetch.fetched } : {}),
      ready: ready.ready,
      reason: ready.readyReason,
      message: ready.readyMessage,
      failures: this.fetch.failures,
      ...(this.fetch.refused
        ? { refused: { revision: this.fetch.refused.revision, why: this.fetch.refused.why } }
        : {}),
      ...(this.applier.guard ? { guard: this.applier.guard } : {}),
      outOfSync: [...this.lastInfo.entries()]
        .filter(([, t]) => (JSON.parse(t) as JobSourceInfo).synced === false)
        .map(([n]) => n)
        .slice(0, 100),
      ignored: this.applier.ignored.slice(0, 100),
      ...(this.requests.lastRequest ? { request: this.requests.lastRequest } : {}),
    };
    const key = JSON.stringify(doc);
    if (!force && key === this.lastStateText) return;
    this.lastStateText = key;
    const full: GitStateFile = {
      ...doc,
      ...(this.fetch.lastFetchAt ? { lastFetchAt: this.fetch.lastFetchAt } : {}),
      ...(this.fetch.lastSuccessAt ? { lastSuccessAt: this.fetch.lastSuccessAt } : {}),
      ...(this.fetch.nextFetchAt ? { nextFetchAt: this.fetch.nextFetchAt } : {}),
    };
    await writeFileAtomic(join(this.stateDir, 'state.json'), `${JSON.stringify(full, null, 1)}\n`);
  }
}
