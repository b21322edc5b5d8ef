/**
 * PURE: how far a job is, how fast it goes and when it will be done, from the metrics lines its
 * script writes (UGRO_METRICS_FILE: step, total_steps, loss, samples_per_s, epoch; train.py also
 * writes time). No clock of its own: every time is passed in.
 */
import type { Metrics } from '../api/run.ts';

/** A step and when it was reached (ms since the epoch). */
export interface ProgressPoint {
  step: number;
  atMs: number;
}

export interface ProgressEstimate {
  step?: number;
  totalSteps?: number;
  /** 0..100. */
  percent?: number;
  epoch?: number;
  loss?: number;
  samplesPerS?: number;
  stepsPerS?: number;
  /** Seconds left at the last point's time; undefined while the rate is unknown. */
  etaSeconds?: number;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const count = (v: unknown): number | undefined => {
  const n = num(v);
  return n !== undefined && n >= 0 && Number.isSafeInteger(n) ? n : undefined;
};

/**
 * The point of a metrics line: its step, at the line's own `time` (seconds since the epoch, the
 * host's clock) when it has one, else when the controller saw it.
 */
export function pointOf(m: Metrics | undefined, seenAtMs: number): ProgressPoint | undefined {
  const step = count(m?.step);
  if (step === undefined) return undefined;
  const t = num(m?.time);
  return { step, atMs: t !== undefined && t > 0 ? t * 1000 : seenAtMs };
}

/** How far back the rate looks: long enough to smooth a checkpoint pause, short enough to follow a change. */
const RATE_WINDOW_MS = 5 * 60_000;

/**
 * The estimate from the last metrics line and the points seen so far of the same attempt (any
 * order; points of another attempt must not be passed). The rate is steps per second over the
 * points within RATE_WINDOW_MS of the newest one; ETA = steps left / rate.
 */
export function estimateProgress(last: Metrics | undefined, points: readonly ProgressPoint[]): ProgressEstimate {
  const out: ProgressEstimate = {};
  const step = count(last?.step);
  const total = count(last?.total_steps);
  if (step !== undefined) out.step = step;
  if (total !== undefined && total > 0) {
    out.totalSteps = total;
    if (step !== undefined) out.percent = Math.min(100, (step / total) * 100);
  }
  const epoch = num(last?.epoch);
  if (epoch !== undefined) out.epoch = epoch;
  const loss = num(last?.loss);
  if (loss !== undefined) out.loss = loss;
  const sps = num(last?.samples_per_s);
  if (sps !== undefined && sps >= 0) out.samplesPerS = sps;
  const sorted = [...points].sort((a, b) => a.atMs - b.atMs);
  const newest = sorted[sorted.length - 1];
  if (newest) {
    const oldest = sorted.find((p) => p.atMs >= newest.atMs - RATE_WINDOW_MS && p.step < newest.step);
    if (oldest && newest.atMs > oldest.atMs)
      out.stepsPerS = (newest.step - oldest.step) / ((newest.atMs - oldest.atMs) / 1000);
  }
  if (out.totalSteps !== undefined && out.step !== undefined) {
    if (out.step >= out.totalSteps) out.etaSeconds = 0;
    else if (out.stepsPerS !== undefined && out.stepsPerS > 0)
      out.etaSeconds = (out.totalSteps - out.step) / out.stepsPerS;
  }
  return out;
}
