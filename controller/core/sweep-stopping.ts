/**
 * PURE: early stopping over a sweep's trials, from their objective values at the rungs.
 *  - ASHA (asynchronous successive halving, Li et al. 2018): a trial that reaches rung k goes on
 *    only while it is among the best floor(n/eta) of the n trials that reached rung k so far;
 *    otherwise it is paused there (with its checkpoint), and promoted (resumed) later if enough
 *    other trials reach rung k behind it. A trial is judged at the highest rung it reached.
 *  - Median stopping rule (Google Vizier): a trial whose running mean of the objective at a judged
 *    step is worse than the median of the other trials' running means there is stopped for good,
 *    once at least minTrials others reached that step.
 */
import type { RungValue } from '../api/sweep-status.ts';

export type Goal = 'minimize' | 'maximize';

export interface StopView {
  name: string;
  /** Values at the rungs reached, in rung order. */
  rungs: readonly RungValue[];
}

export interface Verdict {
  /** May it run on past the highest rung it reached (asha: promoted; median: not worse). */
  goOn: boolean;
  /** The rung (0-based) the verdict is at. */
  rung: number;
  why: string;
}

/** Best first; a value that was not finite (null: the trial diverged) is worse than any number. */
const better = (goal: Goal) => (a: number | null, b: number | null) => {
  if (a === null || b === null) return (a === null ? 1 : 0) - (b === null ? 1 : 0);
  return goal === 'minimize' ? a - b : b - a;
};

const fmt = (v: number | null) => (v === null ? 'NaN (diverged)' : String(Number(v.toPrecision(4))));

/** ASHA: each trial's verdict at the highest rung it reached (trials that reached none have none). */
export function ashaVerdicts(
  steps: readonly number[],
  eta: number,
  goal: Goal,
  metric: string,
  trials: readonly StopView[],
): Map<string, Verdict> {
  const cmp = better(goal);
  const out = new Map<string, Verdict>();
  const top = steps.map((_, k) => {
    const at = trials.filter((t) => t.rungs.length > k).sort((a, b) => cmp(a.rungs[k].value, b.rungs[k].value));
    const keep = Math.floor(at.length / eta);
    // A diverged trial is never promoted, even into a slot no finite trial takes.
    const names = new Set(
      at
        .slice(0, keep)
        .filter((t) => t.rungs[k].value !== null)
        .map((t) => t.name),
    );
    return { n: at.length, keep, names, cut: at[keep - 1] };
  });
  for (const t of trials) {
    const k = Math.min(t.rungs.length, steps.length) - 1;
    if (k < 0) continue;
    const r = top[k];
    const v = t.rungs[k].value;
    const where = `rung ${k + 1} (step ${steps[k]}): ${metric} ${fmt(v)}`;
    const goOn = r.names.has(t.name);
    const cut = r.cut ? `; cut-off ${fmt(r.cut.rungs[k].value)}` : '';
    out.set(t.name, {
      goOn,
      rung: k,
      why: goOn
        ? `promoted at ${where}, in the best ${r.keep} of ${r.n}`
        : `paused at ${where}, not in the best 1/${eta} (${r.keep} of ${r.n}${cut})`,
    });
  }
  return out;
}

/** The median of a non-empty list. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The median rule: each trial's verdict at the highest judged step it reached, once enough others reached it. */
export function medianVerdicts(
  steps: readonly number[],
  minTrials: number,
  goal: Goal,
  metric: string,
  trials: readonly StopView[],
): Map<string, Verdict> {
  const cmp = better(goal);
  const out = new Map<string, Verdict>();
  for (const t of trials) {
    const k = Math.min(t.rungs.length, steps.length) - 1;
    if (k < 0) continue;
    // A diverged running mean (null) counts as the worst value there is.
    const worst = goal === 'minimize' ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
    const others = trials.filter((o) => o !== t && o.rungs.length > k).map((o) => o.rungs[k].mean ?? worst);
    if (others.length < minTrials) continue;
    const med = median(others);
    const mine = t.rungs[k].mean;
    const goOn = mine !== null && cmp(mine, med) <= 0;
    const where = `step ${steps[k]}: mean ${metric} ${fmt(mine)}`;
    out.set(t.name, {
      goOn,
      rung: k,
      why: goOn
        ? `${where}, no worse than the median ${fmt(med)} of ${others.length}`
        : `stopped at ${where}, worse than the median ${fmt(med)} of ${others.length} other trial(s)`,
    });
  }
  return out;
}

/**
 * The rung values a series of (step, value) points gives: for each rung step, the first point at
 * or after it, and the mean of the values up to that point. Stops at the first rung not reached.
 * A value that was not finite (null) makes the mean null from there on: the trial diverged.
 */
export function rungValues(
  steps: readonly number[],
  points: readonly { step: number; value: number | null }[],
): RungValue[] {
  const out: RungValue[] = [];
  let sum: number | null = 0;
  let i = 0;
  const add = (a: number | null, b: number | null) => (a === null || b === null ? null : a + b);
  for (const s of steps) {
    while (i < points.length && points[i].step < s) sum = add(sum, points[i++].value);
    if (i >= points.length) break;
    const p = points[i];
    const total = add(sum, p.value);
    out.push({ step: p.step, value: p.value, mean: total === null ? null : total / (i + 1) });
  }
  return out;
}
