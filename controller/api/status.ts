/**
 * TrainingJob status: controller-owned, written to jobs/<name>.status.yaml, rebuilt from
 * observation. It is read back from a directory people (and git) write to, so it is parsed with a
 * schema like every other input. A status that fails it is salvaged field by field
 * (salvageJobStatus): one bad string must not cost a job its restart budgets, failure history and
 * createdAt, as rebuilding it from nothing would.
 */
import { z } from 'zod';
import { jobSourceStatusSchema } from './job-source.ts';

export const PHASES = [
  'Queued',
  'Starting',
  'Running',
  'Succeeded',
  'Failed',
  'Cancelled',
  'Suspended',
  'Invalid',
] as const;
export type Phase = (typeof PHASES)[number];
export const TERMINAL_PHASES: readonly Phase[] = ['Succeeded', 'Failed', 'Cancelled', 'Invalid'];

const conditionSchema = z.object({
  type: z.string().max(64),
  status: z.enum(['True', 'False', 'Unknown']),
  reason: z.string().max(128),
  message: z.string().max(64 * 1024),
  lastTransitionTime: z.string().max(64),
});
export type Condition = z.output<typeof conditionSchema>;

const nodeStatusSchema = z.object({
  host: z.string().max(63),
  nodeRank: z.number().int(),
  globalRanks: z.array(z.number().int()),
  pid: z.number().int().optional(),
  state: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown', 'Missing']),
  exitCode: z.number().int().optional(),
  /** The GPUs this node got. */
  gpus: z.array(z.object({ index: z.number().int(), name: z.string().max(100), memoryMiB: z.number() })).optional(),
});
export type NodeStatus = z.output<typeof nodeStatusSchema>;

/**
 * Infrastructure (launch failed, node lost, runner vanished), the training itself (exit, hang), or
 * out of memory (a rank killed by the kernel's OOM killer, or CUDA's out-of-memory error, while its
 * micro batch can still be halved: core/failures.ts).
 */
export const FAILURE_CLASSES = ['infra', 'training', 'oom'] as const;
export type FailureClass = (typeof FAILURE_CLASSES)[number];

const failureRecordSchema = z.object({
  attempt: z.number().int(),
  class: z.enum(FAILURE_CLASSES),
  reason: z.string().max(64),
  message: z.string().max(4096),
  host: z.string().max(63).optional(),
  rank: z.number().int().optional(),
  exitCode: z.number().int().optional(),
  time: z.string().max(64),
});
export type FailureRecord = z.output<typeof failureRecordSchema>;

/**
 * A rank that ran out of memory: from the attempt after `attempt` on, the rank `localRank` of
 * `host` runs micro batches of at most `maxMicro` (its share, and so the gradient, unchanged).
 */
const batchOverrideSchema = z.strictObject({
  host: z.string().max(63),
  localRank: z.number().int().min(0).max(1023),
  maxMicro: z.number().int().min(1).max(1_000_000),
  attempt: z.number().int().min(1),
});
export type BatchOverride = z.output<typeof batchOverrideSchema>;

/** One rank's part of the batch split (spec.batch), and how long its own work of a step took. */
const balanceRankSchema = z.strictObject({
  host: z.string().max(63),
  localRank: z.number().int().min(0).max(1023),
  /** Its global rank, once the run's ranks are up (the rendezvous gives them). */
  rank: z.number().int().min(0).optional(),
  batch: z.number().int().min(0).max(1_000_000),
  micro: z.number().int().min(1).max(1_000_000),
  accum: z.number().int().min(1).max(1_000_000),
  /** Its mean busy milliseconds a step (its own work, up to the gradient all-reduce), as measured. */
  stepMs: z.number().min(0).optional(),
  /** The slowest rank's stepMs minus its own: what it waits at the all-reduce each step. */
  idleMs: z.number().min(0).optional(),
});

/** A rank's measured speed (samples/s of its own work), kept across attempts: a restart starts balanced. */
const rankSpeedSchema = z.strictObject({
  host: z.string().max(63),
  localRank: z.number().int().min(0).max(1023),
  /** The GPU's index on its host, when it has one (another GPU of the host is another speed). */
  gpu: z.number().int().min(0).optional(),
  samplesPerS: z.number().positive(),
  /** The attempt that measured it. */
  attempt: z.number().int().min(1),
});
export type RankSpeed = z.output<typeof rankSpeedSchema>;

