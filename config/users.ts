/**
 * The cluster file's optional `users:` section: a lab shared by several people (issue 17).
 *
 *   users:
 *     admins: [master]          # may act on anyone's job, and make a job someone else's
 *     unsigned_owner: master    # GitOps: who owns the jobs of an unsigned commit
 *     logs: open                # open | private (private: only the owner or an admin reads a job's logs)
 *     defaults:                 # everyone's limits; absent = unlimited
 *       gpus: 2                 # GPUs in use at once
 *       running_jobs: 4
 *       queued_jobs: 20         # jobs waiting to start; those past it are held, not placed
 *       gpu_hours_per_week: 200 # GPU-hours over the last 7 days (rolling): past it, no new start
 *       max_priority: normal    # a higher spec.priority is capped to this (core/quota.ts)
 *     quotas:                   # per user, field by field over `defaults`; `unlimited` lifts a default
 *       ollie: { gpus: 1 }
 *       master: { gpus: unlimited }
 *
 * Users are Unix login names (the owner of a job is an account, issue 17). Snake case like every
 * other field of the cluster file. Schema and normalization only: the decisions are in
 * controller/core/quota.ts and controller/core/permissions.ts.
 */
import { z } from 'zod';

const UNLIMITED = 'unlimited' as const;

/** A priority as a job spec writes it (controller/api/trainingjob.ts; config/ may not import it). */
export type PriorityName = 'high' | 'normal' | 'low' | number;

/** One user's limits, each absent when unlimited. */
export interface QuotaLimits {
  gpus?: number;
  runningJobs?: number;
  queuedJobs?: number;
  gpuHoursPerWeek?: number;
  maxPriority?: PriorityName;
}

export type QuotaField = keyof QuotaLimits;

/** A per-user entry as written: a field may say `unlimited`, lifting the default for that user. */
export type QuotaEntry = { [K in QuotaField]?: QuotaLimits[K] | typeof UNLIMITED };

/** The file's name of each limit, for messages that say what to change. */
export const QUOTA_FIELD_NAMES: Record<QuotaField, string> = {
  gpus: 'gpus',
  runningJobs: 'running_jobs',
  queuedJobs: 'queued_jobs',
  gpuHoursPerWeek: 'gpu_hours_per_week',
  maxPriority: 'max_priority',
};

/** The users: section, normalized. */
export interface UsersSettings {
  admins: string[];
  /** As written; unsignedOwnerOf() fills the default. */
  unsignedOwner?: string;
  logs: 'open' | 'private';
  defaults: QuotaLimits;
  quotas: Record<string, QuotaEntry>;
}

/** A user's effective limits, each with the field of the cluster file it came from. */
export interface EffectiveLimits {
  user: string;
  limits: QuotaLimits;
  /** e.g. gpus -> "users.quotas.ollie.gpus" or "users.defaults.gpus". */
  from: Partial<Record<QuotaField, string>>;
}

/** A count limit: a whole number >= min, or `unlimited` (lifts a default for one user). */
const count = (min: number) =>
  z.union(
    [
      z
        .number()
        .int(`must be a whole number >= ${min}, or "unlimited"`)
        .min(min, `must be at least ${min}, or "unlimited"`)
        .max(1_000_000, 'must be at most 1000000, or "unlimited"'),
      z.literal(UNLIMITED),
    ],
    { error: `must be a whole number >= ${min}, or "unlimited"` },
  );

const limitsSchema = z.strictObject({
  /** 0: no GPU job at all (CPU jobs still run). */
  gpus: count(0).optional(),
  /** 0: nothing runs for this user. */
  running_jobs: count(0).optional(),
  /** At least 1: a job has to queue to start. */
  queued_jobs: count(1).optional(),
  gpu_hours_per_week: z
    .union([z.number().min(0, 'must be at least 0, or "unlimited"').max(1_000_000), z.literal(UNLIMITED)], {
      error: 'must be a number of GPU-hours >= 0, or "unlimited"',
    })
    .optional(),
  max_priority: z
    .union([z.enum(['high', 'normal', 'low']), z.number().int().min(-1000).max(1000), z.literal(UNLIMITED)], {
      error: 'must be high, normal, low, an integer -1000..1000, or "unlimited"',
    })
    .optional(),
});

type LimitsFile = z.output<typeof limitsSchema>;

/**
 * The section's schema, built with schema.ts's own login-name validator (passed in: schema.ts
 * imports this module, so importing it back would be a cycle).
 */
