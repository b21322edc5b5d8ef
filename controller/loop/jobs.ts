/**
 * What the loop knows of each job between reconciles: its spec and status as last read (the queue
 * placement plans over), the preemptions that stopped it, and for spec.after what each job waits
 * for (an index producer -> dependents, kept as specs change) with the producers' facts.
 */
import type { CheckpointInfo } from '../api/run.ts';
import type { JobStatus } from '../api/status.ts';
import { specHash, type TrainingJob } from '../api/trainingjob.ts';
import { afterNames } from '../core/steps/dependencies.ts';
import type { JobFacts } from '../core/types.ts';
import type { JobStore } from '../store/store.ts';

export interface JobMemo {
  priority: TrainingJob['spec']['priority'];
  createdAt: string;
  phase?: string;
  reason?: string;
  /** The spec and status as last read: the queue placement plans over. */
  job: TrainingJob;
  status?: JobStatus;
  /** The authenticated owner (core/authorize.ts), known before the first status is written. */
  owner?: string;
}

export class JobBook {
  private readonly memos = new Map<string, JobMemo>();
  /** Victims of a preemption: who took their GPUs, and when (until they run again). */
  readonly preemptedBy = new Map<string, { job: string; at: string }>();
  /** Preemption stops in flight, by run id (a preemptor requeued meanwhile does not stop twice). */
  readonly preempting = new Set<string>();
  /** spec.after: producer -> the jobs that name it (each job's edges replaced when its spec changes). */
  private readonly dependents = new Map<string, Set<string>>();
  /** Jobs deleted while this controller ran (a dependency on one can no longer be met); until re-created. */
  private readonly deleted = new Set<string>();
  /** Jobs whose file is invalid now (they are not remembered: no spec to plan with). */
  private readonly invalid = new Set<string>();
  /** Each job's newest checkpoint per host as last observed, for the spec hash it was observed for. */
  private readonly checkpoints = new Map<string, { hash: string; list: CheckpointInfo[] }>();
  private readonly hashes = new WeakMap<TrainingJob, string>();
  /** Sweeps as their last pass left them (loop/sweeps.ts): what a `sweep:` dependency reads. */
  private readonly sweeps = new Map<string, NonNullable<JobFacts['sweep']>>();
  /** Sweeps gone while this controller ran (a dependency on one can no longer be met). */
  private readonly sweepsDeleted = new Set<string>();

  constructor(
    private readonly store: Pick<JobStore, 'specMtime'>,
    private readonly now: () => Date,
    /** The queue changed: the placement plan is stale. */
    private readonly changed: () => void,
  ) {}

  get(name: string): JobMemo | undefined {
    return this.memos.get(name);
  }

  delete(name: string): void {
    const m = this.memos.get(name);
    if (m || this.invalid.has(name)) this.deleted.add(name);
    this.index(name, m?.job, undefined);
    this.memos.delete(name);
    this.invalid.delete(name);
    this.checkpoints.delete(name);
  }

  /** The job's file is invalid now (true), or valid or gone (false). */
  markInvalid(name: string, invalid: boolean): void {
    if (invalid) {
      this.invalid.add(name);
      this.deleted.delete(name);
    } else this.invalid.delete(name);
  }

  /** The newest checkpoint on each host of `name`'s spec `hash`, as a reconcile observed them. */
  noteCheckpoints(name: string, hash: string, list: CheckpointInfo[]): void {
    this.checkpoints.set(name, { hash, list });
  }

  /**
   * A sweep's phase and best trial after its pass; undefined: the sweep and its status are gone.
   * Returns true when what its dependents decide on changed (the caller wakes them).
   */
  noteSweep(name: string, s: JobFacts['sweep'] | undefined): boolean {
    const before = this.factsKey(name);
    if (s) {
      this.sweeps.set(name, s);
      this.sweepsDeleted.delete(name);
    } else if (this.sweeps.delete(name)) this.sweepsDeleted.add(name);
    return this.factsKey(name) !== before;
  }

  /**
   * Jobs whose spec.after names `name`; for a sweep's best trial, those that name the sweep too
   * (what they will be handed: retention keeps it).
   */
  dependentsOf(name: string): string[] {
    const out = new Set(this.dependents.get(name));
    for (const [sweep, s] of this.sweeps)
      if (s.best === name) for (const d of this.dependents.get(sweep) ?? []) out.add(d);
    return [...out];
  }

  /**
   * What a dependent reads of `name` (undefined: no such job known). Its spec's hash is worked out
   * once per spec object.
   */
  facts(name: string): JobFacts | undefined {
    const sw = this.sweeps.get(name);
    if (sw) {
      // The best trial's spec, status and checkpoints: what a dependent is handed.
      const best = sw.best ? this.facts(sw.best) : undefined;
      const { phase: _p, reason: _r, deleted: _d, sweep: _s, ...trial } = best ?? {};
      return { ...trial, sweep: sw };
    }
    if (this.sweepsDeleted.has(name) && !this.memos.has(name)) return { deleted: true };
    const m = this.memos.get(name);
    if (!m) {
      if (this.invalid.has(name)) return { phase: 'Invalid' };
      return this.deleted.has(name) ? { deleted: true } : undefined;
    }
    let hash = this.hashes.get(m.job);
    if (hash === undefined) {
      hash = specHash(m.job.spec);
      this.hashes.set(m.job, hash);
    }
    const s = m.status;
    const ck = this.checkpoints.get(name);
    return {
      job: m.job,
      specHash: hash,
      ...(s ? { phase: s.phase, statusHash: s.specHash, since: s.generationSince ?? s.createdAt } : {}),
      ...(s?.reason ? { reason: s.reason } : {}),
      ...(ck && ck.hash === s?.specHash ? { checkpoints: ck.list } : {}),
    };
  }

