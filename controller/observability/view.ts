/**
 * The dashboard's in-memory view, fed by the controller as a ControllerObserver: the statuses it
 * reads and writes (the very objects the status files are written from), its events, its health
 * rounds (GPU telemetry), its reconcile timings. The HTTP server (web/server.ts) and /metrics
 * (metrics.ts) read it; subscribers (Server-Sent Events) hear each change. It also
 * derives the progress estimate written into each status (core/progress.ts) and turns status
 * changes into notifications (core/notifications.ts).
 */
import type { Cluster } from '../../config/cluster.ts';
import type { SpecState } from '../api/job-state.ts';
import type { RunPart } from '../api/run.ts';
import type { JobStatus } from '../api/status.ts';
import type { NodeHealth } from '../backends/health.ts';
import { type Notification, notificationOf } from '../core/notifications.ts';
import { estimateProgress, type ProgressPoint, pointOf } from '../core/progress.ts';
import type { JobEvent } from '../store/store.ts';
import type { AttemptSeries, MetricsHistory } from './history.ts';
import type { ControllerObserver } from './observer.ts';
import { Telemetry } from './telemetry.ts';
import { type JobRow, jobRowOf, type NodeCard, nodeCardOf } from './web/rows.ts';

export type ViewChange =
  | { type: 'job'; name: string }
  | { type: 'removed'; name: string }
  | { type: 'nodes' }
  | { type: 'event'; event: JobEvent };

interface JobEntry {
  status?: JobStatus;
  spec?: { nodes?: unknown; owner?: string };
  /** Progress points of the current run (by runId), for the rate. */
  points: { runId: string; list: ProgressPoint[] };
  /** Failures seen, by key, and how many per reason (ugro_job_restarts_total). */
  failureKeys: Set<string>;
  restartsByReason: Map<string, number>;
  /** When progress (the step) last moved, ms. */
  lastProgressMs?: number;
  lastStep?: number;
}

export interface ViewOptions {
  cluster: Cluster;
  now?: () => number;
  telemetry?: Telemetry;
  history?: MetricsHistory;
  /** Each notification the status changes call for. */
  notify?: (n: Notification) => void;
  /** The controller's run parts of a job (for the loss curve); set once the controller exists. */
  partsOf?: (job: string) => RunPart[];
  maxEvents?: number;
}

const MAX_POINTS = 256;

export class DashboardView implements ControllerObserver {
  readonly telemetry: Telemetry;
  readonly history?: MetricsHistory;
  private readonly jobsMap = new Map<string, JobEntry>();
  private readonly healthOf = new Map<string, NodeHealth>();
  private readonly recent: JobEvent[] = [];
  private readonly subscribers = new Set<(c: ViewChange) => void>();
  private readonly now: () => number;
  /** Reconcile timings since the last read by /metrics (seconds). */
  private readonly timings: number[] = [];
  partsOf: (job: string) => RunPart[];
  /** The controller's queue depth, once wired. */
  queueDepth: () => { waiting: number; running: number } = () => ({ waiting: 0, running: 0 });

  constructor(private readonly o: ViewOptions) {
    this.now = o.now ?? Date.now;
    this.telemetry = o.telemetry ?? new Telemetry();
    this.history = o.history;
    this.partsOf = o.partsOf ?? (() => []);
  }

  // ---- ControllerObserver

  read(name: string, spec: SpecState, status: JobStatus | undefined): void {
    const e = this.entry(name);
    if (spec.kind === 'valid') {
      const ann = spec.job.metadata.annotations ?? {};
      e.spec = { nodes: spec.job.spec.nodes, ...(ann['ugro.dev/owner'] ? { owner: ann['ugro.dev/owner'] } : {}) };
    }
    if (spec.kind === 'deleted' && !status) {
      this.remove(name);
      return;
    }
    if (status && !e.status) {
      this.noteFailures(e, status);
      this.setStatus(name, e, status);
    }
  }

  decorate(name: string, status: JobStatus): JobStatus {
    const e = this.entry(name);
    const nowMs = this.now();
    if (status.runId && e.points.runId !== status.runId) e.points = { runId: status.runId, list: [] };
    const pt = pointOf(status.progress, nowMs);
    if (pt) this.addPoint(e, pt);
    const est = estimateProgress(status.progress, e.points.list);
    const running = status.phase === 'Running' || status.phase === 'Starting';
    const estimate: NonNullable<JobStatus['estimate']> = {};
    if (est.percent !== undefined) estimate.percent = round(est.percent, 2);
    if (running && est.samplesPerS !== undefined) estimate.samplesPerS = round(est.samplesPerS, 2);
    if (running && est.stepsPerS !== undefined) estimate.stepsPerS = round(est.stepsPerS, 4);
    if (running && est.etaSeconds !== undefined) {
      estimate.etaSeconds = Math.round(est.etaSeconds);
      estimate.at = new Date(nowMs).toISOString();
    }
    const { estimate: _old, ...rest } = status;
    return Object.keys(estimate).length ? { ...rest, estimate } : rest;
  }

  persisted(name: string, status: JobStatus | null, events: readonly JobEvent[]): void {
    const e = this.jobsMap.get(name);
    const prev = e?.status;
    if (status === null) this.remove(name);
    else {
      const entry = this.entry(name);
      this.noteFailures(entry, status);
      this.setStatus(name, entry, status);
      const n = notificationOf(name, prev, status, new Date(this.now()).toISOString(), this.o.cluster.name);
      if (n) this.o.notify?.(n);
    }
    for (const ev of events) {
      this.recent.push(ev);
      if (this.recent.length > (this.o.maxEvents ?? 1000)) this.recent.shift();
      this.emit({ type: 'event', event: ev });
    }
  }

