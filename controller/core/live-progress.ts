/**
 * PURE: progress between reconciles. Which run dirs the progress watcher reads (the live parts of
 * this controller's jobs that are Starting or Running, per host), which part's metrics line is a
 * run's progress, and how a line read there goes into the job's status: only for the run the
 * status shows, only while it runs, only when the step moved.
 */
import type { Metrics, RunPart } from '../api/run.ts';
import type { JobStatus } from '../api/status.ts';

/** A run dir whose metrics file the watcher reads. */
export interface ProgressTarget {
  job: string;
  runId: string;
  dir: string;
  nodeRank: number;
}

/** Phases in which a run's metrics lines are the job's progress. */
const LIVE: readonly JobStatus['phase'][] = ['Starting', 'Running'];

/**
 * Host -> the run dirs to read there, sorted by name: every live part (of `parts`, this
 * controller's) of the run its job's status shows as Starting or Running; once an observe has
 * seen a metrics line in a run's parts, only its progress part (progressPart): train.py writes
 * them on global rank 0 alone, and every other host would answer nothing for an ssh exec a
 * second (2 of 3 on the lab: ~1% of a core there, npm run bench, throughput). Hosts `skipHost`
 * names (a Slurm cluster: its progress comes with its observe) are left out.
 */
export function progressTargets(
  parts: Iterable<RunPart>,
  statusOf: (job: string) => Pick<JobStatus, 'phase' | 'runId'> | undefined,
  skipHost: (host: string) => boolean,
): Map<string, ProgressTarget[]> {
  const out = new Map<string, ProgressTarget[]>();
  const runs = new Map<string, RunPart[]>();
  for (const p of parts) {
    if (!p.alive) continue;
    const run = runs.get(p.meta.runId);
    if (run) run.push(p);
    else runs.set(p.meta.runId, [p]);
  }
  const read: RunPart[] = [];
  for (const run of runs.values()) {
    const lead = progressPart(run);
    read.push(...(lead ? [lead] : run));
  }
  for (const p of read) {
    if (skipHost(p.host)) continue;
    const s = statusOf(p.meta.job);
    if (!s || !LIVE.includes(s.phase) || s.runId !== p.meta.runId) continue;
    const list = out.get(p.host) ?? [];
    if (list.some((t) => t.dir === p.dir)) continue;
    list.push({ job: p.meta.job, runId: p.meta.runId, dir: p.dir, nodeRank: p.meta.nodeRank });
    out.set(p.host, list);
  }
  for (const list of out.values()) list.sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
  return out;
}

/**
 * The part whose metrics line is the run's progress: of those that have one, the lowest node
 * rank (train.py writes from global rank 0 only; a script writing on every node must not make
 * the progress jump between nodes).
 */
export function progressPart<T extends { metrics?: Metrics; meta: { nodeRank: number } }>(
  parts: readonly T[],
): T | undefined {
  let best: T | undefined;
  for (const p of parts) if (p.metrics && (!best || p.meta.nodeRank < best.meta.nodeRank)) best = p;
  return best;
}

const stepOf = (m: Metrics | undefined) => (typeof m?.step === 'number' ? m.step : undefined);

/** Did the progress move? By the step when the line has one, else by any value in it. */
export function progressMoved(prev: Metrics | undefined, next: Metrics): boolean {
  const step = stepOf(next);
  if (step !== undefined) return step !== stepOf(prev);
  return JSON.stringify(prev ?? null) !== JSON.stringify(next);
}

/**
 * `status` with a newer metrics line of its run as its progress, or undefined when there is
 * nothing to write: the line is of another run (an older attempt, a run being replaced), the job
 * is not Starting or Running, or the step did not move.
 */
export function mergeProgress(status: JobStatus, reading: { runId: string; metrics: Metrics }): JobStatus | undefined {
  if (status.runId !== reading.runId || !LIVE.includes(status.phase)) return undefined;
  if (!progressMoved(status.progress, reading.metrics)) return undefined;
  return { ...status, progress: reading.metrics };
}
