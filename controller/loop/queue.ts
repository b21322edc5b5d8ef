/**
 * Per-key work queue: one reconcile at a time per key, a key enqueued while running is run
 * again after, delayed requeues, and capped exponential backoff on errors.
 */
export interface QueueOptions {
  concurrency?: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  setTimeout?: (fn: () => void, ms: number) => NodeJS.Timeout;
  clearTimeout?: (t: NodeJS.Timeout) => void;
  onError?: (key: string, err: unknown, retryInMs: number) => void;
}

// biome-ignore lint/suspicious/noConfusingVoidType: handlers that never requeue return nothing
export type Outcome = { requeueAfterMs?: number } | void;

export class WorkQueue {
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly running = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly timers = new Map<string, { at: number; t: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private active = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly o: Required<Omit<QueueOptions, 'onError'>> & Pick<QueueOptions, 'onError'>;

  constructor(
    private readonly handler: (key: string) => Promise<Outcome>,
    opts: QueueOptions = {},
  ) {
    this.o = {
      concurrency: opts.concurrency ?? 8,
      baseBackoffMs: opts.baseBackoffMs ?? 500,
      maxBackoffMs: opts.maxBackoffMs ?? 60_000,
      setTimeout: opts.setTimeout ?? ((fn, ms) => setTimeout(fn, ms)),
      clearTimeout: opts.clearTimeout ?? ((t) => clearTimeout(t)),
      onError: opts.onError,
    };
  }

  add(key: string, delayMs = 0): void {
    if (this.stopped) return;
    if (delayMs > 0) {
      const at = Date.now() + delayMs;
      const cur = this.timers.get(key);
      if (cur && cur.at <= at) return; // an earlier wake-up is already set
      if (cur) this.o.clearTimeout(cur.t);
      const t = this.o.setTimeout(() => {
        this.timers.delete(key);
        this.add(key);
      }, delayMs);
      t.unref?.();
      this.timers.set(key, { at, t });
      return;
    }
    if (this.running.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.ready.push(key);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.active < this.o.concurrency && this.ready.length) {
      const key = this.ready.shift()!;
      this.queued.delete(key);
      this.running.add(key);
      this.active++;
      void this.runOne(key);
    }
    if (this.active === 0 && this.ready.length === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async runOne(key: string): Promise<void> {
    let next: number | undefined;
    try {
      const out = await this.handler(key);
      this.failures.delete(key);
      next = out?.requeueAfterMs;
    } catch (e) {
      const n = (this.failures.get(key) ?? 0) + 1;
      this.failures.set(key, n);
      next = Math.min(this.o.maxBackoffMs, this.o.baseBackoffMs * 2 ** (n - 1));
      this.o.onError?.(key, e, next);
    } finally {
      this.running.delete(key);
      this.active--;
    }
    if (this.dirty.delete(key)) this.add(key);
    else if (next !== undefined) this.add(key, next);
    this.pump();
  }

  /** Keys waiting to run (now or on a timer) and keys running. */
  depth(): { waiting: number; running: number } {
    return { waiting: this.ready.length + this.timers.size, running: this.running.size };
  }

  /** Resolves when nothing is running or ready (timers may still be pending). */
  idle(): Promise<void> {
    if (this.active === 0 && this.ready.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  stop(): void {
    this.stopped = true;
    for (const { t } of this.timers.values()) this.o.clearTimeout(t);
    this.timers.clear();
    this.ready.length = 0;
  }
}
