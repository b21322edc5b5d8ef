/**
 * The loss curve of a job: every attempt's metrics.jsonl, read on rank 0's host of that attempt
 * (scripts/runtime/metrics.sh through SshBackend.readMetrics), incrementally from the offset
 * read last. Kept in memory for the jobs someone looks at (and the running ones, for the ETA),
 * bounded: at most maxPoints points per attempt (when full, thinned to half, web/thin.ts, so the curve
 * still reaches the newest step) and maxJobs jobs (least recently used go).
 */
import type { Host } from '../../config/cluster.ts';
import type { Metrics, RunPart } from '../api/run.ts';
import type { MetricsReader } from '../backends/api.ts';
import { thinIndices } from './web/thin.ts';

export interface LossPoint {
  step: number;
  /** NaN when the line had no loss. */
  loss: number;
  /** The line's `time` (s since the epoch), else NaN. */
  time: number;
  /** Its index among the attempt's points (0, 1, ...): still true once older points were thinned. */
  n: number;
}

export interface AttemptSeries {
  attempt: number;
  host: string;
  dir: string;
  /** Metrics lines read (each valid one is a point; lines without a step are counted, not drawn). */
  lines: number;
  points: LossPoint[];
  /** Points read (with a step), thinned ones included: the `n` the next one gets. */
  total: number;
  /** The last line read (for progress). */
  last?: Metrics;
  /** Byte offset to read on from. */
  offset: number;
  /** The part was not alive when the file was last read to its end: nothing more will come. */
  complete: boolean;
}

export const HISTORY_LIMITS = { maxPoints: 200_000, maxJobs: 64, maxAttempts: 100 } as const;

/** A full attempt's points, thinned to at most half (min/max/first/last per column of steps). */
function halve(points: LossPoint[], max: number): LossPoint[] {
  const keep = thinIndices(
    points.map((p) => p.step),
    points.map((p) => p.loss),
    Math.max(1, Math.floor(max / 10)),
  );
  return keep.map((i) => points[i]);
}

/** Which part of each attempt holds the metrics: the one that ran global rank 0 (else node rank 0). */
function rankZeroParts(parts: readonly RunPart[], specHash?: string): RunPart[] {
  const byAttempt = new Map<number, RunPart>();
  for (const p of parts) {
    if (specHash && p.meta.specHash !== specHash) continue;
    const cur = byAttempt.get(p.meta.attempt);
    const score = (x: RunPart) => (x.ranks.some((r) => r.rank === 0) ? 2 : x.meta.nodeRank === 0 ? 1 : 0);
    if (!cur || score(p) > score(cur)) byAttempt.set(p.meta.attempt, p);
  }
  return [...byAttempt.values()].sort((a, b) => a.meta.attempt - b.meta.attempt);
}

export class MetricsHistory {
  private readonly jobs = new Map<string, { key: string; attempts: Map<number, AttemptSeries> }>();
  private readonly inFlight = new Map<string, Promise<AttemptSeries[]>>();

  private readonly maxPoints: number;

  constructor(
    private readonly runtime: MetricsReader,
    private readonly hosts: readonly Host[],
    o: { maxPoints?: number } = {},
  ) {
    this.maxPoints = Math.max(16, o.maxPoints ?? HISTORY_LIMITS.maxPoints);
  }

  /** What is held now, oldest attempt first. */
  get(job: string): AttemptSeries[] {
    return [...(this.jobs.get(job)?.attempts.values() ?? [])].sort((a, b) => a.attempt - b.attempt);
  }

  forget(job: string): void {
    this.jobs.delete(job);
  }

  /** Read what is new in each attempt's metrics (one refresh per job at a time). */
  refresh(job: string, parts: readonly RunPart[], specHash?: string): Promise<AttemptSeries[]> {
    const running = this.inFlight.get(job);
    if (running) return running;
    const p = this.doRefresh(job, parts, specHash).finally(() => this.inFlight.delete(job));
    this.inFlight.set(job, p);
    return p;
  }

  private async doRefresh(job: string, parts: readonly RunPart[], specHash?: string): Promise<AttemptSeries[]> {
    const key = specHash ?? '';
    let j = this.jobs.get(job);
    if (!j || j.key !== key) {
      j = { key, attempts: new Map() };
    }
    // Least recently used last: re-insert.
    this.jobs.delete(job);
    this.jobs.set(job, j);
    while (this.jobs.size > HISTORY_LIMITS.maxJobs) this.jobs.delete(this.jobs.keys().next().value!);
    const read = this.runtime.readMetrics;
    const zero = rankZeroParts(parts, specHash).slice(-HISTORY_LIMITS.maxAttempts);
    await Promise.all(
      zero.map(async (p) => {
        let a = j.attempts.get(p.meta.attempt);
        if (!a || a.dir !== p.dir || a.host !== p.host) {
          a = {
            attempt: p.meta.attempt,
            host: p.host,
            dir: p.dir,
            lines: 0,
            points: [],
            total: 0,
            offset: 0,
            complete: false,
          };
          j.attempts.set(p.meta.attempt, a);
        }
        if (a.complete || !read) return;
        const host = this.hosts.find((h) => h.name === p.host);
        if (!host) return;
        const alive = p.alive;
        try {
          for (let i = 0; i < 64; i++) {
            const c = await read.call(this.runtime, host, p.dir, a.offset);
            if (c.next < a.offset) {
              // The file was replaced: start over.
              a.points = [];
              a.lines = 0;
              a.total = 0;
            }
            for (const m of c.lines) {
              a.lines++;
              if (!m) continue;
              a.last = m;
              const step = m.step;
              if (typeof step !== 'number' || !Number.isFinite(step)) continue;
              const loss = typeof m.loss === 'number' ? m.loss : Number.NaN;
              const time = typeof m.time === 'number' ? m.time : Number.NaN;
              if (a.points.length >= this.maxPoints) a.points = halve(a.points, this.maxPoints);
              a.points.push({ step, loss, time, n: a.total++ });
            }
            a.offset = c.next;
            if (c.next >= c.size) {
              if (!alive) a.complete = true;
              break;
            }
          }
        } catch {
          /* the host may be down: the next refresh tries again from the same offset */
        }
      }),
    );
    for (const n of [...j.attempts.keys()]) if (!zero.some((p) => p.meta.attempt === n)) j.attempts.delete(n);
    return this.get(job);
  }
}
