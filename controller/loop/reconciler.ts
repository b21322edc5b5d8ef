/**
 * One job's reconcile: reads its files, gathers facts (its parts on the hosts, the cluster view the
 * pure reconcile plans in, what placement plans over), calls core/reconcile.ts and hands the result
 * to the executor; a settled job skips the host I/O.
 */

import type { JobSource } from '../api/job-source.ts';
import type { SpecState } from '../api/job-state.ts';
import type { JobStatus } from '../api/status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import { authorize } from '../core/authorize.ts';
import type { AuthContext } from '../core/authorize-types.ts';
import { reconcile } from '../core/reconcile.ts';
import { queueOrder } from '../core/schedule.ts';
import { shortcut } from '../core/settled.ts';
import { refreshSource } from '../core/source.ts';
import type { ClusterView } from '../core/types.ts';
import type { LoopContext } from './context.ts';
import type { Executor } from './executor.ts';
import type { JobBook } from './jobs.ts';
import { retentionOf } from './retention.ts';
import type { HostScan } from './scan.ts';
import type { JobView, SchedulerInputs } from './scheduler.ts';
import type { Usage } from './usage.ts';

export class Reconciler {
  /** Spec hash last kept in jobs/.ugro/accepted/ per job (written once per accepted change). */
  private readonly accepted = new Map<string, string>();

  constructor(
    private readonly ctx: LoopContext,
    private readonly scan: HostScan,
    private readonly executor: Executor,
    /** GitOps: where each job file came from (its revision, removed from git). */
    private readonly source?: JobSource,
  ) {}

  /**
   * Reconcile `name`; when what its dependents decide on changed (its phase, its spec, it was
   * deleted: loop/jobs.ts factsKey), they are reconciled again: no polling.
   */
  async reconcile(name: string): Promise<{ requeueAfterMs?: number }> {
    const before = this.ctx.jobs.factsKey(name);
    this.ctx.jobs.beginReconcile(name);
    let out: { requeueAfterMs?: number } | undefined;
    try {
      out = await this.reconcileOne(name);
    } finally {
      // Hosts came free while this job was being placed (a new job has no Queued status yet, so
      // the kick passed it by): look again now, not after the queued requeue (5 s).
      if (this.ctx.jobs.kickedSince(name) && out && this.ctx.jobs.waitsForHosts(name)) out = { requeueAfterMs: 0 };
      if (this.ctx.jobs.factsKey(name) !== before)
        for (const d of this.ctx.jobs.dependentsOf(name)) this.ctx.enqueue(d);
    }
    return out;
  }

  private async reconcileOne(name: string): Promise<{ requeueAfterMs?: number }> {
    this.ctx.stats.reconciles++;
    const [spec, status, control] = await Promise.all([
      this.ctx.store.readSpec(name),
      this.ctx.store.readStatus(name),
      this.ctx.store.readControl(name),
    ]);
    this.ctx.jobs.markInvalid(name, spec.kind === 'invalid');
    this.ctx.observer?.read?.(name, spec, status);
    const source = await this.source?.infoFor(name);
    const auth = await this.authFor(name, spec, status);
    const cut = shortcut(spec, status, control, this.ctx.hostsState.liveOf(name));
    if (cut === 'skip') {
      if (spec.kind === 'valid') await this.ctx.jobs.remember(name, spec.job, status);
      // Settled on the hosts, but the source may have news (a new revision of the file, removed from git).
      const fresh = status && refreshSource(status, spec, source, this.ctx.now());
      if (fresh) await this.executor.persist(name, fresh.status, fresh.events);
      return {};
    }
    if (cut === 'no-host-io') {
      const res = reconcile({
        name,
        now: this.ctx.now(),
        spec,
        status,
        control,
        parts: [],
        unreachable: new Map(),
        cluster: this.view(name),
        source,
        auth,
        ...this.producers(spec),
      });
      await this.executor.persist(name, res.status, res.events);
      await this.keepAccepted(name, spec, res.status);
      if (res.dropControl) await this.ctx.store.deleteControl(name);
      return {};
    }
    const { unreachable, checkpoints, attemptFloor } = await this.scan.observeJob(name, spec, status);
    const parts = this.ctx.hostsState.partsOf(name, unreachable);
    this.ctx.claims.release(name);
    // A change the owner did not make is not the job's spec (core/authorize.ts): remember the one it
    // runs, and its owner from this pass on (a new job's quota counts before its first status).
    const pre = authorize({ name, spec, status, control, source }, auth);
    const known = pre.input.spec;
    if (known.kind === 'valid')
      await this.ctx.jobs.remember(name, known.job, status, pre.owner?.owner ?? status?.owner);
    if (spec.kind === 'valid') this.ctx.jobs.noteCheckpoints(name, spec.hash, checkpoints);
    // spec.checkpoint.keep, of the spec the job runs (accepted), when a new checkpoint appeared (loop/retention.ts).
    if (spec.kind === 'valid' && known.kind === 'valid' && known.hash === spec.hash)
      retentionOf(this.ctx).observed(name, known.job, status, checkpoints);
    if (known.kind === 'valid') await this.observeProducers(known.job, known.hash, status);
    const res = reconcile({
      name,
      now: this.ctx.now(),
      spec,
      status,
      control,
      parts,
      unreachable,
      cluster: this.view(name),
      checkpoints,
      attemptFloor,
      source,
      auth,
      ...this.producers(known),
    });
    const ran = res.spec ?? spec;
    const out = await this.executor.execute(name, ran, res, status);
    await this.keepAccepted(name, ran, res.status);
    if (res.dropControl) await this.ctx.store.deleteControl(name);
    const due = this.nodeLostDue(spec, unreachable);
    if (due !== undefined && out.requeueAfterMs !== undefined) out.requeueAfterMs = Math.min(out.requeueAfterMs, due);
    return out;
  }

