/**
 * One waiter per live run part: a long exec of wait.sh that blocks on the run's lock on the host
 * (no polling) and wakes the job's reconcile the moment the part's runner exits.
 */
import type { Host } from '../../config/cluster.ts';
import type { RunPart } from '../api/run.ts';
import type { RunWaiter } from '../backends/api.ts';
import type { Logger } from '../base/log.ts';

export class Waiters {
  private readonly active = new Map<string, AbortController>();

  constructor(
    private readonly runtime: RunWaiter,
    private readonly wake: (job: string) => void,
    /** Notes each part's end (its time is where a failure's reaction starts: npm run bench, recovery). */
    private readonly log?: Logger,
  ) {}

  ensure(host: Host, part: RunPart): void {
    const key = `${host.name}/${part.dir}`;
    if (this.active.has(key)) return;
    const ac = new AbortController();
    this.active.set(key, ac);
    this.runtime
      .wait(host, part.dir, ac.signal)
      .then(
        () => {
          if (!ac.signal.aborted)
            this.log?.info('run part ended', { job: part.meta.job, host: host.name, run: part.meta.runId });
        },
        () => undefined,
      )
      .finally(() => {
        if (this.active.get(key) === ac) this.active.delete(key);
        if (!ac.signal.aborted) this.wake(part.meta.job);
      });
  }

  get size(): number {
    return this.active.size;
  }

  stopAll(): void {
    for (const w of this.active.values()) w.abort();
    this.active.clear();
  }
}
