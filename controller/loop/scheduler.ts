/**
 * The controller's side of placement: gathers the whole queue (every waiting job), the hosts'
 * GPUs, what holds them (live runs of every owner, launches in flight) and the owners' usage,
 * runs the pure plan once, and keeps it until something it depends on changes. Each waiting
 * job's reconcile then reads its own decision. Gathering only: the decisions are core's.
 */
import type { Host } from '../../config/cluster.ts';
import type { UsersSettings } from '../../config/users.ts';
import type { RunPart } from '../api/run.ts';
import { type JobStatus, TERMINAL_PHASES } from '../api/status.ts';
import { priorityValue, type TrainingJob } from '../api/trainingjob.ts';
import { type Decision, type Gpu, type Holding, type HostSlots, plan, type Request } from '../core/placement.ts';
import type { OwnerUsage, QuotaInput } from '../core/quota.ts';
import { gpusOf, requestOf, runsOnSlurm } from '../core/schedule.ts';

export interface JobView {
  job: TrainingJob;
  status?: JobStatus;
  /** Queue age (status createdAt, else the file's mtime). */
  createdAt: string;
  /** The authenticated owner (before its first status says so). */
  owner?: string;
}

export interface SchedulerInputs {
  hosts: Host[];
  jobs: Map<string, JobView>;
  /** Every live part on every host (all owners). */
  parts: RunPart[];
  mine: (p: RunPart) => boolean;
  /** Launches in flight: job -> hosts and GPUs claimed. */
  claims: Map<string, { host: string; gpus?: number[] }[]>;
  health: Map<
    string,
    { ready: boolean; why?: string; gpus?: { index: number; name: string; memoryTotalMiB: number }[] }
  >;
  /** Hosts this controller may not use now: host -> why (down, leased elsewhere). */
  unusable: Map<string, string>;
  usage: Map<string, number>;
  now: number;
  /** The users: section when it sets a limit, and each owner's GPU-hours over the last 7 days. */
  quota?: { users: UsersSettings; weekHours: Map<string, number> };
}

/** Is this job waiting for a placement (not running, not finished, not held back on purpose)? */
function waiting(v: JobView, now: number): boolean {
  const s = v.status;
  if (v.job.spec.suspend) return false;
  // spec.after: not before its dependencies are met (a job asked about is planned along then).
  if (s?.reason === 'WaitingForDependency' || (!s && v.job.spec.after?.length)) return false;
  if (!s) return true;
  if (TERMINAL_PHASES.includes(s.phase) || s.phase === 'Suspended') return false;
  if (s.phase === 'Running' || s.phase === 'Starting') return false;
  // Waiting out a backoff: not placed before its time (its GPUs stay free for others meanwhile).
  if (s.nextRetryAt && Date.parse(s.nextRetryAt) > now) return false;
  return true;
}

/**
 * The plan's inputs. `also`: jobs scheduled now whatever their phase says (one whose run just
 * ended, seen Running until this reconcile): they compete with the queue, in its order.
 */
function planInputs(
  i: SchedulerInputs,
  also: ReadonlySet<string> = new Set(),
  /** A job whose own live parts count as free (would it fit on more nodes?). */
  without?: string,
): { requests: Request[]; hosts: HostSlots[]; holdings: Holding[]; quota?: QuotaInput } {
  // A Slurm cluster's login host is Slurm's to schedule: its jobs and GPUs are no part of this plan.
  const hosts: HostSlots[] = i.hosts
    .filter((h) => !h.slurm)
    .map((h) => {
      const hv = i.health.get(h.name);
      const gpus: Gpu[] = gpusOf(h, hv?.gpus);
      const unusable = i.unusable.get(h.name) ?? (hv?.ready ? undefined : `NotReady (${hv?.why ?? 'not checked yet'})`);
      return { host: h.name, gpus, ...(gpus.length ? {} : { cpu: true }), ...(unusable ? { unusable } : {}) };
    });
  const holdings: Holding[] = [];
  for (const p of i.parts) {
    if (!p.alive || !hosts.some((h) => h.host === p.host)) continue;
    const v = i.mine(p) ? i.jobs.get(p.meta.job) : undefined;
    if (v && p.meta.job === without) continue;
    const slots = hosts.find((h) => h.host === p.host);
    // A part with no recorded GPUs (an older UGRO, another controller) holds its whole host.
    const gpus = p.meta.gpus?.map((g) => g.index) ?? slots?.gpus.map((g) => g.index) ?? [];
    holdings.push({
      job: v ? p.meta.job : `${p.meta.job} (of another controller)`,
      host: p.host,
      gpus,
      priority: v ? priorityValue(v.job.spec.priority) : Number.POSITIVE_INFINITY,
      preemptible: !!v && v.job.spec.preemptible,
      startedAt: Date.parse(p.meta.createdAt),
      minRuntimeSeconds: v?.job.spec.preemption.minRuntimeSeconds ?? 0,
      ...(p.meta.backfill ? { backfill: true } : {}),
      runId: p.meta.runId,
      dir: p.dir,
      ...(v ? { graceSeconds: v.job.spec.preemption.graceSeconds } : {}),
      // Whose: a quota's max_priority caps a running job too, and its GPUs count against its owner.
      ...(v?.owner ? { owner: v.owner } : {}),
    });
  }
  for (const [job, cs] of i.claims) {
    for (const c of cs) {
      holdings.push({
        job,
        host: c.host,
        // A claim without GPUs (a CPU host, a launch decided alone) takes the whole host.
        gpus: c.gpus ?? hosts.find((h) => h.host === c.host)?.gpus.map((g) => g.index) ?? [],
        priority: Number.POSITIVE_INFINITY,
        preemptible: false,
        startedAt: i.now,
        minRuntimeSeconds: 0,
        runId: '',
        dir: '',
      });
    }
  }
  const requests: Request[] = [];
  for (const [name, v] of i.jobs) {
    if (!(also.has(name) || waiting(v, i.now)) || i.claims.has(name) || runsOnSlurm(v.job, i.hosts)) continue;
    const prefer = v.status?.nodes.map((n) => n.host) ?? [];
    requests.push(requestOf(v.job, { createdAt: v.createdAt, owner: v.owner, prefer }));
  }
  return { requests, hosts, holdings, ...(i.quota ? { quota: quotaOf(i, holdings) } : {}) };
}

