/**
 * Carries out what the pure reconcile decided for one job: claims the hosts of a launch, writes the
 * intent before touching them, stops, archives, preempts and launches, counts a launch failure, and
 * persists the status and events (progress lines too); then kicks the jobs waiting for hosts.
 */
import type { SpecState } from '../api/job-state.ts';
import { type JobStatus, TERMINAL_PHASES } from '../api/status.ts';
import { balanceWake } from '../core/balance.ts';
import { recordLaunchFailure } from '../core/failures.ts';
import { mergeProgress } from '../core/live-progress.ts';
import { recordPreflightFailure } from '../core/preflight.ts';
import type { reconcile } from '../core/reconcile.ts';
import { RETENTION_WAKE_MS, retentionWakeDue } from '../core/retention.ts';
import type { Action, EventDraft, LaunchAction, StopAction } from '../core/types.ts';
import type { JobEvent } from '../store/store.ts';
import type { LoopContext } from './context.ts';
import type { Launcher, PreparedPart } from './launcher.ts';
import type { ProgressUpdate } from './progress-watcher.ts';
import { stopRun } from './stop.ts';

export class Executor {
  /** Per job: when a progress update last woke its reconcile for retention. */
  private readonly keepWoke = new Map<string, number>();

  constructor(
    private readonly ctx: LoopContext,
    private readonly launcher: Launcher,
  ) {}

  async execute(
    name: string,
    spec: SpecState,
    res: ReturnType<typeof reconcile>,
    prevStatus?: JobStatus,
  ): Promise<{ requeueAfterMs?: number }> {
    // Claim hosts and port before the first await, so a concurrent reconcile of another job
    // cannot pick the same hosts while this launch is in flight.
    for (const a of res.actions)
      if (a.type === 'launch') {
        const gpus = new Map<string, number[]>();
        for (const p of a.allParts)
          if (p.gpus)
            gpus.set(
              p.host,
              p.gpus.map((g) => g.index),
            );
        this.ctx.claims.claim(
          name,
          a.allParts.map((p) => p.host),
          a.port,
          gpus,
        );
        this.ctx.scheduler.invalidate();
      }
    if (spec.kind === 'valid' && res.status) await this.ctx.jobs.remember(name, spec.job, res.status);
    // Record intent before touching hosts: a crash mid-launch is then finished on restart. What
    // each launch sends is worked out while the status is being written (local work only), so
    // the launches go out the moment it is on disk.
    const writing =
      res.status && spec.kind === 'valid' && res.status.phase === 'Starting'
        ? this.persist(name, res.status, [])
        : undefined;
    const prepared = new Map<LaunchAction, PreparedPart[]>();
    if (spec.kind === 'valid')
      for (const a of res.actions) if (a.type === 'launch') prepared.set(a, this.launcher.prepare(spec.job, a));
    await writing;
    let status = res.status;
    let events: EventDraft[] = res.events;
    let requeue = res.requeueAfterMs;
    // A stop can take its whole grace period (ranks stuck in a collective leave only on SIGKILL):
    // the status and events that say why (NodeLost, a failed rank, a cancel) are written while
    // the stop runs, so `get jobs` shows the decision when it is made, not once the gang is gone.
    let written = 0;
    let early: Promise<void> | undefined;
    if (!writing && status && res.actions.some((a) => a.type === 'stop')) {
      early = this.persist(name, status, events);
      written = events.length;
    }
    for (const a of res.actions) {
      if (a.type === 'stop' && a.job && a.job !== name) this.preempt(name, a);
      else if (a.type === 'stop') await stopRun(this.ctx, name, a);
      else if (a.type === 'archive') await this.archive(name, a);
      else if (spec.kind === 'valid' && status) {
        const failed = await this.launcher.launch(
          spec.job,
          a,
          prepared.get(a) ?? this.launcher.prepare(spec.job, a),
          (e) => {
            events = [...events, e];
          },
        );
        if (!failed) {
          requeue = Math.min(requeue ?? 2000, 2000);
          this.ctx.jobs.preemptedBy.delete(name);
          continue;
        }
        // The launch failed: its host claims go now (other jobs may use the hosts during the
        // backoff), the parts that did start are stopped, and the failure is counted.
        this.ctx.claims.release(name);
        this.ctx.scheduler.invalidate();
        if (failed.portBusy) {
          this.ctx.claims.portBusy(a.port);
          this.ctx.log.info('rendezvous port busy on its host; choosing another', {
            job: name,
            port: a.port,
            host: a.rdzvHost,
          });
          requeue = 0;
          status = { ...status, message: `port ${a.port} is busy on ${a.rdzvHost}: choosing another` };
          continue;
        }
        // A failed preflight (spec.preflight) is counted like a failed launch, under its own reason.
        const lf = (failed.preflight ? recordPreflightFailure : recordLaunchFailure)(
          status,
          spec.job,
          { attempt: a.attempt, host: failed.host, message: failed.message },
          this.ctx.now(),
        );
        status = lf.status;
        events = [...events, lf.event];
        requeue = lf.requeueAfterMs;
      }
    }
    await early;
    await this.persist(name, status, events.slice(written));
    if (spec.kind === 'valid' && status) await this.ctx.jobs.remember(name, spec.job, status);
    if (status === null) {
      this.ctx.jobs.delete(name);
      this.ctx.jobs.preemptedBy.delete(name);
      this.ctx.scheduler.invalidate();
    }
    // Hosts may have come free: a run ended (on its own too: a failed gang whose members all
    // exited), was stopped, or the job is gone.
    const holding = (s: JobStatus | null | undefined) =>
      !!s && s.nodes.some((n) => n.state === 'Running' || n.state === 'Pending');
    if (
      !status ||
      TERMINAL_PHASES.includes(status.phase) ||
      res.actions.some((a) => a.type === 'stop') ||
      (holding(prevStatus) && !holding(status))
    )
      this.ctx.kickQueued(name);
    return { requeueAfterMs: requeue };
  }

