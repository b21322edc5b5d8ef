/**
 * A sweep's status: jobs/<name>.sweep.status.yaml, written by the controller only (atomic), read
 * back through this schema (the jobs dir is writable by people). It is also the sweep's memory of
 * its rung values: an objective value at a rung never changes once read, so ASHA's decisions do
 * not depend on re-reading every trial's metrics after a restart (they are read again if it is lost).
 */
import { z } from 'zod';

export const SWEEP_PHASES = ['Running', 'Succeeded', 'Failed', 'Invalid', 'Deleting'] as const;
export type SweepPhase = (typeof SWEEP_PHASES)[number];

export const TRIAL_STATES = ['running', 'paused', 'stopped', 'succeeded', 'failed', 'superseded'] as const;
export type TrialState = (typeof TRIAL_STATES)[number];

const num = z.number().finite();
const rungValue = z.object({
  step: z.number().int().min(0),
  /** The objective on the first metrics line at or after the rung's step; null: not finite (diverged). */
  value: num.nullable(),
  /** The mean of the objective over the lines up to there (the median rule's running average); null: diverged. */
  mean: num.nullable(),
});
export type RungValue = z.output<typeof rungValue>;

const trialRecord = z.object({
  name: z.string().max(63),
  generation: z.number().int().min(1),
  index: z.number().int().min(0),
  params: z.record(z.string().max(64), z.union([num, z.string().max(1024)])),
  state: z.enum(TRIAL_STATES),
  /** The trial job's phase as last read. */
  phase: z.string().max(32).optional(),
  step: z.number().int().min(0).optional(),
  /** One entry per rung (asha) or judged step (median) reached, in order. */
  rungs: z.array(rungValue).max(64).default([]),
  /** The objective on the trial's last metrics line (its final one once it ended). */
  objective: num.optional(),
  /** Its newest metrics line had the objective not finite (NaN, ±Infinity): it can never be the best. */
  diverged: z.literal(true).optional(),
  /** Why it is paused or stopped (or failed). */
  why: z.string().max(1024).optional(),
});
export type TrialRecord = z.output<typeof trialRecord>;

export const sweepStatusSchema = z.object({
  phase: z.enum(SWEEP_PHASES),
  reason: z.string().max(128).optional(),
  message: z
    .string()
    .max(64 * 1024)
    .optional(),
  specHash: z.string().max(16).optional(),
  generation: z.number().int().min(0),
  /** The authenticated owner (core/authorize.ts rules): set once from the first accepted spec. */
  owner: z.string().max(64).optional(),
  /** How the owner was established (file owner, signed commit, set by admin NAME). */
  ownerBy: z.string().max(256).optional(),
  /** The hash of the whole sweep spec last accepted (maxParallel included: a change by someone else is refused). */
  acceptedHash: z.string().max(16).optional(),
  /** What was refused at the last pass (said once, as an event). */
  denied: z.string().max(4096).optional(),
  createdAt: z.string().max(64),
  completionTime: z.string().max(64).optional(),
  objective: z.object({ metric: z.string().max(64), goal: z.enum(['minimize', 'maximize']) }).optional(),
  /** The rung steps (asha) or judged steps (median), for the CLI and the chart. */
  rungs: z.array(z.number().int()).max(64).optional(),
  /** Trials of this generation that exist (pending ones are not listed), then older generations'. */
  trials: z.array(trialRecord).max(10_000),
  best: z.object({ trial: z.string().max(63), objective: num, step: z.number().int().optional() }).optional(),
  counts: z.object({
    total: z.number().int(),
    pending: z.number().int(),
    running: z.number().int(),
    paused: z.number().int(),
    stopped: z.number().int(),
    succeeded: z.number().int(),
    failed: z.number().int(),
  }),
});
export type SweepStatus = z.output<typeof sweepStatusSchema>;

export function parseSweepStatus(raw: unknown): SweepStatus | undefined {
  const r = sweepStatusSchema.safeParse(raw);
  return r.success ? r.data : undefined;
}
