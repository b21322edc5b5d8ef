/**
 * PURE: batches balanced by measured speed (spec.batch.balance: speed). The training script
 * reports each rank's busy time a step (its own work, up to the gradient all-reduce) in rank 0's
 * metrics lines (`rank_ms`, `rank_n`, `step_ms`: scripts/train.py); from them each rank's speed
 * (samples/s), the split that speed gives, how much faster a step would be on it, and a straggler
 * (a rank whose step takes longer than the others' by more than a margin). The loop re-splits at
 * a checkpoint (steps/rebalance.ts) when that is worth a restart.
 */
import type { Metrics } from '../api/run.ts';
import type { BalanceRank, BalanceStatus, JobStatus, RankSpeed } from '../api/status.ts';
import { splitBatch } from './batch.ts';

/** A re-split must make a step at least this much faster (predicted), measured twice: plan and checkpoint. */
export const MIN_GAIN = 0.05;
/** A rank whose busy time is over the others' median by more than this is named a straggler. */
export const STRAGGLER_MARGIN = 0.15;
/** Ranks a metrics line can report (train.py's strings are capped at 200 characters by sanitizeMetrics). */
const MAX_RANKS = 4096;

/** One rank's measured work a step: its share and its busy milliseconds, by global rank. */
export interface RankTiming {
  rank: number;
  batch: number;
  busyMs: number;
}

export interface Timings {
  ranks: RankTiming[];
  /** The mean wall time of the measured steps. */
  stepMs?: number;
  /** The line's step (global steps done). */
  step?: number;
}

const list = (v: unknown): number[] | undefined => {
  if (typeof v !== 'string' || v.length === 0) return undefined;
  const xs = v.split(',');
  if (xs.length > MAX_RANKS || !xs.every((x) => /^\d+(\.\d+)?$/.test(x.trim()))) return undefined;
  return xs.map(Number);
};

/**
 * A metrics line's timing (rank_ms and rank_n of the same length, shares >= 0, busy times > 0 where
 * the share is not empty), or undefined: a line without it, truncated, or not numbers.
 */
export function parseTimings(m: Metrics | undefined): Timings | undefined {
  const ms = list(m?.rank_ms);
  const n = list(m?.rank_n);
  if (!ms || !n || ms.length !== n.length) return undefined;
  if (n.some((b, i) => !Number.isInteger(b) || (b > 0 && !(ms[i] > 0)))) return undefined;
  const stepMs = typeof m?.step_ms === 'number' && m.step_ms >= 0 ? m.step_ms : undefined;
  const step = typeof m?.step === 'number' && Number.isInteger(m.step) && m.step >= 0 ? m.step : undefined;
  return {
    ranks: ms.map((busyMs, rank) => ({ rank, batch: n[rank], busyMs })),
    ...(stepMs !== undefined ? { stepMs } : {}),
    ...(step !== undefined ? { step } : {}),
  };
}

/** Samples per second of a rank's own work (0 for an empty share: nothing measured). */
export const speedOfTiming = (t: RankTiming): number => (t.batch > 0 ? (t.batch * 1000) / t.busyMs : 0);