/** spec.batch's split (core/balance.ts): how, each rank's share and step time, the measured speeds. */
const balanceSchema = z.strictObject({
  mode: z.enum(['speed', 'memory', 'even']),
  /** What the current attempt's split was based on (speed falls back to memory until measured). */
  basis: z.enum(['speed', 'memory', 'even']),
  ranks: z.array(balanceRankSchema).max(4096),
  /** The mean wall time of a step, and the step of the metrics line measured. */
  stepMs: z.number().min(0).optional(),
  step: z.number().int().min(0).optional(),
  speeds: z.array(rankSpeedSchema).max(4096).optional(),
  /** When the last re-splits by speed were made (newest last): each in the last hour doubles the next one's bar. */
  resplits: z.array(z.iso.datetime()).max(8).optional(),
  /** A re-split waiting for the next checkpoint (one newer than `after`). */
  planned: z
    .strictObject({
      since: z.iso.datetime(),
      after: z.string().max(300).optional(),
      /** The step measured when it was planned (the checkpoint's measurement must be newer). */
      step: z.number().int().min(0),
      why: z.string().max(1024),
    })
    .optional(),
});
export type BalanceStatus = z.output<typeof balanceSchema>;
export type BalanceRank = z.output<typeof balanceRankSchema>;

export const jobStatusSchema = z.object({
  phase: z.enum(PHASES),
  reason: z.string().max(128).optional(),
  message: z
    .string()
    .max(64 * 1024)
    .optional(),
  /** Bumped each time the spec (its hash) changes. */
  observedGeneration: z.number().int().min(0),
  /**
   * When this generation began (controller clock). Runs of the same spec hash created before it
   * belong to an earlier generation (a spec reverted to an old version trains again).
   */
  generationSince: z.string().max(64).optional(),
  specHash: z.string().max(16).optional(),
  attempt: z.number().int().min(0),
  runId: z.string().max(100).optional(),
  rdzvEndpoint: z.string().max(300).optional(),
  nodes: z.array(nodeStatusSchema),
  createdAt: z.string().max(64),
  startTime: z.string().max(64).optional(),
  completionTime: z.string().max(64).optional(),
  exitCode: z.number().int().optional(),
  failedRank: z.number().int().optional(),
  failedHost: z.string().max(63).optional(),
  logTail: z.array(z.string()).max(200).optional(),
  progress: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])).optional(),
  /** Failures of this spec version per class (what the restart budgets are checked against). */
  restarts: z
    .object({
      infra: z.number().int().min(0),
      training: z.number().int().min(0),
      oom: z.number().int().min(0).optional(),
    })
    .optional(),
  /** The most recent failures, newest last (at most 20). */
  failures: z.array(failureRecordSchema).max(100).optional(),
  /**
   * Micro batch caps learned from out-of-memory failures of this spec (core/batch.ts): kept by every
   * later attempt, and across controller restarts; a changed spec starts without them.
   */
  batchOverrides: z.array(batchOverrideSchema).max(64).optional(),
  /** The current run as the Slurm cluster reports it (jobs with backend slurm only). */
  slurm: z
    .object({
      jobId: z.string().regex(/^\d{1,12}$/),
      state: z.string().max(64),
      reason: z.string().max(512).optional(),
      nodes: z.string().max(4096).optional(),
      restarts: z.number().int().min(0).optional(),
    })
    .optional(),
  /** When the next try may start (controller clock), while waiting out a backoff. */
  nextRetryAt: z.string().max(64).optional(),
  /**
   * Derived from the metrics lines when the status was written (core/progress.ts): percent done,
   * samples and steps per second, seconds left as of `at`. Only while the controller reads them.
   */
  estimate: z
    .object({
      percent: z.number().min(0).max(100).optional(),
      samplesPerS: z.number().min(0).optional(),
      stepsPerS: z.number().min(0).optional(),
      etaSeconds: z.number().min(0).optional(),
      at: z.string().max(64).optional(),
    })
    .optional(),
  conditions: z.array(conditionSchema),
  /** GitOps: the commit the job's file was applied from (full SHA); see status.source. */
  revision: z.string().max(64).optional(),
  /** GitOps: where the job's file came from (commit, subject, author) and whether it is in sync. */
  source: jobSourceStatusSchema.optional(),
  /**
   * Who the job belongs to: the account that wrote its first accepted spec (the file's owner, the
   * signer of its git head), or whom an admin named; fair share, quotas and permissions use it.
   * Without ownerBy (no account database, or a status from before accounts) it is only the
   * annotation's claim.
   */
  owner: z.string().max(512).optional(),
  /** How the owner was established: `file owner`, `signed commit …`, `unsigned commit …`, `set by admin …`. */
  ownerBy: z.string().max(1024).optional(),
  /** spec.batch: the split, each rank's step time and idle time, measured speeds, a planned re-split. */
  balance: balanceSchema.optional(),
  /** spec.scaleUp: more GPUs are free for this many nodes since then; restarted at the next checkpoint. */
  scaleUp: z
    .strictObject({
      nodes: z.number().int().min(1).max(4096),
      since: z.iso.datetime(),
      /** The newest checkpoint when it was noted: the restart waits for a newer one. */
      after: z.string().max(300).optional(),
    })
    .optional(),
});
export type JobStatus = z.output<typeof jobStatusSchema>;

