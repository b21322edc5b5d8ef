/**
 * The controller: list, then watch + periodic resync; a per-job work queue runs the pure
 * reconcile (core/) and carries out its actions through the host runtime. Everything it talks to
 * is injected (host runtime, store, clock, watcher, lock) with production defaults, so the whole
 * loop runs in unit tests against an in-memory host. Explicit start()/stop(); stop never touches
 * running training (runs are detached on the hosts and re-adopted on the next start).
 */
import { realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { allHosts, type Cluster } from '../../config/cluster.ts';
import type { SpecState } from '../api/job-state.ts';
import type { RunPart } from '../api/run.ts';
import type { JobSource } from '../api/source.ts';
import { scriptsDir } from '../base/install.ts';
import { jsonLogger, type Logger } from '../base/log.ts';
import { progressTargets } from '../core/live-progress.ts';
import { reconcile } from '../core/reconcile.ts';
import { ownerOf, queueOrder } from '../core/schedule.ts';
import { shortcut } from '../core/settled.ts';
import { refreshSource } from '../core/source.ts';
import type { ClusterView } from '../core/types.ts';
import { HostError } from '../hosts/errors.ts';
import type { HostRuntimeApi } from '../hosts/runtime-api.ts';
import type { ControllerObserver } from '../observability/observer.ts';
import { type DirLock, lockJobsDir } from '../store/lock.ts';
import { JobStore } from '../store/store.ts';
import { Claims } from './claims.ts';
import type { LoopContext, LoopStats } from './context.ts';
import { Executor } from './executor.ts';
import { HostState } from './host-state.ts';
import { JobBook } from './jobs.ts';
import { JobLanes } from './lanes.ts';
import { Launcher } from './launcher.ts';
import { Leases } from './leases.ts';
import { Liveness } from './liveness.ts';
import { ProgressWatcher } from './progress-watcher.ts';
import { type QueueOptions, WorkQueue } from './queue.ts';
import { HostScan, silenceLimitMs } from './scan.ts';
import { type JobView, Scheduler, type SchedulerInputs } from './scheduler.ts';
import { ScriptsDeploy } from './scripts-deploy.ts';
import { Usage } from './usage.ts';
import { Waiters } from './waiters.ts';
import { fsWatch, type Watcher, type WatchFn } from './watch.ts';

export interface ControllerOptions {
  cluster: Cluster;
  jobsDir: string;
  runtime: HostRuntimeApi;
  log?: Logger;
  now?: () => Date;
  resyncMs?: number;
  healthEveryMs?: number;
  graceSeconds?: number;
  /** Local scripts/ deployed to each host's scripts path before a `script:` job starts. */
  scriptsDir?: string;
  /** Watch the jobs dir (default: fs.watch, see watch.ts). */
  watch?: WatchFn;
  /** GitOps: a source of job files (controller/gitops/), started once the hosts are listed. */
  source?: JobSource;
  /** Take the jobs dir's controller lock (default: flock via lockJobsDir). */
  lock?: (dir: string) => Promise<DirLock>;
  /** Who this controller is, in host leases and run metadata (default: machine:jobs-dir). */
  owner?: string;
  leaseTtlSeconds?: number;
  /** Periodic timers (default: setInterval); tests drive them by hand. */
  every?: (ms: number, fn: () => void) => () => void;
  /** The work queue's delayed requeues (default: setTimeout). */
  queueTimers?: Pick<QueueOptions, 'setTimeout' | 'clearTimeout'>;
  /** Told what the controller reads, writes and probes (the dashboard, /metrics, notifications). */
  observer?: ControllerObserver;
  /** How often running jobs' metrics lines are read into their status (default 1000 ms; 0: never). */
  progressEveryMs?: number;
}

/** Lease TTL: how long a host stays reserved after its controller died without releasing it. */
const LEASE_TTL_SECONDS = 60;

export class Controller {
  readonly store: JobStore;
  readonly owner: string;
  /** Counters for tests and benchmarks. */
  readonly stats: LoopStats = { reconciles: 0, launches: 0, observes: 0 };
  /** Reads running jobs' newest metrics lines between reconciles (one exec per host per tick). */
  readonly progress: ProgressWatcher;
  /** What the loop's parts share. */
  private readonly ctx: LoopContext;
  private readonly queue: WorkQueue;
  /** One status writer per job at a time: reconciles and progress writes. */
  private readonly lanes = new JobLanes();
  private readonly executor: Executor;
  private readonly scan: HostScan;
  /** Fair share: decayed GPU-seconds per owner, accounted from the live runs. */
  private readonly usage: Usage;
  private usageAt?: number;
  private watcher?: Watcher;
  private lock?: DirLock;
  private stopTimers: (() => void)[] = [];
  private started = false;
  private livenessBusy = false;

  constructor(private readonly o: ControllerOptions) {
    const store = new JobStore(resolve(o.jobsDir));
    const runtime = o.runtime;
    const log = o.log ?? jsonLogger();
    const now = o.now ?? (() => new Date());
    const owner = o.owner ?? defaultOwner(store.dir);
    this.store = store;
    this.owner = owner;
    const scheduler = new Scheduler(() => this.schedulerInputs());
    this.usage = Usage.inDir(store.dir, o.cluster.scheduling.fairShareHalfLifeHours);
    const queue = new WorkQueue((name) => this.timedReconcile(name), {
      ...o.queueTimers,
      onError: (key, err, retry) =>
        log.warn('reconcile failed; will retry', { job: key, error: (err as Error).message, retryInMs: retry }),
    });
    this.queue = queue;
    const jobs = new JobBook(store, now, () => scheduler.invalidate());
    const warned = new Set<string>();
    this.ctx = {
      cluster: o.cluster,
      get hosts() {
        return allHosts(o.cluster);
      },
      host: (name) => allHosts(o.cluster).find((h) => h.name === name),
      owner,
      store,
      runtime,
      log,
      now,
      observer: o.observer,
      hostsState: new HostState(owner),
      claims: new Claims(() => now().getTime()),
      waiters: new Waiters(runtime, (job) => queue.add(job), log),
      leases: new Leases(runtime, o.cluster.hosts, owner, o.leaseTtlSeconds ?? LEASE_TTL_SECONDS, log),
      liveness: new Liveness(runtime, o.cluster.hosts, () => now().getTime(), log),
      scheduler,
      jobs,
      stats: this.stats,
      enqueue: (name) => queue.add(name),
      kickQueued: () => {
        for (const name of jobs.queuedToKick()) queue.add(name);
      },
      warnOnce: (key, msg, fields) => {
        if (warned.has(key)) return;
        warned.add(key);
        log.warn(msg, fields);
      },
      graceSeconds: o.graceSeconds ?? 30,
      rdzvTimeoutSeconds: Math.min(o.cluster.communication.timeoutSeconds, 600),
    };
    const ctx = this.ctx;
    const scan = new HostScan(ctx);
    this.scan = scan;
    const scripts = new ScriptsDeploy(runtime, log, () => o.scriptsDir ?? o.cluster.local.scripts ?? scriptsDir());
    this.executor = new Executor(ctx, new Launcher(ctx, scripts));
    this.progress = new ProgressWatcher({
      runtime,
      host: (n) => ctx.host(n),
      targets: () =>
        progressTargets(
          ctx.hostsState.allParts().filter((p) => ctx.hostsState.mine(p)),
          (j) => ctx.jobs.get(j)?.status,
          (h) => !!ctx.host(h)?.slurm,
        ),
      unreachable: (h) => ctx.liveness.isDown(h.name) || scan.silentMs(h) > silenceLimitMs(h),
      failed: (h, e) => {
        if (e instanceof HostError && ['unreachable', 'refused', 'timeout', 'channel'].includes(e.kind))
          ctx.liveness.failed(h.name, e.message);
      },
      onProgress: (u) => this.lanes.latest(u.job, u, (x) => this.executor.writeProgress(x)),
      log,
      now: () => now().getTime(),
    });
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.ctx.store.ensure();
    this.lock = await (this.o.lock ?? lockJobsDir)(this.ctx.store.dir);
    await this.usage.load();
    // List first: leases, health and every run on every host, in parallel, so running jobs are re-adopted.
    await this.ctx.leases.renewAll();
    await Promise.all([this.scan.refreshHealth(), ...this.ctx.hosts.map((h) => this.scan.scanHost(h))]);
    // A source of job files (git) brings jobs/ to its revision before the first reconciles.
    await this.o.source?.start((jobs) => {
      for (const n of jobs) this.queue.add(n);
    });
    const names = await this.allNames();
    for (const n of this.ctx.hostsState.jobNames()) names.add(n);
    for (const n of names) this.queue.add(n);
    // Then watch. Events only enqueue a name; reconcile reads everything itself.
    this.watcher = await (this.o.watch ?? fsWatch)(this.ctx.store.dir, (name) => this.queue.add(name));
    const every =
      this.o.every ??
      ((ms: number, fn: () => void) => {
        const t = setInterval(fn, ms);
        t.unref();
        return () => clearInterval(t);
      });
    const ttl = this.ctx.leases.ttlSeconds;
    const progressMs = this.o.progressEveryMs ?? 1000;
    this.stopTimers = [
      ...(progressMs > 0 ? [every(progressMs, () => void this.progress.tick())] : []),
      every(this.o.resyncMs ?? 60_000, () => void this.resync()),
      every(this.o.healthEveryMs ?? 30_000, () => void this.scan.refreshHealth().then(() => this.ctx.kickQueued())),
      every((ttl * 1000) / 3, () => void this.ctx.leases.renewAll().then(() => this.ctx.scheduler.invalidate())),
      every(1000, () => void this.watchLiveness()),
    ];
    this.ctx.log.info('controller started', {
      jobsDir: this.ctx.store.dir,
      owner: this.ctx.owner,
      hosts: this.ctx.hosts.map((h) => h.name),
      jobs: names.size,
    });
  }

  async stop(): Promise<void> {
    await this.o.source?.stop();
    this.queue.stop();
    for (const s of this.stopTimers) s();
    await this.progress.stop();
    this.ctx.waiters.stopAll();
    await this.watcher?.close();
    await this.queue.idle();
    await this.lanes.idle();
    this.accountUsage();
    await this.usage.save().catch(() => undefined);
    await this.ctx.leases.releaseAll();
    await this.lock?.release();
    this.ctx.log.info('controller stopped (runs on the hosts keep going)');
  }

  /** Wait until nothing is being reconciled or written (tests). */
  async idle(): Promise<void> {
    await this.queue.idle();
    await this.lanes.idle();
  }

  /** Jobs waiting to be reconciled, and being reconciled now. */
  queueDepth(): { waiting: number; running: number } {
    return this.queue.depth();
  }

  /** This controller's run parts of `job` on every host, as last observed (finished ones too). */
  partsOf(job: string): RunPart[] {
    return this.ctx.hostsState.partsOf(job);
  }

  private async timedReconcile(name: string): Promise<{ requeueAfterMs?: number }> {
    const t0 = performance.now();
    try {
      return await this.lanes.run(name, () => this.reconcileOne(name));
    } finally {
      this.ctx.observer?.reconciled?.(name, performance.now() - t0);
    }
  }

  enqueue(name: string): void {
    this.queue.add(name);
  }

  private async allNames(): Promise<Set<string>> {
    const { specs, statuses, controls, invalidFiles } = await this.ctx.store.listNames();
    for (const f of invalidFiles)
      this.ctx.warnOnce(
        f,
        'ignoring a file whose name is not a job name (a DNS-1123 label: lowercase letters, digits, "-")',
        { file: f },
      );
    return new Set([...specs, ...statuses, ...controls]);
  }

  private async resync(): Promise<void> {
    // A full scan now and then also sees runs of other controllers and runs started by hand.
    await Promise.all(this.ctx.hosts.map((h) => this.scan.scanHost(h)));
    this.accountUsage();
    await this.usage.save().catch((e) => this.ctx.log.warn('cannot write usage.json', { error: (e as Error).message }));
    for (const n of await this.allNames()) this.queue.add(n);
  }

  /**
   * Fair share: each live run part of this controller adds its GPUs times the time since the last
   * accounting to its job's owner (a CPU part counts as one). Called at every resync and on stop.
   */
  private accountUsage(): void {
    const now = this.ctx.now().getTime();
    const since = this.usageAt;
    this.usageAt = now;
    if (since === undefined || now <= since) return;
    for (const p of this.ctx.hostsState.allParts()) {
      if (!p.alive || !this.ctx.hostsState.mine(p)) continue;
      const m = this.ctx.jobs.get(p.meta.job);
      if (!m) continue;
      const owner = m.status?.owner ?? ownerOf(m.job);
      const started = Math.max(since, Date.parse(p.meta.createdAt) || since);
      this.usage.add(owner, (Math.max(1, p.meta.gpus?.length ?? 1) * (now - started)) / 1000, now);
    }
    this.ctx.scheduler.invalidate();
  }

  /**
   * Once a second (no host I/O unless a host is down): jobs on hosts that went quiet are woken
   * so reconcile can decide on a lost node in time; down hosts are retried with backoff, and when
   * one answers again its jobs and the waiting ones look again (leftovers there are stopped).
   */
  private async watchLiveness(): Promise<void> {
    if (this.livenessBusy || !this.ctx.liveness.busy(this.ctx.hostsState.anyLive())) return;
    this.livenessBusy = true;
    try {
      const { wake, back } = await this.ctx.liveness.tick((h) => this.ctx.hostsState.jobsOn(h, true));
      if (wake.size || back.length) this.ctx.scheduler.invalidate();
      for (const j of wake) this.queue.add(j);
      for (const hn of back) {
        const h = this.ctx.host(hn);
        if (h) await Promise.all([this.scan.scanHost(h), this.scan.refreshHealth([h])]);
        for (const j of this.ctx.hostsState.jobsOn(hn)) this.queue.add(j);
      }
      if (back.length) {
        this.ctx.kickQueued();
        // A lease that lapsed while the host was away (a renewal failed) is taken back now, not
        // at the next renewal (up to 20 s later), so the host is schedulable once it answers.
        if (back.some((hn) => !this.ctx.leases.held(hn)))
          void this.ctx.leases.renewAll().then(() => this.ctx.kickQueued());
      }
    } finally {
      this.livenessBusy = false;
    }
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
      basePort: this.o.cluster.communication.masterPort,
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

  /** What placement plans over: the queue, the hosts' GPUs, what holds them, the owners' usage. */
  private schedulerInputs(): SchedulerInputs {
    const now = this.ctx.now().getTime();
    const jobs = new Map<string, JobView>();
    for (const [n, m] of this.ctx.jobs.entries()) jobs.set(n, { job: m.job, status: m.status, createdAt: m.createdAt });
    const health: SchedulerInputs['health'] = new Map();
    for (const [hn, n] of this.ctx.hostsState.health)
      health.set(hn, { ready: n.status === 'Ready', why: n.reasons[0], gpus: n.gpus });
    const unusable = new Map([...this.ctx.leases.foreign(), ...this.ctx.liveness.downAll()]);
    return {
      hosts: this.ctx.hosts,
      jobs,
      parts: this.ctx.hostsState.allParts(),
      mine: (p) => this.ctx.hostsState.mine(p),
      claims: this.ctx.claims.all(),
      health,
      unusable,
      usage: this.usage.snapshot(now),
      now,
    };
  }

  private async reconcileOne(name: string): Promise<{ requeueAfterMs?: number }> {
    this.ctx.stats.reconciles++;
    const [spec, status, control] = await Promise.all([
      this.ctx.store.readSpec(name),
      this.ctx.store.readStatus(name),
      this.ctx.store.readControl(name),
    ]);
    this.ctx.observer?.read?.(name, spec, status);
    const source = await this.o.source?.infoFor(name);
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
      });
      await this.executor.persist(name, res.status, res.events);
      return {};
    }
    const { unreachable, checkpoints, attemptFloor } = await this.scan.observeJob(name, spec, status);
    const parts = this.ctx.hostsState.partsOf(name, unreachable);
    this.ctx.claims.release(name);
    if (spec.kind === 'valid') await this.ctx.jobs.remember(name, spec.job, status);
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
    });
    const out = await this.executor.execute(name, spec, res, status);
    const due = this.nodeLostDue(spec, unreachable);
    if (due !== undefined && out.requeueAfterMs !== undefined) out.requeueAfterMs = Math.min(out.requeueAfterMs, due);
    return out;
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

/** `machine:/real/path/of/jobs`: the same controller restarted on the same jobs dir is the same owner. */
function defaultOwner(jobsDir: string): string {
  let dir = jobsDir;
  try {
    dir = realpathSync(jobsDir);
  } catch {
    /* not there yet */
  }
  // Printable, one line: it is written into lease files and run metadata on the hosts.
  return `${hostname()}:${dir}`.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}
