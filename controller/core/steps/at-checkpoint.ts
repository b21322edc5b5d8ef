/**
 * Part of step 5 (observe-run.ts), while a run goes on: restarts on purpose at the next
 * checkpoint, never counted as failures. spec.scaleUp (`rescaled`: more nodes are free) and
 * spec.batch.balance (`rebalanced`: the batch split by measured speed is worth a restart). Both
 * note the plan, wait for a checkpoint newer than the newest at that moment, stop the run, and
 * the next pass places the next attempt, which resumes from it.
 */
import type { TrainingJob } from '../../api/trainingjob.ts';
import {
  type Assessment,
  assess,
  MIN_GAIN,
  measured,
  mergeSpeeds,
  parseTimings,
  type RankPlaces,
  requiredGain,
  splitText,
  type Timings,
  worthRebalancing,
} from '../balance.ts';
import type { Draft } from '../draft.ts';
import { progressPart } from '../live-progress.ts';
import type { RunView } from '../run-view.ts';
import type { ReconcileResult } from '../types.ts';
import { newestCheckpoint } from './schedule-next.ts';

/** How often a job waiting for its next checkpoint looks for it (checkpoints are not watched). */
export const CHECKPOINT_POLL_MS = 5000;

export type AtCheckpoint = { result: ReconcileResult } | { pollMs: number } | undefined;

/**
 * spec.scaleUp: when placement says the job could run on more nodes now (its own GPUs counted
 * free, nobody preempted, nobody ahead of it held back), note it, wait for the next checkpoint
 * (one newer than the newest at that moment), then stop the run on purpose (`rescaled`); the
 * next pass places it again on as many nodes as are free and it resumes from that checkpoint.
 */
export function scaleUp(
  d: Draft,
  job: TrainingJob,
  current: RunView,
  started: boolean,
  since: number | undefined,
): AtCheckpoint {
  const s = d.status;
  const now = current.meta.hosts.length;
  const to = job.spec.scaleUp && started ? d.input.cluster.growTo : undefined;
  if (!to || to <= now) return undefined;
  const newest = newestCheckpoint(d.input.checkpoints ?? [], since);
  const prev = d.prev?.runId === current.runId ? d.prev.scaleUp : undefined;
  if (!prev || prev.nodes !== to) {
    s.scaleUp = { nodes: to, since: d.now, ...(newest ? { after: newest.name } : {}) };
    d.event(
      'ScaleUpPlanned',
      `GPUs for ${to} nodes are free (running on ${now}): restarting on them at the next checkpoint`,
    );
    return { pollMs: CHECKPOINT_POLL_MS };
  }
  s.scaleUp = prev;
  if (!newest || newest.name === prev.after) return { pollMs: CHECKPOINT_POLL_MS };
  d.stop(current, 'rescaled');
  const what = `checkpoint ${newest.name} written: restarting attempt ${current.attempt} on ${to} nodes (was ${now})`;
  d.event('ScalingUp', what);
  d.cond('Running', 'False', 'ScalingUp', what);
  return { result: d.finish('Running', 'ScalingUp', what, 1000) };
}

/** Where each global rank of the run is (rank.sh's records). */
function placesOf(run: RunView): RankPlaces {
  const m: RankPlaces = new Map();
  for (const p of run.parts) for (const r of p.ranks) m.set(r.rank, { host: p.host, localRank: r.localRank });
  return m;
}

/** "gpu-master 41 -> 44, gpu1 28 -> 27": the measured ranks' shares now and by speed. */
function moves(a: Assessment, t: Timings, places: RankPlaces): string {
  const rows = t.ranks.map((r) => ({ ...(places.get(r.rank) ?? { host: `rank ${r.rank}`, localRank: 0 }), ...r }));
  const now = splitText(rows);
  const next = splitText(rows.map((r) => ({ ...r, batch: a.shares[r.rank] })));
  return `${next} (was ${now}; ${Math.round(a.currentMs)} -> ${Math.round(a.nextMs)} ms a step predicted)`;
}

