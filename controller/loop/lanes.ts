/**
 * One writer of a job's status at a time. The work queue runs one reconcile per job at a time;
 * the progress watcher's writes must also never run during one (the reconcile read the status
 * and observed the hosts before the write, and would write its older step back over it). Each
 * job has a lane: what is put in it runs after what was put in before. Progress offered while an
 * earlier offer still waits replaces it: only the newest line is written.
 */
export class JobLanes {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly waiting = new Map<string, unknown>();

  /** Run `fn` once everything put in `job`'s lane before it has ended. */
  run<T>(job: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(job);
    const p = prev ? prev.then(fn) : fn();
    const tail = p.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(job, tail);
    void tail.then(() => {
      if (this.tails.get(job) === tail) this.tails.delete(job);
    });
    return p;
  }

  /**
   * `fn(value)` in `job`'s lane; a value offered while an earlier one still waits there takes its
   * place (one call, with the newest). `fn` handles its own errors.
   */
  latest<V>(job: string, value: V, fn: (v: V) => Promise<void>): void {
    const queued = this.waiting.has(job);
    this.waiting.set(job, value);
    if (queued) return;
    void this.run(job, () => {
      const v = this.waiting.get(job) as V;
      this.waiting.delete(job);
      return fn(v);
    }).catch(() => undefined);
  }

  /** Resolves once no lane has anything running or waiting. */
  async idle(): Promise<void> {
    while (this.tails.size) await Promise.all([...this.tails.values()]);
  }
}