  /**
   * Stop another job's run so `by` can have its GPUs. Not awaited: the victim's grace period
   * (its checkpoint on SIGTERM) must not hold up the preemptor's reconcile, which looks again
   * in a second. The victim is told why (an event, its Preempted condition) and resumes from its
   * newest checkpoint when placement gives it GPUs again.
   */
  private preempt(by: string, a: StopAction): void {
    const victim = a.job!;
    if (this.ctx.jobs.preempting.has(a.runId)) return;
    this.ctx.jobs.preempting.add(a.runId);
    const at = this.ctx.now().toISOString();
    this.ctx.jobs.preemptedBy.set(victim, { job: by, at });
    void this.ctx.store
      .appendEvents([
        {
          time: at,
          job: victim,
          type: 'Warning',
          reason: 'Preempted',
          message:
            `preempted by ${by} (priority); stopping ${a.runId} on ${a.hosts.join(', ')} ` +
            `with a ${a.graceSeconds} s grace`,
        },
      ])
      .catch(() => undefined);
    this.ctx.log.info('preempting', { job: victim, by, run: a.runId, hosts: a.hosts });
    void stopRun(this.ctx, victim, a).finally(() => {
      this.ctx.jobs.preempting.delete(a.runId);
      this.ctx.scheduler.invalidate();
      this.ctx.enqueue(victim);
      this.ctx.enqueue(by);
    });
  }

  /** A running job's progress moved: into its status as last written (in the job's lane, see lanes.ts). */
  async writeProgress(u: ProgressUpdate): Promise<void> {
    const m = this.ctx.jobs.get(u.job);
    const next = m?.status && mergeProgress(m.status, u);
    if (!m || !next) return;
    try {
      await this.persist(u.job, next, []);
      m.status = next;
      // spec.batch.balance: speed: a line saying a re-split is worth it is looked at now, not in 30 s.
      // spec.checkpoint.keep: looked at every RETENTION_WAKE_MS while it trains, to prune as it goes.
      const now = this.ctx.now().getTime();
      const keep = retentionWakeDue(!!m.job.spec.checkpoint?.keep, this.keepWoke.get(u.job), now, RETENTION_WAKE_MS);
      if (keep) {
        if (this.keepWoke.size >= 4096) this.keepWoke.clear(); // bounded: at worst one early wake each
        this.keepWoke.set(u.job, now);
      }
      if (balanceWake(next, now) || keep) this.ctx.enqueue(u.job);
    } catch (e) {
      this.ctx.log.warn('cannot write progress', { job: u.job, error: (e as Error).message });
    }
  }

  async persist(name: string, status: JobStatus | null, events: EventDraft[]): Promise<void> {
    if (status && this.ctx.observer?.decorate) status = this.ctx.observer.decorate(name, status);
    if (status === null) await this.ctx.store.deleteStatus(name);
    else await this.ctx.store.writeStatus(name, status);
    const time = this.ctx.now().toISOString();
    const evs: JobEvent[] = events.map((e) => ({
      time,
      job: name,
      type: e.type ?? 'Normal',
      reason: e.reason,
      message: e.message,
      ...(e.actor ? { actor: e.actor } : {}),
    }));
    await this.ctx.store.appendEvents(evs);
    this.ctx.observer?.persisted?.(name, status, evs);
    for (const e of evs)
      this.ctx.log.info(e.message, { job: name, reason: e.reason, ...(e.actor ? { actor: e.actor } : {}) });
  }

  private async archive(job: string, a: Extract<Action, { type: 'archive' }>): Promise<void> {
    const now = this.ctx.now().getTime();
    await Promise.all(
      a.parts.map(async ({ host, dir }) => {
        const h = this.ctx.host(host);
        if (!h) return;
        await this.ctx.runtime.archive(h, dir, now);
        this.ctx.hostsState.drop(host, dir);
      }),
    );
    this.ctx.log.info('run directories moved to runs/.deleted', { job, dirs: [...new Set(a.parts.map((p) => p.dir))] });
  }
}
