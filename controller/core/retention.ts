/**
 * PURE: spec.checkpoint.keep. Given a job's checkpoints on its hosts (core/checkpoints.ts rows),
 * which to delete and why, and why each other one stays. Only `step-N` checkpoints are managed (a
 * name a person gave, `final`, is theirs). Kept whatever the policy says:
 *   - the newest (highest step), and on each host the one its `latest` names: what a restart resumes from;
 *   - the names a restart needs (the next attempt's resume point, spec.checkpoint.resumeFrom);
 *   - what a dependent job (spec.after) that has not started yet will be handed;
 *   - a promoted one (the models registry).
 * Then the newest `last` steps and the `best` by `metric` (its value in the metrics line at that
 * step; a checkpoint without one is never among the best). A name is kept or deleted on every host
 * holding it alike.
 */
import type { CheckpointRow } from './checkpoints.ts';
import { metricValue } from './checkpoints.ts';

export interface KeepPolicy {
  last?: number;
  best?: number;
  metric: string;
  goal: 'minimize' | 'maximize';
}

export interface RetentionInput {
  keep: KeepPolicy;
  rows: readonly CheckpointRow[];
  /** Names a restart of this job would start from. */
  restart: readonly string[];
  /** Jobs whose spec.after names this one and that have not started: the checkpoint each will get. */
  dependents: readonly { job: string; name: string }[];
  /** This job's checkpoints registered as model versions. */
  promoted: readonly { name: string; model: string }[];
}

export interface RetentionDecision {
  /** Every managed name that stays, with each reason. */
  keep: { name: string; why: string[] }[];
  /** One entry per copy to remove. */
  delete: { host: string; dir: string; name: string; sizeBytes: number; why: string }[];
}

export function retention(input: RetentionInput): RetentionDecision {
  const { keep, rows } = input;
  const managed = rows.filter((r) => r.step !== undefined);
  const why = new Map<string, string[]>();
  const hold = (name: string | undefined, reason: string) => {
    if (name === undefined || !managed.some((r) => r.name === name)) return;
    const list = why.get(name) ?? [];
    if (!list.includes(reason)) list.push(reason);
    why.set(name, list);
  };
  // By step, newest first (rows of one name share it); one entry per name.
  const names = [...new Map(managed.map((r) => [r.name, r] as const)).values()].sort(
    (a, b) => (b.step ?? 0) - (a.step ?? 0) || b.mtimeMs - a.mtimeMs,
  );
  hold(names[0]?.name, 'newest');
  for (const r of managed) for (const c of r.copies) if (c.latest) hold(r.name, `newest on ${c.host}`);
  for (const n of input.restart) hold(n, 'a restart resumes from it');
  for (const d of input.dependents) hold(d.name, `job ${d.job} (spec.after) will start from it`);
  for (const p of input.promoted) hold(p.name, `promoted as ${p.model}`);
  if (keep.last !== undefined) for (const r of names.slice(0, keep.last)) hold(r.name, `among the last ${keep.last}`);
  if (keep.best !== undefined) {
    const sign = keep.goal === 'maximize' ? -1 : 1;
    const scored = names
      .map((r) => ({ r, v: metricValue(r.metrics, keep.metric) }))
      .filter((x): x is { r: CheckpointRow; v: number } => x.v !== undefined)
      .sort((a, b) => sign * (a.v - b.v) || (b.r.step ?? 0) - (a.r.step ?? 0));
    for (const { r, v } of scored.slice(0, keep.best))
      hold(r.name, `among the best ${keep.best} by ${keep.metric} (${v})`);
  }
  const policy = [
    keep.last !== undefined ? `the last ${keep.last}` : '',
    keep.best !== undefined ? `the best ${keep.best} by ${keep.metric}` : '',
  ]
    .filter(Boolean)
    .join(' or ');
  const out: RetentionDecision = { keep: [], delete: [] };
  for (const r of names) {
    const w = why.get(r.name);
    if (w) out.keep.push({ name: r.name, why: w });
  }
  for (const r of managed) {
    if (why.has(r.name)) continue;
    for (const c of r.copies)
      out.delete.push({ host: c.host, dir: c.dir, name: r.name, sizeBytes: r.sizeBytes, why: `not among ${policy}` });
  }
  return out;
}

/** `1.2 GB`, `340 MB`, `12 kB`, `512 B` (powers of 1000, like df -H). */
export function bytesText(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** How often a running job with spec.checkpoint.keep is reconciled while its progress moves. */
export const RETENTION_WAKE_MS = 10_000;

/**
 * Whether a progress update of a job should wake its reconcile for retention: it keeps a policy
 * and its last wake was at least `everyMs` ago. The reconcile's observe sees a new checkpoint
 * (loop/retention.ts prunes then), so a running job's checkpoints are pruned as it writes them,
 * not only at the resync (60 s), at the cost of one observe per `everyMs` while it trains.
 */
export function retentionWakeDue(
  hasKeep: boolean,
  lastMs: number | undefined,
  nowMs: number,
  everyMs: number,
): boolean {
  return hasKeep && (lastMs === undefined || nowMs - lastMs >= everyMs);
}