/** The step time a split would take at these speeds: its slowest rank's share / speed (ms). */
export function predictedMs(shares: readonly number[], samplesPerS: readonly number[]): number {
  return Math.max(...shares.map((b, i) => (b === 0 ? 0 : (b * 1000) / samplesPerS[i])));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export interface Assessment {
  /** The measured step: the slowest rank's busy ms. */
  currentMs: number;
  /** The shares by measured speed (by global rank) and their predicted step. */
  shares: number[];
  nextMs: number;
  /** 1 - nextMs / currentMs: the part of each step the re-split would save. */
  gain: number;
  straggler?: { rank: number; busyMs: number; medianMs: number };
}

/**
 * What the measured speeds say: the split by speed, how much faster its step would be, and a
 * straggler (a rank over the median of the others' busy times by more than STRAGGLER_MARGIN).
 * Undefined without a usable measurement (every rank needs a share and a time).
 */
export function assess(t: Timings): Assessment | undefined {
  const speeds = t.ranks.map(speedOfTiming);
  if (!t.ranks.length || speeds.some((s) => !(s > 0))) return undefined;
  const global = t.ranks.reduce((a, r) => a + r.batch, 0);
  if (global < t.ranks.length) return undefined;
  const shares = splitBatch(global, speeds).map((r) => r.batch);
  const currentMs = Math.max(...t.ranks.map((r) => r.busyMs));
  const nextMs = predictedMs(shares, speeds);
  const slow = t.ranks.reduce((a, r) => (r.busyMs > a.busyMs ? r : a));
  const others = t.ranks.filter((r) => r !== slow).map((r) => r.busyMs);
  const medianMs = others.length ? median(others) : slow.busyMs;
  const straggler =
    slow.busyMs > medianMs * (1 + STRAGGLER_MARGIN) ? { rank: slow.rank, busyMs: slow.busyMs, medianMs } : undefined;
  const changed = shares.some((b, i) => b !== t.ranks[i].batch);
  return {
    currentMs,
    shares,
    nextMs,
    gain: changed ? Math.max(0, 1 - nextMs / currentMs) : 0,
    ...(straggler ? { straggler } : {}),
  };
}

/** Re-splits within this long of now raise the bar for the next one. */
export const RESPLIT_MEMORY_MS = 60 * 60 * 1000;

/**
 * The gain a re-split must promise: MIN_GAIN, doubled for each re-split in the last hour. Each
 * costs a restart (seconds of a stopped gang), and a measurement is noisy and a rank's time per
 * sample not quite proportional to its share: without this, the bench's job re-split five times
 * in three minutes on predictions of 5-10% each, the straggler moving back and forth.
 */
export function requiredGain(resplits: readonly string[] | undefined, nowMs: number): number {
  const recent = (resplits ?? []).filter((t) => nowMs - Date.parse(t) < RESPLIT_MEMORY_MS).length;
  return MIN_GAIN * 2 ** recent;
}

/** Worth a restart at a checkpoint: the speed split differs and saves at least `required` of a step. */
export const worthRebalancing = (a: Assessment | undefined, required = MIN_GAIN): a is Assessment =>
  !!a && a.gain >= required;

/** Where each global rank runs, from the run's ranks as rank.sh recorded them. */
export type RankPlaces = Map<number, { host: string; localRank: number }>;

/** `old` with the speeds of `fresh` in place of those of the same rank slot. */
export function mergeSpeeds(old: readonly RankSpeed[] | undefined, fresh: readonly RankSpeed[]): RankSpeed[] {
  const same = (a: RankSpeed, b: RankSpeed) => a.host === b.host && a.localRank === b.localRank && a.gpu === b.gpu;
  return [...(old ?? []).filter((o) => !fresh.some((f) => same(o, f))), ...fresh].slice(-MAX_RANKS);
}

/**
 * The status rows with a measurement in: each rank's busy ms and idle ms (the slowest rank's
 * busy ms minus its own: its wait at the all-reduce), its global rank; and the speeds measured,
 * by rank slot (host, local rank, GPU). Rows with no rank in the measurement keep what they had.
 */
export function measured(
  rows: readonly BalanceRank[],
  t: Timings,
  places: RankPlaces,
  gpuOf: (host: string, localRank: number) => number | undefined,
  attempt: number,
): { ranks: BalanceRank[]; speeds: RankSpeed[] } {
  const slowest = Math.max(...t.ranks.map((r) => r.busyMs));
  const speeds: RankSpeed[] = [];
  const ranks = rows.map((row) => {
    const rank = [...places].find(([, p]) => p.host === row.host && p.localRank === row.localRank)?.[0];
    const m = rank !== undefined ? t.ranks[rank] : undefined;
    if (rank === undefined || !m || m.batch !== row.batch) return row;
    const gpu = gpuOf(row.host, row.localRank);
    if (m.batch > 0)
      speeds.push({
        host: row.host,
        localRank: row.localRank,
        ...(gpu !== undefined ? { gpu } : {}),
        samplesPerS: round(speedOfTiming(m)),
        attempt,
      });
    return { ...row, rank, stepMs: round(m.busyMs), idleMs: round(slowest - m.busyMs) };
  });
  return { ranks, speeds };
}

const round = (x: number): number => Math.round(x * 10) / 10;

/** "gpu-master 41, gpu1 28, gpu2 27" (local rank shown where a host has several). */
export function splitText(rows: readonly Pick<BalanceRank, 'host' | 'localRank' | 'batch'>[]): string {
  const multi = new Set(rows.filter((r) => r.localRank > 0).map((r) => r.host));
  return rows.map((r) => `${r.host}${multi.has(r.host) ? `/${r.localRank}` : ''} ${r.batch}`).join(', ');
}

/**
 * The progress watcher's question after writing a metrics line into a status: should the job be
 * reconciled now (a speed-balanced job whose newest line says a re-split is worth it, with none
 * planned yet)? Otherwise the running job is looked at on its 30 s safety net.
 */
export function balanceWake(status: Pick<JobStatus, 'balance' | 'progress'>, nowMs: number): boolean {
  const b: BalanceStatus | undefined = status.balance;
  if (b?.mode !== 'speed' || b.planned) return false;
  const t = parseTimings(status.progress);
  return !!t && worthRebalancing(assess(t), requiredGain(b.resplits, nowMs));
}