  /** spec.after: what the pure step reads of the jobs this one waits for (none without spec.after). */
  private producers(spec: SpecState): { producers?: ReturnType<JobBook['producersOf']> } {
    return spec.kind === 'valid' && spec.job.spec.after?.length
      ? { producers: this.ctx.jobs.producersOf(spec.job) }
      : {};
  }

  /**
   * A job about to start after its producers finished reads their checkpoints: a producer whose
   * checkpoints this controller has not observed (it finished before a restart: settled jobs are
   * not looked at) is observed once, on the hosts its status names.
   */
  private async observeProducers(job: TrainingJob, hash: string, status: JobStatus | undefined): Promise<void> {
    if (!job.spec.after?.length || (status?.specHash === hash && status.attempt > 0)) return;
    await Promise.all(
      job.spec.after.map(async (a) => {
        // A sweep hands over its best trial's checkpoint: that trial is the job to observe.
        const sweep = a.sweep ? this.ctx.jobs.facts(a.sweep)?.sweep : undefined;
        const p = a.sweep ? sweep?.best : a.job;
        if (!p) return;
        const f = this.ctx.jobs.facts(p);
        const m = this.ctx.jobs.get(p);
        const ended = f?.phase === 'Succeeded' || f?.phase === 'Failed' || f?.phase === 'Cancelled';
        if (!m || !f?.specHash || !ended || f.checkpoints || f.statusHash !== f.specHash) return;
        const spec: SpecState = { kind: 'valid', job: m.job, hash: f.specHash, file: '' };
        const seen = await this.scan.observeJob(p, spec, m.status);
        this.ctx.jobs.noteCheckpoints(p, f.specHash, seen.checkpoints);
      }),
    );
  }

  /**
   * The access rules, with the spec the job was last accepted with when its file changed (what it
   * goes on with if the change was not its owner's): read only then.
   */
  private async authFor(
    name: string,
    spec: SpecState,
    status: JobStatus | undefined,
  ): Promise<AuthContext | undefined> {
    const a = this.ctx.auth;
    if (!a) return undefined;
    const changed = spec.kind === 'invalid' || (spec.kind === 'valid' && status?.specHash !== spec.hash);
    const accepted = changed && status?.ownerBy ? await this.ctx.store.readAccepted(name) : undefined;
    return { ...a, ...(accepted ? { accepted } : {}) };
  }

  /** A spec the job now runs with (accepted: its hash is the status's) is kept for authorize's next refusal. */
  private async keepAccepted(name: string, spec: SpecState, status: JobStatus | null): Promise<void> {
    if (!this.ctx.auth || spec.kind !== 'valid' || status?.specHash !== spec.hash || !status.ownerBy) return;
    if (this.accepted.get(name) === spec.hash) return;
    const kept = await this.ctx.store.readAccepted(name);
    if (kept?.hash !== spec.hash) await this.ctx.store.writeAccepted(name, spec.job);
    this.accepted.set(name, spec.hash);
  }