/** Parse a status read from disk; undefined when it does not fit the schema (see salvageJobStatus). */
export function parseJobStatus(raw: unknown): JobStatus | undefined {
  const r = jobStatusSchema.safeParse(raw);
  return r.success ? r.data : undefined;
}

/** The first problems of a status that does not fit the schema, as `field: message` (for messages). */
export function statusIssues(raw: unknown, max = 3): string[] {
  const r = jobStatusSchema.safeParse(raw);
  if (r.success) return [];
  return r.error.issues.slice(0, max).map((i) => `${i.path.join('.') || '(document)'}: ${i.message.slice(0, 200)}`);
}

/** The condition a salvaged status carries: when, and which fields were dropped. */
const SALVAGED_CONDITION = 'StatusSalvaged';

/** Array fields kept item by item: a bad item goes, the others stay. */
const ITEMS: Record<string, { schema: z.ZodType; max?: number }> = {
  nodes: { schema: nodeStatusSchema },
  conditions: { schema: conditionSchema },
  failures: { schema: failureRecordSchema, max: 100 },
  batchOverrides: { schema: batchOverrideSchema, max: 64 },
  logTail: { schema: z.string(), max: 200 },
};

/** Without these a status says nothing a reconcile could keep. */
const ESSENTIAL = ['phase', 'observedGeneration', 'attempt', 'createdAt'];

/**
 * A status that fails the schema, kept field by field: every top-level field that fits its own
 * schema stays (budgets, failures, createdAt, generation are small typed fields that one overlong
 * string elsewhere must not take along), arrays keep their valid items, and a `StatusSalvaged`
 * condition names what was dropped and why. Undefined when it is not an object or an essential
 * field (phase, observedGeneration, attempt, createdAt) is unreadable: then nothing can be kept.
 */
export function salvageJobStatus(raw: unknown, now: string, what = 'the status file'): JobStatus | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  const issues = statusIssues(raw);
  const out: Record<string, unknown> = {};
  const dropped: string[] = [];
  for (const [key, schema] of Object.entries(jobStatusSchema.shape) as [string, z.ZodType][]) {
    if (r[key] === undefined) continue;
    if (schema.safeParse(r[key]).success) out[key] = r[key];
    else if (ITEMS[key] && Array.isArray(r[key])) {
      const items = (r[key] as unknown[]).filter((x) => ITEMS[key].schema.safeParse(x).success);
      out[key] = ITEMS[key].max ? items.slice(-ITEMS[key].max) : items;
      dropped.push(`${key} (some items)`);
    } else dropped.push(key);
  }
  if (ESSENTIAL.some((k) => out[k] === undefined)) return undefined;
  const message =
    `${what} did not fit its schema (${issues.join('; ')}); kept the fields that did, dropped: ` +
    `${dropped.join(', ') || 'nothing'}`;
  out.nodes ??= [];
  out.conditions = setCondition(
    (out.conditions as Condition[] | undefined) ?? [],
    { type: SALVAGED_CONDITION, status: 'True', reason: 'Salvaged', message: message.slice(0, 4096) },
    now,
  );
  return parseJobStatus(out);
}

/** Set a condition; lastTransitionTime only moves when its status changes. */
export function setCondition(list: Condition[], c: Omit<Condition, 'lastTransitionTime'>, now: string): Condition[] {
  const prev = list.find((x) => x.type === c.type);
  const next: Condition = {
    ...c,
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now,
  };
  return [...list.filter((x) => x.type !== c.type), next].sort((a, b) => a.type.localeCompare(b.type));
}