  /** What dependents decide on, as one string: a change wakes them (loop/reconciler.ts). */
  factsKey(name: string): string {
    if (!this.dependents.get(name)?.size) return '';
    const f = this.facts(name);
    if (f?.sweep) return `sweep|${f.sweep.phase}|${f.sweep.best}`;
    return f ? `${f.phase}|${f.reason}|${f.statusHash}|${f.specHash}|${f.deleted}` : 'absent';
  }

  /**
   * The facts `job`'s spec.after needs: those of the jobs it names, and of theirs, and so on, only
   * their specs (what a cycle is followed through); a name not known is left out (no such job yet).
   */
  producersOf(job: TrainingJob): Map<string, JobFacts> {
    const out = new Map<string, JobFacts>();
    for (const n of afterNames(job)) {
      const f = this.facts(n);
      if (f) out.set(n, f);
    }
    // A cycle through `job` goes through a job that names it: none, no cycle to look for.
    const todo = this.dependents.get(job.metadata.name)?.size
      ? [...out.values()].flatMap((f) => afterNames(f.job))
      : [];
    for (let n = todo.pop(); n !== undefined; n = todo.pop()) {
      const m = this.memos.get(n);
      if (out.has(n) || n === job.metadata.name || !m) continue;
      out.set(n, { job: m.job });
      todo.push(...afterNames(m.job));
    }
    return out;
  }

  /** Replace `name`'s edges in the index producer -> dependents. */
  private index(name: string, before: TrainingJob | undefined, after: TrainingJob | undefined): void {
    const was = afterNames(before);
    const now = afterNames(after);
    if (was.length === now.length && was.every((n, i) => n === now[i])) return;
    for (const p of was) this.dependents.get(p)?.delete(name);
    for (const p of now) {
      const set = this.dependents.get(p) ?? new Set<string>();
      set.add(name);
      this.dependents.set(p, set);
    }
  }

  entries(): IterableIterator<[string, JobMemo]> {
    return this.memos.entries();
  }

  /** Jobs being reconciled now, and whether hosts may have come free (a kick) since each began. */
  private readonly inFlight = new Map<string, boolean>();

  /** A reconcile of `name` begins: kicks from now on are noted for it (see kickedSince). */
  beginReconcile(name: string): void {
    this.inFlight.set(name, false);
  }

  /** The reconcile of `name` ended: whether another job's change or a host kicked queued jobs meanwhile. */
  kickedSince(name: string): boolean {
    const k = this.inFlight.get(name) ?? false;
    this.inFlight.delete(name);
    return k;
  }

  /**
   * Jobs waiting for hosts (not for a backoff): worth a look when hosts may have come free. Jobs
   * being reconciled now are noted as kicked (a new job has no Queued status yet, so it is not in
   * the list); `from`, the job whose change kicked, is not (its own kick must not wake it again).
   */
  queuedToKick(from?: string): string[] {
    for (const n of this.inFlight.keys()) if (n !== from) this.inFlight.set(n, true);
    const out: string[] = [];
    for (const name of this.memos.keys()) if (this.waitsForHosts(name)) out.push(name);
    return out;
  }

  /** Whether `name` is Queued for hosts, not held by a backoff or a dependency. */
  waitsForHosts(name: string): boolean {
    const m = this.memos.get(name);
    // A job waiting for another is woken by that one's change (reconciler.ts), not by free hosts.
    const held = m?.reason === 'BackoffRestart' || m?.reason === 'LaunchFailed' || m?.reason === 'WaitingForDependency';
    return m?.phase === 'Queued' && !held;
  }

  async remember(name: string, job: TrainingJob, status: JobStatus | undefined, owner = status?.owner): Promise<void> {
    const createdAt =
      status?.createdAt ?? (await this.store.specMtime(name))?.toISOString() ?? this.now().toISOString();
    // Unknown phase until reconciled: only jobs known to be waiting count as "queued ahead".
    const prev = this.memos.get(name);
    this.index(name, prev?.job, job);
    this.deleted.delete(name);
    this.invalid.delete(name);
    this.memos.set(name, {
      priority: job.spec.priority,
      createdAt,
      phase: status?.phase,
      reason: status?.reason,
      job,
      status,
      ...(owner ? { owner } : {}),
    });
    // The plan changes only when the queue does: a job added, its spec, or whether it waits.
    if (
      !prev ||
      prev.phase !== status?.phase ||
      prev?.status?.nextRetryAt !== status?.nextRetryAt ||
      prev.owner !== owner ||
      (prev.job !== job && JSON.stringify(prev.job) !== JSON.stringify(job))
    )
      this.changed();
  }
}