export function usersSchemaWith(v: { userName: z.ZodString }) {
  // schema.ts's rule, with messages about users rather than a host's login.
  const problem = (s: string) => v.userName.safeParse(s).error?.issues[0]?.message;
  const loginName = z.string({ error: 'must be a login name (e.g. "master")' }).superRefine((s, ctx) => {
    const p = problem(s);
    if (p) ctx.addIssue({ code: 'custom', message: p });
  });
  return z.strictObject({
    admins: z.array(loginName).max(1000).default([]),
    unsigned_owner: loginName.optional(),
    logs: z.enum(['open', 'private'], { error: 'must be open or private' }).default('open'),
    defaults: limitsSchema.prefault({}),
    /** Keys are login names; one that is not is reported at users.quotas.<key>, on its line. */
    quotas: z
      .record(z.string(), limitsSchema)
      .default({})
      .superRefine((r, ctx) => {
        for (const user of Object.keys(r)) {
          const p = problem(user);
          if (p) ctx.addIssue({ code: 'custom', path: [user], message: `"${user}" is not a login name: ${p}` });
        }
      }),
  });
}

export type UsersFile = z.output<ReturnType<typeof usersSchemaWith>>;

function entryOf(f: LimitsFile): QuotaEntry {
  return {
    ...(f.gpus !== undefined ? { gpus: f.gpus } : {}),
    ...(f.running_jobs !== undefined ? { runningJobs: f.running_jobs } : {}),
    ...(f.queued_jobs !== undefined ? { queuedJobs: f.queued_jobs } : {}),
    ...(f.gpu_hours_per_week !== undefined ? { gpuHoursPerWeek: f.gpu_hours_per_week } : {}),
    ...(f.max_priority !== undefined ? { maxPriority: f.max_priority } : {}),
  };
}

/**
 * The normalized section (undefined without one: no quotas, no admins named). `unlimited` stays
 * in a per-user entry (it overrides a default) and is dropped from `defaults` (it is the default).
 */
export function usersSettings(f: UsersFile | undefined): UsersSettings | undefined {
  if (!f) return undefined;
  const defaults: QuotaLimits = {};
  for (const [k, v] of Object.entries(entryOf(f.defaults)) as [QuotaField, unknown][])
    if (v !== UNLIMITED) (defaults as Record<QuotaField, unknown>)[k] = v;
  const quotas: Record<string, QuotaEntry> = {};
  for (const [user, l] of Object.entries(f.quotas)) quotas[user] = entryOf(l);
  return {
    admins: [...new Set(f.admins)],
    ...(f.unsigned_owner ? { unsignedOwner: f.unsigned_owner } : {}),
    logs: f.logs,
    defaults,
    quotas,
  };
}

/** A user's limits: their own entry field by field over the defaults; `unlimited` removes one. */
export function limitsFor(users: UsersSettings | undefined, user: string): EffectiveLimits {
  const out: EffectiveLimits = { user, limits: {}, from: {} };
  if (!users) return out;
  // Own-property lookup only: a user named "constructor" or "__proto__" is a user, not a prototype key.
  const own = Object.hasOwn(users.quotas, user) ? users.quotas[user] : undefined;
  for (const k of Object.keys(QUOTA_FIELD_NAMES) as QuotaField[]) {
    const mine = own?.[k];
    const v = mine !== undefined ? mine : users.defaults[k];
    if (v === undefined || v === UNLIMITED) continue;
    (out.limits as Record<QuotaField, unknown>)[k] = v;
    const field = QUOTA_FIELD_NAMES[k];
    out.from[k] = mine !== undefined ? `users.quotas.${user}.${field}` : `users.defaults.${field}`;
  }
  return out;
}

/** True when the section sets any limit at all (placement skips quota work otherwise). */
export function hasQuotas(users: UsersSettings | undefined): boolean {
  if (!users) return false;
  const set = (l: QuotaEntry) => Object.values(l).some((v) => v !== undefined && v !== UNLIMITED);
  return set(users.defaults) || Object.values(users.quotas).some(set);
}

/**
 * Who owns the jobs of an unsigned GitOps commit: `unsigned_owner`, else the first admin, else
 * the account the controller runs as.
 */
export function unsignedOwnerOf(users: UsersSettings | undefined, controllerUser: string): string {
  return users?.unsignedOwner ?? users?.admins[0] ?? controllerUser;
}