  health(nodes: readonly NodeHealth[]): void {
    for (const n of nodes) this.healthOf.set(n.name, n);
    this.telemetry.record(nodes, this.now());
    this.emit({ type: 'nodes' });
    // On the health cadence, the running jobs' metrics are read on (the ETA and the live curve).
    for (const [name, e] of this.jobsMap) if (e.status?.phase === 'Running') void this.refreshLoss(name);
  }

  reconciled(_name: string, ms: number): void {
    this.timings.push(ms / 1000);
    if (this.timings.length > 10_000) this.timings.shift();
  }

  // ---- readers

  subscribe(fn: (c: ViewChange) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** Reconcile durations (s) since the last call. */
  takeTimings(): number[] {
    return this.timings.splice(0);
  }

  jobNames(): string[] {
    return [...this.jobsMap.keys()].filter((n) => this.jobsMap.get(n)?.status).sort();
  }

  status(name: string): JobStatus | undefined {
    return this.jobsMap.get(name)?.status;
  }

  row(name: string): JobRow | undefined {
    const e = this.jobsMap.get(name);
    return e?.status ? jobRowOf(name, e.status, this.now(), e.spec) : undefined;
  }

  rows(): JobRow[] {
    const out: JobRow[] = [];
    const now = this.now();
    for (const [name, e] of this.jobsMap) if (e.status) out.push(jobRowOf(name, e.status, now, e.spec));
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Restarts by failure reason since this controller started (seeded from the status's failures). */
  restartsByReason(name: string): Map<string, number> {
    return this.jobsMap.get(name)?.restartsByReason ?? new Map();
  }

  /** When the job's step last moved (ms), as this controller saw it. */
  lastProgressMs(name: string): number | undefined {
    return this.jobsMap.get(name)?.lastProgressMs;
  }

  nodeHealth(): NodeHealth[] {
    return this.o.cluster.hosts.map((h) => this.healthOf.get(h.name)).filter((n): n is NodeHealth => !!n);
  }

  nodes(sinceMs = this.now() - 3_600_000): NodeCard[] {
    return this.o.cluster.hosts.map((h) =>
      nodeCardOf(h.name, this.healthOf.get(h.name), this.telemetry.gpus(h.name), (i) =>
        this.telemetry.series(h.name, i, sinceMs),
      ),
    );
  }

  events(job?: string, limit = 50): JobEvent[] {
    const all = job ? this.recent.filter((e) => e.job === job) : this.recent;
    return all.slice(-limit);
  }

  /** Events from before this controller started (the events file), merged in at start. */
  seedEvents(events: readonly JobEvent[]): void {
    this.recent.unshift(...events);
    while (this.recent.length > (this.o.maxEvents ?? 1000)) this.recent.shift();
  }

  /** The job's loss curve: what is held, after reading on. */
  async refreshLoss(name: string): Promise<AttemptSeries[]> {
    const st = this.status(name);
    if (!this.history || !st) return [];
    const series = await this.history.refresh(name, this.partsOf(name), st.specHash);
    const e = this.jobsMap.get(name);
    const cur = series.find((s) => `${name}-${st.specHash}-a${s.attempt}` === st.runId);
    if (e && cur && st.runId) {
      if (e.points.runId !== st.runId) e.points = { runId: st.runId, list: [] };
      for (const p of cur.points.slice(-MAX_POINTS)) {
        if (Number.isFinite(p.time)) this.addPoint(e, { step: p.step, atMs: p.time * 1000 });
      }
    }
    return series;
  }

  // ---- internals

  private entry(name: string): JobEntry {
    let e = this.jobsMap.get(name);
    if (!e) {
      e = { points: { runId: '', list: [] }, failureKeys: new Set(), restartsByReason: new Map() };
      this.jobsMap.set(name, e);
    }
    return e;
  }

  private addPoint(e: JobEntry, p: ProgressPoint): void {
    const list = e.points.list;
    if (list.some((x) => x.step === p.step)) return;
    list.push(p);
    list.sort((a, b) => a.atMs - b.atMs);
    if (list.length > MAX_POINTS) list.splice(0, list.length - MAX_POINTS);
  }

  private noteFailures(e: JobEntry, s: JobStatus): void {
    for (const f of s.failures ?? []) {
      const key = `${f.attempt}/${f.time}/${f.reason}`;
      if (e.failureKeys.has(key)) continue;
      e.failureKeys.add(key);
      e.restartsByReason.set(f.reason, (e.restartsByReason.get(f.reason) ?? 0) + 1);
    }
    if (e.failureKeys.size > 200) e.failureKeys = new Set([...e.failureKeys].slice(-100));
  }

  private setStatus(name: string, e: JobEntry, s: JobStatus): void {
    const step = typeof s.progress?.step === 'number' ? s.progress.step : undefined;
    if (step !== undefined && step !== e.lastStep) {
      e.lastStep = step;
      e.lastProgressMs = this.now();
    }
    e.status = s;
    this.emit({ type: 'job', name });
  }

  private remove(name: string): void {
    if (!this.jobsMap.has(name)) return;
    this.jobsMap.delete(name);
    this.history?.forget(name);
    this.emit({ type: 'removed', name });
  }

  private emit(c: ViewChange): void {
    for (const s of this.subscribers) {
      try {
        s(c);
      } catch {
        /* a subscriber's failure is its own */
      }
    }
  }
}

const round = (v: number, digits: number) => Number(v.toFixed(digits));