  private view(name: string): ClusterView {
    const scheduler = this.ctx.scheduler;
    const scaleUp = this.ctx.jobs.get(name)?.job.spec.scaleUp;
    const preemptedBy = this.ctx.jobs.preemptedBy.get(name);
    const busy = this.ctx.hostsState.busy(name);
    for (const [h, j] of this.ctx.claims.busyHosts(name)) busy.set(h, j);
    const usedPorts = this.ctx.hostsState.ports();
    for (const p of this.ctx.claims.ports()) usedPorts.add(p);
    const me = this.ctx.jobs.get(name);
    const ahead = me
      ? [...this.ctx.jobs.entries()]
          .filter(
            ([n, m]) =>
              n !== name &&
              m.phase === 'Queued' &&
              m.reason === 'Unschedulable' &&
              queueOrder({ ...m, name: n }, { ...me, name }) < 0,
          )
          .sort(([an, a], [bn, b]) => queueOrder({ ...a, name: an }, { ...b, name: bn }))
          .map(([n]) => n)
      : [];
    return {
      hosts: this.ctx.hosts,
      ready: this.ctx.hostsState.ready(),
      notReady: this.ctx.hostsState.notReady(),
      busy,
      foreign: this.ctx.leases.foreign(),
      usedPorts,
      basePort: this.ctx.cluster.communication.masterPort,
      gpus: this.ctx.hostsState.gpus(),
      ahead,
      rdzvTimeoutSeconds: this.ctx.rdzvTimeoutSeconds,
      defaultGraceSeconds: this.ctx.graceSeconds,
      lastHeard: this.ctx.liveness.lastHeardAll(),
      down: this.ctx.liveness.downAll(),
      // Made only when scheduling reads it: one plan over the whole queue, shared until it changes.
      get decision() {
        return scheduler.decision(name);
      },
      get growTo() {
        return scaleUp ? scheduler.growTo(name) : undefined;
      },
      ...(preemptedBy ? { preemptedBy } : {}),
    };
  }

  /**
   * When a host of this job's run did not answer this pass, the moment its silence reaches the
   * job's nodeLostSeconds (ms from now): reconcile then decides the loss on time, instead of at
   * the next 1 s liveness tick.
   */
  private nodeLostDue(spec: SpecState, unreachable: Map<string, string>): number | undefined {
    if (spec.kind !== 'valid' || !unreachable.size) return undefined;
    const limit = spec.job.spec.failurePolicy.nodeLostSeconds * 1000;
    let due: number | undefined;
    for (const hn of unreachable.keys()) {
      const ms = this.ctx.liveness.lastHeard(hn) + limit + 20 - this.ctx.now().getTime();
      if (ms > 0) due = Math.min(due ?? ms, ms);
    }
    return due;
  }
}

/** What placement plans over: the queue, the hosts' GPUs, what holds them, the owners' usage. */
export function schedulerInputs(ctx: LoopContext, usage: Pick<Usage, 'snapshot' | 'weekHours'>): SchedulerInputs {
  const now = ctx.now().getTime();
  const jobs = new Map<string, JobView>();
  for (const [n, m] of ctx.jobs.entries())
    jobs.set(n, {
      job: m.job,
      status: m.status,
      createdAt: m.createdAt,
      ...((m.owner ?? m.status?.owner) ? { owner: m.owner ?? m.status?.owner } : {}),
    });
  const health: SchedulerInputs['health'] = new Map();
  for (const [hn, n] of ctx.hostsState.health)
    health.set(hn, { ready: n.status === 'Ready', why: n.reasons[0], gpus: n.gpus });
  const unusable = new Map([...ctx.leases.foreign(), ...ctx.liveness.downAll()]);
  return {
    hosts: ctx.hosts,
    jobs,
    parts: ctx.hostsState.allParts(),
    mine: (p) => ctx.hostsState.mine(p),
    claims: ctx.claims.all(),
    health,
    unusable,
    usage: usage.snapshot(now),
    now,
    ...(ctx.quotaUsers ? { quota: { users: ctx.quotaUsers, weekHours: usage.weekHours(now) } } : {}),
  };
}
