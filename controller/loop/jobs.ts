/**
 * What the loop knows of each job between reconciles: its spec and status as last read (the queue
 * placement plans over), and the preemptions that stopped it.
 */
import type { JobStatus } from '../api/status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
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
    this.memos.delete(name);
  }

  entries(): IterableIterator<[string, JobMemo]> {
    return this.memos.entries();
  }

  /** Jobs waiting for hosts (not for a backoff): worth a look when hosts may have come free. */
  queuedToKick(): string[] {
    const out: string[] = [];
    for (const [name, m] of this.memos) {
      if (m.phase === 'Queued' && m.reason !== 'BackoffRestart' && m.reason !== 'LaunchFailed') out.push(name);
    }
    return out;
  }

  async remember(name: string, job: TrainingJob, status: JobStatus | undefined, owner = status?.owner): Promise<void> {
    const createdAt =
      status?.createdAt ?? (await this.store.specMtime(name))?.toISOString() ?? this.now().toISOString();
    // Unknown phase until reconciled: only jobs known to be waiting count as "queued ahead".
    const prev = this.memos.get(name);
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
