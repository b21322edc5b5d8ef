/**
 * A trial's objective series: one metric of every attempt's metrics.jsonl, read on the host of
 * the attempt's rank 0 through the backend's MetricsReader (scripts/runtime/metrics.sh over SSH),
 * incrementally from the offset read last. Read only when a trial crossed a rung whose value the
 * sweep does not know yet (loop/sweeps.ts), so a sweep costs one read per trial per rung.
 */
import type { Host } from '../../config/cluster.ts';
import { isNonFinite, type RunPart } from '../api/run.ts';
import type { MetricsReader } from '../backends/api.ts';

interface Attempt {
  dir: string;
  offset: number;
  points: Map<number, number | null>;
}

/** At most this many trials' series are kept (least recently read go first). */
const MAX_TRIALS = 256;

export class TrialMetrics {
  private readonly trials = new Map<string, { key: string; attempts: Map<number, Attempt> }>();

  constructor(
    private readonly reader: MetricsReader,
    private readonly host: (name: string) => Host | undefined,
  ) {}

  forget(trial: string): void {
    this.trials.delete(trial);
  }

  /**
   * The (step, value) points of `metric` over every attempt of `trial`'s spec `hash`, sorted by
   * step (a step seen again in a later attempt, after a restart from an older checkpoint, takes
   * the later value). A value that was not finite (a NaN loss) is null: the trial diverged there.
   * Undefined when a host could not be read: the caller decides later.
   */
  async series(
    trial: string,
    hash: string,
    metric: string,
    parts: readonly RunPart[],
  ): Promise<{ step: number; value: number | null }[] | undefined> {
    const read = this.reader.readMetrics;
    if (!read) return undefined;
    const key = `${hash}/${metric}`;
    let t = this.trials.get(trial);
    if (!t || t.key !== key) t = { key, attempts: new Map() };
    this.trials.delete(trial);
    this.trials.set(trial, t);
    while (this.trials.size > MAX_TRIALS) this.trials.delete(this.trials.keys().next().value as string);
    const attempts = t.attempts;
    let failed = false;
    await Promise.all(
      rankZero(parts, hash).map(async (p) => {
        let a = attempts.get(p.meta.attempt);
        if (!a || a.dir !== p.dir) {
          a = { dir: p.dir, offset: 0, points: new Map() };
          attempts.set(p.meta.attempt, a);
        }
        const host = this.host(p.host);
        if (!host) return;
        try {
          for (let i = 0; i < 64; i++) {
            const c = await read.call(this.reader, host, p.dir, a.offset);
            if (c.next < a.offset) a.points.clear(); // replaced: start over
            for (const m of c.lines) {
              const step = m?.step;
              const v = m?.[metric];
              if (typeof step !== 'number' || !Number.isFinite(step)) continue;
              if (typeof v === 'number' && Number.isFinite(v)) a.points.set(step, v);
              else if (isNonFinite(v)) a.points.set(step, null);
            }
            a.offset = c.next;
            if (c.next >= c.size) break;
          }
        } catch {
          failed = true;
        }
      }),
    );
    if (failed) return undefined;
    const merged = new Map<number, number | null>();
    for (const n of [...attempts.keys()].sort((x, y) => x - y))
      for (const [s, v] of attempts.get(n)?.points ?? []) merged.set(s, v);
    return [...merged].sort((x, y) => x[0] - y[0]).map(([step, value]) => ({ step, value }));
  }
}

/** The part of each attempt that ran global rank 0 (else node rank 0): where metrics.jsonl is. */
function rankZero(parts: readonly RunPart[], hash: string): RunPart[] {
  const by = new Map<number, RunPart>();
  const score = (x: RunPart) => (x.ranks.some((r) => r.rank === 0) ? 2 : x.meta.nodeRank === 0 ? 1 : 0);
  for (const p of parts) {
    if (p.meta.specHash !== hash) continue;
    const cur = by.get(p.meta.attempt);
    if (!cur || score(p) > score(cur)) by.set(p.meta.attempt, p);
  }
  return [...by.values()];
}
