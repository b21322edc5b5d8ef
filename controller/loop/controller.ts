/**
 * The loop: list, then watch + periodic resync, and the timers (health, leases, liveness, progress);
 * a per-job work queue runs one reconcile at a time per job. Everything it talks to is injected
 * (host runtime, store, clock, watcher, lock) with production defaults, so the whole loop runs in
 * unit tests against an in-memory host. Explicit start()/stop(); stop never touches running
 * training (runs are detached on the hosts and re-adopted on the next start). Its parts, in the
 * order a reconcile uses them: context.ts (what they share), jobs.ts, scan.ts (facts from the
 * hosts), reconciler.ts (one job's reconcile through core/), executor.ts (its actions),
 * launcher.ts, stop.ts, scripts-deploy.ts.
 */
import { realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { resolve } from 'node:path';
import { allHosts, type Cluster } from '../../config/cluster.ts';
import { hasQuotas, unsignedOwnerOf, usersSettings } from '../../config/users.ts';
import type { JobSource } from '../api/job-source.ts';
import type { RunPart } from '../api/run.ts';
import type { Backend } from '../backends/api.ts';
import { HostError } from '../backends/errors.ts';
import { scriptsDir } from '../base/install.ts';
import { jsonLogger, type Logger } from '../base/log.ts';
import { progressTargets } from '../core/live-progress.ts';
import { accessOf } from '../core/permissions.ts';
import { ownerOf } from '../core/schedule.ts';
import type { ControllerObserver } from '../observability/observer.ts';
import type { Accounts } from '../store/accounts.ts';
import { type DirLock, lockJobsDir } from '../store/lock.ts';
import { sharedJobsDirAdvice } from '../store/private.ts';
import { JobStore } from '../store/store.ts';
import { Claims } from './claims.ts';
import type { LoopContext, LoopStats, PreflightFn } from './context.ts';
import { Executor } from './executor.ts';
import { HostState } from './host-state.ts';
import { JobBook } from './jobs.ts';
import { JobLanes } from './lanes.ts';
import { Launcher } from './launcher.ts';
import { Leases } from './leases.ts';
import { Liveness } from './liveness.ts';
import { ProgressWatcher } from './progress-watcher.ts';
import { type QueueOptions, WorkQueue } from './queue.ts';
import { Reconciler, schedulerInputs } from './reconciler.ts';
import { HostScan, silenceLimitMs } from './scan.ts';
import { Scheduler } from './scheduler.ts';
import { ScriptsDeploy } from './scripts-deploy.ts';
import { SweepLoop } from './sweeps.ts';
import { Usage } from './usage.ts';
import { Waiters } from './waiters.ts';
import { fsWatch, type Watcher, type WatchFn } from './watch.ts';

export interface ControllerOptions {
  cluster: Cluster;
  jobsDir: string;
  runtime: Backend;
  log?: Logger;
  now?: () => Date;
  resyncMs?: number;
  healthEveryMs?: number;
  graceSeconds?: number;
  /**
   * Names the account that wrote each job and control file: with it, owners are authenticated and
   * only a job's owner or an admin may change it (core/authorize.ts). Without it (unit tests of
   * other behaviour), the owner is the annotation's claim, as before accounts.
   */
  accounts?: Accounts;
  /** The account this controller runs as: an admin of its jobs dir (default: the process's user). */
  user?: string;
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
  /** How often the sweeps still going are looked at (default 1000 ms). */
  sweepEveryMs?: number;
  /** How often running jobs' metrics lines are read into their status (default 1000 ms; 0: never). */
  progressEveryMs?: number;
  /** spec.preflight's network check on a gang's hosts (the CLI passes `ugro doctor`'s round over SSH). */
  preflight?: PreflightFn;
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
  /** The sweeps (kind: Sweep): their trials are jobs this part writes (loop/sweeps.ts). */
  readonly sweeps: SweepLoop;
  /** What the loop's parts share. */
  private readonly ctx: LoopContext;
  private readonly queue: WorkQueue;
  /** One status writer per job at a time: reconciles and progress writes. */
  private readonly lanes = new JobLanes();
  private readonly reconciler: Reconciler;
  private readonly scan: HostScan;
  private readonly executor: Executor;
  /** Fair share: decayed GPU-seconds per owner, accounted from the live runs. */
  private readonly usage: Usage;
  private usageAt?: number;
  private watcher?: Watcher;
  private lock?: DirLock;
  private stopTimers: (() => void)[] = [];
  private started = false;
  private livenessBusy = false;

  constructor(private readonly o: ControllerOptions) {
    const store = new JobStore(resolve(o.jobsDir), undefined, o.accounts);
    const user = o.user ?? userInfo().username;
    const users = usersSettings(o.cluster.raw.users);
    const runtime = o.runtime;
    const log = o.log ?? jsonLogger();
    const now = o.now ?? (() => new Date());
    const owner = o.owner ?? defaultOwner(store.dir);
    this.store = store;
    this.owner = owner;
    const scheduler = new Scheduler(() => schedulerInputs(this.ctx, this.usage));
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
      // A run that ended or was stopped frees its GPUs: the cached plan must not still count them
      // (it stayed until the next lease renewal, up to 20 s: the sweep bench's trials waited 5-15 s).
      hostsState: new HostState(owner, () => scheduler.invalidate()),
      claims: new Claims(() => now().getTime()),
      waiters: new Waiters(runtime, (job) => queue.add(job), log),
      leases: new Leases(runtime, o.cluster.hosts, owner, o.leaseTtlSeconds ?? LEASE_TTL_SECONDS, log),
      liveness: new Liveness(runtime, o.cluster.hosts, () => now().getTime(), log),
      scheduler,
      jobs,
      stats: this.stats,
      enqueue: (name) => queue.add(name),
      kickQueued: (from) => {
        for (const name of jobs.queuedToKick(from)) queue.add(name);
      },
      warnOnce: (key, msg, fields) => {
        if (warned.has(key)) return;
        warned.add(key);
        log.warn(msg, fields);
      },
      graceSeconds: o.graceSeconds ?? 30,
      ...(o.accounts ? { auth: { access: accessOf(users, user), unsignedOwner: unsignedOwnerOf(users, user) } } : {}),
      ...(users && hasQuotas(users) ? { quotaUsers: users } : {}),
      rdzvTimeoutSeconds: Math.min(o.cluster.communication.timeoutSeconds, 600),
      ...(o.preflight ? { preflight: o.preflight } : {}),
    };
    const ctx = this.ctx;
    // The parts, each on the shared context: the reconciler gathers facts with the scan and hands
    // what core/ decided to the executor, which launches through the launcher.
    const scan = new HostScan(ctx);
    const scripts = new ScriptsDeploy(runtime, log, () => o.scriptsDir ?? o.cluster.local.scripts ?? scriptsDir());
    const executor = new Executor(ctx, new Launcher(ctx, scripts));
    this.scan = scan;
    this.executor = executor;
    this.reconciler = new Reconciler(ctx, scan, executor, o.source);
    this.sweeps = new SweepLoop(ctx, o.source);
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
    await this.adviseSharing();
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
    this.watcher = await (this.o.watch ?? fsWatch)(this.ctx.store.dir, (name) => {
      this.queue.add(name);
      void this.sweeps.touched(name);
    });
    await this.sweeps.discover();
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
      // Before liveness: tests that keep one callback per period then still drive liveness at 1 s.
      every(this.o.sweepEveryMs ?? 1000, () => void this.sweeps.kick()),
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
    await this.sweeps.idle();
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
    await this.sweeps.idle();
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
      return await this.lanes.run(name, () => this.reconciler.reconcile(name));
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
    await this.sweeps.discover();
  }

  /** A lab shared by several accounts (users: in the cluster file) needs a jobs dir they can write. */
  private async adviseSharing(): Promise<void> {
    const users = usersSettings(this.o.cluster.raw.users);
    if (!users) return;
    const named = [...new Set([...users.admins, ...Object.keys(users.quotas)])];
    const st = await stat(this.ctx.store.dir).catch(() => undefined);
    const advice = st && sharedJobsDirAdvice(this.ctx.store.dir, st.mode, named);
    if (advice) this.ctx.log.warn(advice, { jobsDir: this.ctx.store.dir });
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
