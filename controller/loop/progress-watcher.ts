/**
 * Progress between reconciles. A running job is reconciled every 30 s (its waiters wake it when
 * a part ends), so the step in its status would be up to 30 s old. Each tick (every second) this
 * asks every host that holds live parts of this controller's running jobs, in ONE exec per host
 * (progress.sh), for the newest metrics line of each of those run dirs, passing what it got last
 * time so that the host answers only for files that changed. A changed line of a run's progress
 * part (core/live-progress.ts) goes to `onProgress`; the controller writes it into the status.
 *
 * Never two reads of one host at once; a host liveness knows is down is not asked (liveness
 * retries it), and a host whose read fails is asked again after a backoff (2 s doubling to 60 s).
 * With nothing running, a tick is an in-memory look at the run parts and nothing more.
 */
import type { Host } from '../../config/cluster.ts';
import type { Metrics } from '../api/run.ts';
import type { ProgressRead, ProgressReader } from '../backends/api.ts';
import type { Logger } from '../base/log.ts';
import { type ProgressTarget, progressPart } from '../core/live-progress.ts';

export interface ProgressUpdate {
  job: string;
  runId: string;
  host: string;
  dir: string;
  metrics: Metrics;
}

export interface ProgressWatcherOptions {
  runtime: ProgressReader;
  /** Hosts by name (the cluster's). */
  host: (name: string) => Host | undefined;
  /** Host -> the run dirs to read there now (core/live-progress.ts progressTargets). */
  targets: () => Map<string, ProgressTarget[]>;
  /** Not asked this tick: the host is known not to answer (liveness reconnects it). */
  unreachable: (host: Host) => boolean;
  /** A read failed (the controller tells liveness when the connection was the cause). */
  failed?: (host: Host, e: unknown) => void;
  /** A run's progress moved: its part's newest metrics line. */
  onProgress: (u: ProgressUpdate) => void;
  log: Logger;
  now?: () => number;
}

interface Known {
  target: ProgressTarget;
  host: string;
  sig: string;
  metrics?: Metrics;
}

const BACKOFF_MIN_MS = 2000;
const BACKOFF_MAX_MS = 60_000;

export class ProgressWatcher {
  /** Ticks, reads (execs that answered), changed files, updates given to onProgress. */
  readonly stats = { ticks: 0, reads: 0, changed: 0, updates: 0 };
  /** Per `host/dir`: the signature and line of its metrics file as last read. */
  private readonly known = new Map<string, Known>();
  private readonly inFlight = new Map<string, { ac: AbortController }>();
  private readonly backoff = new Map<string, { at: number; failures: number }>();
  private readonly now: () => number;
  private stopped = false;

  constructor(private readonly o: ProgressWatcherOptions) {
    this.now = o.now ?? Date.now;
  }

  /** One round: one read per host that holds run dirs to read and is not being read already. */
  tick(): Promise<void> {
    if (this.stopped || !this.o.runtime.readProgress) return Promise.resolve();
    this.stats.ticks++;
    const targets = this.o.targets();
    this.forgetGone(targets);
    const now = this.now();
    const reads: Promise<void>[] = [];
    for (const [hn, runs] of targets) {
      if (!runs.length || this.inFlight.has(hn)) continue;
      const b = this.backoff.get(hn);
      if (b && now < b.at) continue;
      const host = this.o.host(hn);
      if (!host || this.o.unreachable(host)) continue;
      const ac = new AbortController();
      this.inFlight.set(hn, { ac });
      reads.push(this.read(host, runs, ac.signal).finally(() => this.inFlight.delete(hn)));
    }
    return Promise.all(reads).then(() => undefined);
  }

  /**
   * No more reads; those in flight are cut off, and what they bring is dropped. Not waited for: a
   * read can sit in its connection's queue for a free channel, where an abort does not reach it.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const r of this.inFlight.values()) r.ac.abort();
  }

  private async read(host: Host, runs: ProgressTarget[], signal: AbortSignal): Promise<void> {
    const key = (dir: string) => `${host.name}/${dir}`;
    let got: ProgressRead[];
    try {
      got = await this.o.runtime.readProgress!(
        host,
        runs.map((r) => ({ dir: r.dir, sig: this.known.get(key(r.dir))?.sig })),
        signal,
      );
    } catch (e) {
      if (signal.aborted || this.stopped) return;
      const b = this.backoff.get(host.name) ?? { at: 0, failures: 0 };
      b.failures++;
      b.at = this.now() + Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (b.failures - 1));
      this.backoff.set(host.name, b);
      if (b.failures === 1)
        this.o.log.warn('cannot read progress on host; retrying with backoff', {
          host: host.name,
          error: (e as Error).message,
        });
      this.o.failed?.(host, e);
      return;
    }
    if (signal.aborted || this.stopped) return;
    this.stats.reads++;
    if (this.backoff.delete(host.name)) this.o.log.info('progress read on host again', { host: host.name });
    const asked = new Map(runs.map((r) => [r.dir, r]));
    const moved: Known[] = [];
    for (const g of got) {
      const target = asked.get(g.dir);
      if (!target) continue;
      this.stats.changed++;
      const k: Known = { target, host: host.name, sig: g.sig, ...(g.metrics ? { metrics: g.metrics } : {}) };
      // A half-written line: keep the last whole one (the file's next change brings the rest).
      if (!g.metrics) {
        const prev = this.known.get(key(g.dir));
        if (prev?.metrics) k.metrics = prev.metrics;
        this.known.set(key(g.dir), k);
        continue;
      }
      this.known.set(key(g.dir), k);
      moved.push(k);
    }
    for (const k of moved) {
      // Of a run's parts that write metrics, the lowest node rank's line is its progress.
      const parts = [...this.known.values()]
        .filter((x) => x.target.runId === k.target.runId)
        .map((x) => ({ ...x, meta: { nodeRank: x.target.nodeRank } }));
      const best = progressPart(parts);
      if (!best || best.host !== k.host || best.target.dir !== k.target.dir || !k.metrics) continue;
      this.stats.updates++;
      this.o.onProgress({
        job: k.target.job,
        runId: k.target.runId,
        host: k.host,
        dir: k.target.dir,
        metrics: k.metrics,
      });
    }
  }

  /** Forget run dirs no longer read (ended, or their job is no longer running). */
  private forgetGone(targets: Map<string, ProgressTarget[]>): void {
    if (!this.known.size) return;
    const live = new Set<string>();
    for (const [hn, runs] of targets) for (const r of runs) live.add(`${hn}/${r.dir}`);
    for (const k of this.known.keys()) if (!live.has(k)) this.known.delete(k);
  }
}
