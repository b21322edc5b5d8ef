/**
 * PURE: per-user quotas (issue 17, the cluster file's users: section, config/users.ts). Given a
 * job's owner, what it asks for and what the owner uses now: may it start (ok), must it wait
 * (QuotaExceeded, naming the limit and the usage: "ollie: 1 of 1 GPUs in use"), or can it never
 * start within the quota (Failed/Unschedulable)? And the priority it runs at.
 *
 * Choices (for the README's section on sharing the lab):
 * - A priority above the owner's max_priority is CAPPED, visibly (a condition and an event say so),
 *   not refused: the job still runs, at the highest priority its owner may use, and a job file
 *   written past the CLI gets the same treatment. The CLI may refuse it up front (checkPriority).
 * - The GPU-hours limit stops new starts only; a running job is never stopped for it.
 * - Admins are not exempt: give one `{ gpus: unlimited }` under users.quotas to lift a default.
 * - Over the queued_jobs limit, an owner's later jobs (in queue order) are held: they wait with
 *   QuotaExceeded and take no part in placement until an earlier one starts.
 *
 * QuotaPass keeps one placement pass's count (core/placement.ts): what it starts or promises to a
 * preemptor counts against its owner for every job after it in the same pass.
 */
import {
  type EffectiveLimits,
  hasQuotas,
  limitsFor,
  type PriorityName,
  type QuotaField,
  type UsersSettings,
} from '../../config/users.ts';
import { priorityValue } from '../api/trainingjob.ts';

/** What an owner uses now, from the controller (the loop gathers it; absent fields count 0). */
export interface OwnerUsage {
  /** GPUs held by the owner's live runs and launches in flight. */
  gpus: number;
  /** The owner's jobs running or starting now. */
  runningJobs: number;
  /** GPU-hours used over the last 7 days (rolling), finished runs included. */
  gpuHoursWeek: number;
}

/** The quota inputs of a placement pass: plain data (PlanInput.quota). */
export interface QuotaInput {
  users: UsersSettings;
  /** Per owner (status.owner, the authenticated user); an owner not listed uses nothing. */
  usage: ReadonlyMap<string, Partial<OwnerUsage>>;
}

/** `limit`: the limit that decided (its field in QuotaLimits). */
export type QuotaDecision =
  | { kind: 'ok' }
  | { kind: 'wait'; reason: 'QuotaExceeded'; why: string; limit: QuotaField }
  | { kind: 'never'; reason: 'QuotaExceeded'; why: string; limit: QuotaField };

const OK: QuotaDecision = { kind: 'ok' };

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** Why a job needing at least `minGpus` GPUs can never start within these limits, or undefined. */
export function neverWithin(eff: EffectiveLimits, minGpus: number): { why: string; limit: QuotaField } | undefined {
  const { limits: l, from, user } = eff;
  if (l.runningJobs === 0) return { limit: 'runningJobs', why: `${user} may run no jobs (${from.runningJobs}: 0)` };
  if (minGpus > 0 && l.gpus !== undefined && minGpus > l.gpus)
    return {
      limit: 'gpus',
      why: `needs at least ${plural(minGpus, 'GPU')}; ${user} may use at most ${l.gpus} at once (${from.gpus})`,
    };
  if (minGpus > 0 && l.gpuHoursPerWeek === 0)
    return { limit: 'gpuHoursPerWeek', why: `${user} may use no GPU-hours (${from.gpuHoursPerWeek}: 0)` };
  return undefined;
}

const hours = (h: number) => (h >= 10 ? String(Math.round(h)) : String(Math.round(h * 10) / 10));

/**
 * May a job of `eff.user` needing `minGpus` GPUs start now, with the owner using `usage`? Checks,
 * in order: never (neverWithin), running jobs, GPUs, GPU-hours this week. `queuedAhead`: the
 * owner's jobs ahead of this one that are still waiting (the queued_jobs limit).
 */
export function checkQuota(
  eff: EffectiveLimits,
  minGpus: number,
  usage: Partial<OwnerUsage>,
  queuedAhead = 0,
): QuotaDecision {
  const never = neverWithin(eff, minGpus);
  if (never) return { kind: 'never', reason: 'QuotaExceeded', ...never };
  const { limits: l, from, user } = eff;
  const wait = (limit: QuotaField, why: string): QuotaDecision => ({
    kind: 'wait',
    reason: 'QuotaExceeded',
    why: `${user}: ${why}`,
    limit,
  });
  if (l.queuedJobs !== undefined && queuedAhead >= l.queuedJobs)
    return wait('queuedJobs', `${queuedAhead} of ${l.queuedJobs} queued jobs ahead of this one (${from.queuedJobs})`);
  const running = usage.runningJobs ?? 0;
  if (l.runningJobs !== undefined && running >= l.runningJobs)
    return wait('runningJobs', `${running} of ${plural(l.runningJobs, 'running job')} (${from.runningJobs})`);
  const gpus = usage.gpus ?? 0;
  if (minGpus > 0 && l.gpus !== undefined && gpus + minGpus > l.gpus) {
    const more = gpus < l.gpus ? `; this job needs ${minGpus}` : '';
    return wait('gpus', `${gpus} of ${l.gpus} GPUs in use (${from.gpus})${more}`);
  }
  const used = usage.gpuHoursWeek ?? 0;
  if (minGpus > 0 && l.gpuHoursPerWeek !== undefined && used >= l.gpuHoursPerWeek)
    return wait(
      'gpuHoursPerWeek',
      `${hours(used)} of ${l.gpuHoursPerWeek} GPU-hours used in the last 7 days (${from.gpuHoursPerWeek})`,
    );
  return OK;
}