/**
 * Each owner's usage now, from what holds GPUs (this controller's live parts, by their job's owner,
 * and launches in flight) and the week's GPU-hours. A job being sized (`without`) is not in the
 * holdings, so its own GPUs do not count against it.
 */
function quotaOf(i: SchedulerInputs, holdings: Holding[]): QuotaInput | undefined {
  if (!i.quota) return undefined;
  // Distinct GPUs: a launch's claim and its live part (seen before the claim is released) are one.
  const gpus = new Map<string, Set<string>>();
  const jobs = new Map<string, Set<string>>();
  for (const h of holdings) {
    // A claim's holding has no owner (its priority is never capped): its job's status names one.
    const owner = h.owner ?? i.jobs.get(h.job)?.owner;
    if (!owner) continue;
    const gs = gpus.get(owner) ?? new Set<string>();
    for (const g of h.gpus) gs.add(`${h.host}/${g}`);
    gpus.set(owner, gs);
    const js = jobs.get(owner) ?? new Set<string>();
    js.add(h.job);
    jobs.set(owner, js);
  }
  const usage = new Map<string, Partial<OwnerUsage>>();
  for (const o of new Set([...gpus.keys(), ...i.quota.weekHours.keys()])) {
    usage.set(o, {
      gpus: gpus.get(o)?.size ?? 0,
      runningJobs: jobs.get(o)?.size ?? 0,
      gpuHoursWeek: i.quota.weekHours.get(o) ?? 0,
    });
  }
  return { users: i.quota.users, usage };
}

/** The plan for the whole queue, remade only when asked to (something it depends on changed). */
export class Scheduler {
  private cached?: Map<string, Decision>;
  /** Jobs asked about that the queue did not list as waiting: planned along until invalidated. */
  private readonly also = new Set<string>();
  private readonly grow = new Map<string, number | undefined>();

  constructor(private readonly gather: () => SchedulerInputs) {}

  /** Something placement depends on changed: the next decision makes a new plan. */
  invalidate(): void {
    this.cached = undefined;
    this.also.clear();
    this.grow.clear();
  }

  /**
   * spec.scaleUp: how many nodes a running job would get now with its own GPUs counted free, in
   * its place in the queue, without preempting anyone (undefined: it would not be placed).
   */
  growTo(job: string): number | undefined {
    if (!this.grow.has(job)) {
      const i = this.gather();
      const d = plan({ ...planInputs(i, new Set([job]), job), usage: i.usage, now: i.now }).get(job);
      this.grow.set(job, d?.kind === 'place' && !d.backfill ? d.nodes.length : undefined);
    }
    return this.grow.get(job);
  }

  /** The decision for a job being scheduled now (it is planned along with the queue if need be). */
  decision(job: string): Decision | undefined {
    for (;;) {
      if (!this.cached) {
        const i = this.gather();
        this.cached = plan({ ...planInputs(i, this.also), usage: i.usage, now: i.now });
      }
      if (this.cached.has(job) || this.also.has(job)) return this.cached.get(job);
      this.also.add(job);
      this.cached = undefined;
    }
  }
}