function why(a: Assessment, t: Timings, places: RankPlaces): string {
  const s = a.straggler;
  const where = s ? places.get(s.rank) : undefined;
  const lag = s
    ? `rank ${s.rank}${where ? ` on ${where.host}` : ''} is a straggler (${Math.round(s.busyMs)} ms of work a ` +
      `step, the others' median ${Math.round(s.medianMs)} ms); `
    : '';
  return `${lag}by measured speed the split would be ${moves(a, t, places)}`;
}

/**
 * spec.batch: each rank's step time and idle time into status.balance from the run's newest
 * metrics line, with the speeds measured (kept for later attempts). With balance `speed`: when
 * the split by those speeds would make a step MIN_GAIN faster, plan a re-split at the next
 * checkpoint (event RebalancePlanned, naming a straggler); at that checkpoint, if a newer
 * measurement still says so, stop on purpose (`rebalanced`) and the next attempt is split by
 * speed; if not, drop the plan (RebalanceDropped).
 */
export function rebalance(
  d: Draft,
  job: TrainingJob,
  current: RunView,
  started: boolean,
  since: number | undefined,
): AtCheckpoint {
  const b = d.status.balance;
  if (!job.spec.batch || !b || !started) return undefined;
  const t = parseTimings(progressPart(current.parts)?.metrics);
  const places = placesOf(current);
  if (t && t.ranks.length === places.size) {
    const gpuOf = (host: string, localRank: number) =>
      current.parts.find((p) => p.host === host)?.meta.gpus?.[localRank]?.index;
    const m = measured(b.ranks, t, places, gpuOf, current.attempt);
    b.ranks = m.ranks;
    if (t.stepMs !== undefined) b.stepMs = t.stepMs;
    if (t.step !== undefined) b.step = t.step;
    if (m.speeds.length) b.speeds = mergeSpeeds(b.speeds, m.speeds);
  }
  if (b.mode !== 'speed') return undefined;
  const a = t && t.ranks.length === places.size ? assess(t) : undefined;
  const required = requiredGain(b.resplits, Date.parse(d.now));
  const planned = d.prev?.runId === current.runId ? d.prev.balance?.planned : undefined;
  const newest = newestCheckpoint(d.input.checkpoints ?? [], since);
  if (!planned) {
    b.planned = undefined;
    if (!t || !worthRebalancing(a, required)) return undefined;
    const text = `${why(a, t, places)}: re-splitting at the next checkpoint`;
    b.planned = { since: d.now, step: t.step ?? 0, why: text, ...(newest ? { after: newest.name } : {}) };
    d.event('RebalancePlanned', text);
    return { pollMs: CHECKPOINT_POLL_MS };
  }
  b.planned = planned;
  if (!newest || newest.name === planned.after) return { pollMs: CHECKPOINT_POLL_MS };
  // "For a while": the measurement at the checkpoint must be newer than the plan's and agree.
  if (!t || (t.step ?? 0) <= planned.step) {
    b.planned = { ...planned, after: newest.name };
    return { pollMs: CHECKPOINT_POLL_MS };
  }
  const gain = a ? `${Math.round(a.gain * 100)}%` : 'nothing (no measurement)';
  if (!worthRebalancing(a, required)) {
    b.planned = undefined;
    const bar = required > MIN_GAIN ? ` (${Math.round(required * 100)}% needed after recent re-splits)` : '';
    d.event(
      'RebalanceDropped',
      `measured again at step ${t.step}: a re-split would gain ${gain}${bar}; keeping the split`,
    );
    return undefined;
  }
  b.resplits = [...(b.resplits ?? []), d.now].slice(-8);
  d.stop(current, 'rebalanced');
  const what = `checkpoint ${newest.name} written: restarting attempt ${current.attempt} split ${moves(a, t, places)}`;
  d.event('Rebalancing', what);
  d.cond('Running', 'False', 'Rebalancing', what);
  return { result: d.finish('Running', 'Rebalancing', what, 1000) };
}