/** GPUs the owner may still take now (Infinity without a GPU limit). */
export function gpusLeft(eff: EffectiveLimits, usage: Partial<OwnerUsage>): number {
  return eff.limits.gpus === undefined ? Number.POSITIVE_INFINITY : Math.max(0, eff.limits.gpus - (usage.gpus ?? 0));
}

const NAMES: Record<number, string> = { 100: 'high', 0: 'normal', [-100]: 'low' };
const label = (p: PriorityName | number) => (typeof p === 'number' ? (NAMES[p] ?? String(p)) : p);

/**
 * The priority a job runs at: its own, capped to the owner's max_priority. `note` says so when
 * capped ("priority high is above ollie's max_priority normal (users.defaults.max_priority): runs
 * as normal").
 */
export function capPriority(eff: EffectiveLimits, priority: number): { priority: number; note?: string } {
  const max = eff.limits.maxPriority;
  if (max === undefined) return { priority };
  const cap = priorityValue(max);
  if (priority <= cap) return { priority };
  return {
    priority: cap,
    note:
      `priority ${label(priority)} is above ${eff.user}'s max_priority ${label(max)} ` +
      `(${eff.from.maxPriority}): runs as ${label(max)}`,
  };
}

/** For the CLI (apply): refuse up front a priority the owner may not use, instead of capping it. */
export function checkPriority(eff: EffectiveLimits, priority: number): string | undefined {
  return capPriority(eff, priority).note?.replace(/: runs as .*$/, '');
}

/** For the CLI (apply): may the owner queue one more job, with `queued` of theirs waiting now? */
export function checkQueued(eff: EffectiveLimits, queued: number): string | undefined {
  const l = eff.limits.queuedJobs;
  if (l === undefined || queued < l) return undefined;
  const why = `${eff.user}: ${queued} of ${plural(l, 'queued job')} (${eff.from.queuedJobs})`;
  return `${why}: wait for one to start or cancel one`;
}

/**
 * One placement pass's view of the quotas: limits looked up once per owner, usage now plus what
 * this pass has started (or promised to a preemptor), and each owner's jobs still waiting.
 */
export class QuotaPass {
  private readonly limits = new Map<string, EffectiveLimits>();
  private readonly used = new Map<string, OwnerUsage>();
  private readonly waiting = new Map<string, number>();

  private constructor(private readonly input: QuotaInput) {}

  /** Undefined when the users: section sets no limit: placement then does no quota work at all. */
  static of(input: QuotaInput | undefined): QuotaPass | undefined {
    return input && hasQuotas(input.users) ? new QuotaPass(input) : undefined;
  }

  limitsOf(owner: string): EffectiveLimits {
    let e = this.limits.get(owner);
    if (!e) {
      e = limitsFor(this.input.users, owner);
      this.limits.set(owner, e);
    }
    return e;
  }

  usageOf(owner: string): OwnerUsage {
    let u = this.used.get(owner);
    if (!u) {
      const g = this.input.usage.get(owner);
      u = { gpus: g?.gpus ?? 0, runningJobs: g?.runningJobs ?? 0, gpuHoursWeek: g?.gpuHoursWeek ?? 0 };
      this.used.set(owner, u);
    }
    return u;
  }

  check(owner: string, minGpus: number): QuotaDecision {
    return checkQuota(this.limitsOf(owner), minGpus, this.usageOf(owner), this.waiting.get(owner) ?? 0);
  }

  gpusLeft(owner: string): number {
    return gpusLeft(this.limitsOf(owner), this.usageOf(owner));
  }

  /** A job of `owner` starts (or is promised GPUs by a preemption) with `gpus` GPUs. */
  started(owner: string, gpus: number): void {
    const u = this.usageOf(owner);
    u.gpus += gpus;
    u.runningJobs += 1;
  }

  /** A job of `owner` stays queued (it waits for GPUs): counts for the queued_jobs limit. */
  queued(owner: string): void {
    this.waiting.set(owner, (this.waiting.get(owner) ?? 0) + 1);
  }
}
