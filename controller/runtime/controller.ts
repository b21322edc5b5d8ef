/**
 * The controller: list, then watch (chokidar) + periodic resync; a per-job work queue runs the
 * pure reconcile and carries out its actions on the hosts. Explicit start()/stop(); stop never
 * touches running training (runs are detached on the hosts and re-adopted on the next start).
 */
import { existsSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import type { Cluster, Host } from '../../config/cluster.ts';
import { readTree } from '../../config/hash.ts';
import { type JobStatus, TERMINAL_PHASES } from '../api/status.ts';
import { isJobFileName, jobNameFromFile, priorityValue, type TrainingJob } from '../api/trainingjob.ts';
import { launchEnv, torchrunArgv } from '../core/launch.ts';
import { type Action, type ClusterView, queueOrder, reconcile } from '../core/reconcile.ts';
import { type NodeHealth, probeCluster } from '../hosts/health.ts';
import { HostRuntime, type RunMeta, type RunPart } from '../hosts/runs.ts';
import type { SshPool } from '../hosts/ssh.ts';
import { type JobEvent, JobStore } from '../store/store.ts';
import { WorkQueue } from './queue.ts';

export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Structured logs: a fixed message plus fields, one JSON object per line. */
export function jsonLogger(write: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Logger {
  const log = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
  return { info: log('info'), warn: log('warn'), error: log('error') };
}

export interface ControllerOptions {
  cluster: Cluster;
  jobsDir: string;
  pool: SshPool;
  log?: Logger;
  now?: () => Date;
  resyncMs?: number;
  healthEveryMs?: number;
  graceSeconds?: number;
  /** Local scripts/ deployed to each host's scripts path before a `script:` job starts. */
  scriptsDir?: string;
}

interface JobMemo {
  priority: TrainingJob['spec']['priority'];
  createdAt: string;
  phase?: string;
  reason?: string;
}

export class Controller {
  readonly store: JobStore;
  private readonly runtime: HostRuntime;
  private readonly queue: WorkQueue;
  private readonly log: Logger;
  private readonly now: () => Date;
  private watcher?: FSWatcher;
  private unlock?: () => void;
  private timers: NodeJS.Timeout[] = [];
  /** What each host showed last: host -> its run parts (all jobs). */
  private readonly hostRuns = new Map<string, RunPart[]>();
  private readonly health = new Map<string, NodeHealth>();
  private readonly jobs = new Map<string, JobMemo>();
  private readonly waiters = new Map<string, AbortController>();
  private readonly scriptsSynced = new Map<string, string>();
  /** Hosts/ports claimed by launches not yet observed. */
  private readonly claims = new Map<string, { hosts: string[]; port: number }>();
  private started = false;
  /** Counters for tests and benchmarks. */
  readonly stats = { reconciles: 0, launches: 0, observes: 0 };

  constructor(private readonly o: ControllerOptions) {
    this.store = new JobStore(resolve(o.jobsDir));
    this.runtime = new HostRuntime(o.pool);
    this.log = o.log ?? jsonLogger();
    this.now = o.now ?? (() => new Date());
    this.queue = new WorkQueue((name) => this.reconcileOne(name), {
      onError: (key, err, retry) =>
        this.log.warn('reconcile failed; will retry', { job: key, error: (err as Error).message, retryInMs: retry }),
    });
  }

  private get hosts(): Host[] {
    return this.o.cluster.hosts;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.store.ensure();
    this.unlock = this.store.lockController();
    // List first: health and every run on every host, in parallel, so running jobs are re-adopted.
    await Promise.all([this.refreshHealth(), ...this.hosts.map((h) => this.scanHost(h))]);
    const { specs, statuses } = this.store.listNames();
    const names = new Set([...specs, ...statuses]);
    for (const parts of this.hostRuns.values()) for (const p of parts) names.add(p.meta.job);
    for (const n of names) this.queue.add(n);
    // Then watch. Events only enqueue a name; reconcile reads everything itself.
    this.watcher = chokidar.watch(this.store.dir, {
      depth: 0,
      ignoreInitial: true,
      // chokidar's default `atomic` holds an unlink back 100 ms so that an editor's
      // rename-then-write save is not seen as a delete (which would stop the run): keep it.
      ignored: (p: string) => {
        const base = p.slice(p.lastIndexOf('/') + 1);
        return (
          p !== this.store.dir && (base.startsWith('.') || base.includes('.tmp-') || base.endsWith('.status.yaml'))
        );
      },
    });
    const onFile = (p: string) => {
      const base = p.slice(p.lastIndexOf('/') + 1);
      if (isJobFileName(base)) this.queue.add(jobNameFromFile(base));
      else if (base.endsWith('.control.yaml')) this.queue.add(base.slice(0, -'.control.yaml'.length));
    };
    this.watcher.on('add', onFile).on('change', onFile).on('unlink', onFile);
    await new Promise<void>((r) => this.watcher!.once('ready', () => r()));
    const every = (ms: number, fn: () => void) => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.o.resyncMs ?? 60_000, () => this.resync());
    every(this.o.healthEveryMs ?? 30_000, () => void this.refreshHealth().then(() => this.kickQueued()));
    this.log.info('controller started', {
      jobsDir: this.store.dir,
      hosts: this.hosts.map((h) => h.name),
      jobs: names.size,
    });
  }

  async stop(): Promise<void> {
    this.queue.stop();
    for (const t of this.timers) clearInterval(t);
    for (const w of this.waiters.values()) w.abort();
    this.waiters.clear();
    await this.watcher?.close();
    await this.queue.idle();
    this.unlock?.();
    this.log.info('controller stopped (runs on the hosts keep going)');
  }

  /** Wait until nothing is being reconciled (tests). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  enqueue(name: string): void {
    this.queue.add(name);
  }

  private resync(): void {
    const { specs, statuses } = this.store.listNames();
    for (const n of new Set([...specs, ...statuses])) this.queue.add(n);
  }

  private kickQueued(): void {
    for (const [name, m] of this.jobs) if (m.phase === 'Queued' && m.reason !== 'BackoffRestart') this.queue.add(name);
  }

  private async refreshHealth(): Promise<void> {
    const nodes = await probeCluster(this.o.cluster, { connection: (h) => this.o.pool.host(h) });
    for (const n of nodes) {
      const prev = this.health.get(n.name);
      if (prev?.status !== n.status)
        this.log.info('node status', { host: n.name, status: n.status, reason: n.reasons[0] });
      this.health.set(n.name, n);
    }
  }

  private async scanHost(h: Host): Promise<void> {
    try {
      const parts = await this.runtime.observe(h);
      this.stats.observes++;
      this.hostRuns.set(h.name, parts);
      for (const p of parts) if (p.alive) this.ensureWaiter(h, p);
    } catch (e) {
      this.log.warn('cannot list runs on host', { host: h.name, error: (e as Error).message });
    }
  }

  private host(name: string): Host | undefined {
    return this.hosts.find((h) => h.name === name);
  }

  /** One waiter per live run part: wakes the job's reconcile the moment the part exits. */
  private ensureWaiter(h: Host, p: RunPart): void {
    const key = `${h.name}/${p.dir}`;
    if (this.waiters.has(key)) return;
    const ac = new AbortController();
    this.waiters.set(key, ac);
    this.runtime
      .wait(h, p.dir, ac.signal)
      .catch(() => undefined)
      .finally(() => {
        if (this.waiters.get(key) === ac) this.waiters.delete(key);
        if (!ac.signal.aborted) this.queue.add(p.meta.job);
      });
  }

  private view(name: string): ClusterView {
    const busy = new Map<string, string>();
    const usedPorts = new Set<number>();
    for (const [host, parts] of this.hostRuns) {
      for (const p of parts) {
        if (!p.alive) continue;
        if (p.meta.job !== name) busy.set(host, p.meta.job);
        usedPorts.add(p.meta.masterPort);
      }
    }
    for (const [job, c] of this.claims) {
      usedPorts.add(c.port);
      if (job !== name) for (const h of c.hosts) busy.set(h, job);
    }
    const me = this.jobs.get(name);
    const ahead = me
      ? [...this.jobs.entries()]
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
      hosts: this.hosts,
      ready: new Set([...this.health.values()].filter((n) => n.status === 'Ready').map((n) => n.name)),
      notReady: new Map(
        [...this.health.values()].filter((n) => n.status !== 'Ready').map((n) => [n.name, n.reasons[0] ?? 'NotReady']),
      ),
      busy,
      usedPorts,
      basePort: this.o.cluster.communication.masterPort,
      gpus: new Map([...this.health.values()].map((n) => [n.name, n.gpus])),
      ahead,
      rdzvTimeoutSeconds: Math.min(this.o.cluster.communication.timeoutSeconds, 600),
      defaultGraceSeconds: this.o.graceSeconds ?? 30,
    };
  }

  private async reconcileOne(name: string): Promise<{ requeueAfterMs?: number }> {
    this.stats.reconciles++;
    const spec = this.store.readSpec(name);
    const status = this.store.readStatus(name);
    const control = this.store.readControl(name);
    const known = [...this.hostRuns.entries()].filter(([, ps]) => ps.some((p) => p.meta.job === name)).map(([h]) => h);
    const liveKnown = [...this.hostRuns.values()].some((ps) => ps.some((p) => p.meta.job === name && p.alive));
    // Finished for this very spec and nothing alive: the world cannot have changed. No host I/O.
    // The same holds for a job still suspended whose run is known to be stopped.
    const settled =
      status &&
      (TERMINAL_PHASES.includes(status.phase) ||
        (status.phase === 'Suspended' && spec.kind === 'valid' && spec.job.spec.suspend));
    // (A status written while its stop was in flight still shows nodes Running: observe once more.)
    const nodesSettled = !status?.nodes.some(
      (n) => n.state === 'Running' || n.state === 'Pending' || n.state === 'Unknown',
    );
    // Only a cancel that could still change something counts (not one for an older spec, nor one
    // left over after the job finished: nothing ever deletes a control file).
    const cancelPending =
      spec.kind === 'valid' &&
      status &&
      control?.cancel &&
      (!control.cancel.specHash || control.cancel.specHash === spec.hash) &&
      !TERMINAL_PHASES.includes(status.phase);
    if (
      spec.kind === 'valid' &&
      status &&
      settled &&
      nodesSettled &&
      status.specHash === spec.hash &&
      !liveKnown &&
      !cancelPending
    ) {
      this.remember(name, spec.job, status);
      return {};
    }
    if (spec.kind === 'invalid' && status?.phase === 'Invalid' && !liveKnown) {
      const res = reconcile({
        name,
        now: this.now(),
        spec,
        status,
        control,
        parts: [],
        unreachable: new Map(),
        cluster: this.view(name),
      });
      this.persist(name, res.status, res.events);
      return {};
    }
    // Observe every host that has (or should have) a part of this job.
    const hostsToObserve = new Set([...known, ...(status?.nodes ?? []).map((n) => n.host)]);
    const unreachable = new Map<string, string>();
    await Promise.all(
      [...hostsToObserve].map(async (hn) => {
        const h = this.host(hn);
        if (!h) return;
        try {
          const parts = await this.runtime.observe(h, name);
          this.stats.observes++;
          const others = (this.hostRuns.get(hn) ?? []).filter((p) => p.meta.job !== name);
          this.hostRuns.set(hn, [...others, ...parts]);
          for (const p of parts) if (p.alive) this.ensureWaiter(h, p);
        } catch (e) {
          unreachable.set(hn, (e as Error).message.replace(`${hn}: `, ''));
        }
      }),
    );
    const parts = [...this.hostRuns.values()].flat().filter((p) => p.meta.job === name && !unreachable.has(p.host));
    this.claims.delete(name);
    if (spec.kind === 'valid') this.remember(name, spec.job, status);
    const res = reconcile({
      name,
      now: this.now(),
      spec,
      status,
      control,
      parts,
      unreachable,
      cluster: this.view(name),
    });
    // Claim hosts and port before the first await, so a concurrent reconcile of another job
    // cannot pick the same hosts while this launch is in flight.
    for (const a of res.actions)
      if (a.type === 'launch') this.claims.set(name, { hosts: a.allParts.map((p) => p.host), port: a.port });
    if (spec.kind === 'valid' && res.status) this.remember(name, spec.job, res.status);
    if (res.status && spec.kind === 'valid' && res.status.phase === 'Starting') {
      // Record intent before touching hosts: a crash mid-launch is then finished on restart.
      this.persist(name, res.status, []);
    }
    let requeue = res.requeueAfterMs;
    for (const a of res.actions) {
      if (a.type === 'stop') await this.doStop(name, a);
      else if (a.type === 'archive') await this.doArchive(name, a);
      else if (spec.kind === 'valid') {
        await this.doLaunch(spec.job, a);
        requeue = Math.min(requeue ?? 2000, 2000);
      }
    }
    this.persist(name, res.status, res.events);
    if (spec.kind === 'valid' && res.status) this.remember(name, spec.job, res.status);
    if (res.status === null) this.jobs.delete(name);
    if (!res.status || TERMINAL_PHASES.includes(res.status.phase) || res.actions.some((a) => a.type === 'stop'))
      this.kickQueued();
    return { requeueAfterMs: requeue };
  }

  private remember(name: string, job: TrainingJob, status: JobStatus | undefined): void {
    const mtime = this.store.specMtime(name);
    // Unknown phase until reconciled: only jobs known to be waiting count as "queued ahead".
    this.jobs.set(name, {
      priority: job.spec.priority,
      createdAt: status?.createdAt ?? mtime?.toISOString() ?? this.now().toISOString(),
      phase: status?.phase,
      reason: status?.reason,
    });
  }

  private persist(
    name: string,
    status: JobStatus | null,
    events: { reason: string; message: string; type?: 'Normal' | 'Warning' }[],
  ): void {
    if (status === null) this.store.deleteStatus(name);
    else this.store.writeStatus(name, status);
    const time = this.now().toISOString();
    const evs: JobEvent[] = events.map((e) => ({
      time,
      job: name,
      type: e.type ?? 'Normal',
      reason: e.reason,
      message: e.message,
    }));
    this.store.appendEvents(evs);
    for (const e of evs) this.log.info(e.message, { job: name, reason: e.reason });
  }

  private async doStop(job: string, a: Extract<Action, { type: 'stop' }>): Promise<void> {
    this.log.info('stopping run', {
      job,
      run: a.runId,
      hosts: a.hosts,
      graceSeconds: a.graceSeconds,
      reason: a.reason,
    });
    await Promise.all(
      a.hosts.map(async (hn) => {
        const h = this.host(hn);
        if (!h) return;
        const r = await this.runtime.stop(h, a.dir, a.runId, a.graceSeconds, a.reason);
        if (r.remaining)
          this.log.error('processes of the run survived SIGKILL', {
            job,
            host: hn,
            run: a.runId,
            remaining: r.remaining,
          });
        const parts = await this.runtime.observe(h, job);
        const others = (this.hostRuns.get(hn) ?? []).filter((p) => p.meta.job !== job);
        this.hostRuns.set(hn, [...others, ...parts]);
      }),
    );
  }

  private async doArchive(job: string, a: Extract<Action, { type: 'archive' }>): Promise<void> {
    await Promise.all(
      a.parts.map(async ({ host, dir }) => {
        const h = this.host(host);
        if (!h) return;
        await this.runtime.archive(h, dir);
        this.hostRuns.set(
          host,
          (this.hostRuns.get(host) ?? []).filter((p) => p.dir !== dir),
        );
      }),
    );
    this.log.info('run directories moved to runs/.deleted', { job, dirs: [...new Set(a.parts.map((p) => p.dir))] });
  }

  private localScriptsDir(): string {
    return (
      this.o.scriptsDir ?? this.o.cluster.local.scripts ?? resolve(new URL('../../scripts', import.meta.url).pathname)
    );
  }

  /** Deploy scripts/ to a host when its content hash differs from what the host has. */
  private async syncScripts(h: Host): Promise<void> {
    const dir = this.localScriptsDir();
    if (!existsSync(dir)) throw new Error(`scripts directory ${dir} not found (set paths.scripts in the cluster file)`);
    const hash = hashTree(dir);
    if (this.scriptsSynced.get(h.name) === hash) return;
    const conn = this.o.pool.host(h.name);
    const marker = posix.join(h.paths.scripts, '.ugro-scripts-hash');
    const cur = await conn.exec(['cat', marker]);
    if (cur.code !== 0 || cur.stdout.trim() !== hash) {
      await conn.upload(dir, h.paths.scripts);
      await conn.writeFile(marker, `${hash}\n`);
      this.log.info('deployed scripts', { host: h.name, hash: hash.slice(0, 12) });
    }
    this.scriptsSynced.set(h.name, hash);
  }

  private async doLaunch(job: TrainingJob, a: Extract<Action, { type: 'launch' }>): Promise<void> {
    const rdzv = this.host(a.rdzvHost)!;
    if (a.parts.length === a.allParts.length) {
      // A fresh launch: the rendezvous port must be free on its host, whoever holds it
      // (another tool, or a run this controller does not know about).
      const ss = await this.o.pool.exec(rdzv.name, ['ss', '-Hltn']);
      const busy = new Set([...ss.stdout.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1])));
      while (busy.has(a.port)) a.port++;
    }
    await Promise.all(
      a.parts.map(async (p) => {
        const h = this.host(p.host)!;
        if (job.spec.script) await this.syncScripts(h);
        const runDir = posix.join(h.paths.runs, a.dir);
        const n = {
          host: h,
          nodeRank: p.nodeRank,
          nnodes: a.allParts.length,
          nproc: p.nproc,
          rdzvAddr: rdzv.address,
          port: a.port,
          runId: a.runId,
          runDir,
          attempt: a.attempt,
          rdzvTimeoutSeconds: Math.min(this.o.cluster.communication.timeoutSeconds, 600),
        };
        const meta: RunMeta = {
          job: a.job,
          runId: a.runId,
          specHash: a.specHash,
          attempt: a.attempt,
          host: h.name,
          nodeRank: p.nodeRank,
          nnodes: a.allParts.length,
          nprocPerNode: p.nproc,
          hosts: a.allParts.map((x) => x.host),
          rdzvEndpoint: `${rdzv.address}:${a.port}`,
          masterPort: a.port,
          createdAt: a.createdAt,
        };
        const r = await this.runtime.launch(h, {
          dir: a.dir,
          rdzvAddr: rdzv.address,
          meta,
          argv: torchrunArgv(job, n),
          env: launchEnv(job, n),
        });
        this.stats.launches++;
        this.log.info(r.existed ? 'run part already running' : 'launched run part', {
          job: a.job,
          host: h.name,
          run: a.runId,
          attempt: a.attempt,
          pid: r.pid,
        });
        // Record it at once so scheduling sees the host busy before the next observe.
        const part: RunPart = {
          dir: a.dir,
          host: h.name,
          meta,
          pid: r.pid,
          alive: true,
          ranks: [],
          agentLogTail: [],
          launchedAtMs: Date.now(),
        };
        const others = (this.hostRuns.get(h.name) ?? []).filter((x) => x.dir !== a.dir);
        this.hostRuns.set(h.name, [...others, part]);
        this.ensureWaiter(h, part);
      }),
    );
  }
}

/** The scripts tree's content hash: the same walk and hash Pulumi's deployment uses. */
export function hashTree(dir: string): string {
  return readTree(dir).hash;
}

export { priorityValue };
