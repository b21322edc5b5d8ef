/**
 * Notifications: a POST of each Notification (core/notifications.ts) to the cluster file's
 * `webhook.url`, as JSON with a Slack-compatible `text`. One at a time, in the order they were
 * made; a failure (no answer in time, a status that is not 2xx) is retried with capped
 * exponential backoff, then dropped with an error in the log. `send` only queues: a slow or dead
 * receiver never holds up reconcile. With `webhook.secret`, the body is signed like GitHub's
 * webhooks: `X-Ugro-Signature-256: sha256=<HMAC-SHA256 of the body>`.
 */
import { createHmac } from 'node:crypto';
import type { Logger } from '../base/log.ts';
import type { Notification } from '../core/notifications.ts';

/** POST `body` to `url`; resolves with the HTTP status, rejects on a network error or the abort. */
export type PostFn = (
  url: string,
  body: string,
  headers: Record<string, string>,
  signal: AbortSignal,
) => Promise<number>;

export interface NotifierOptions {
  url: string;
  secret?: string;
  /** Per request (default 10 s). */
  timeoutMs?: number;
  /** Tries after the first (default 5). */
  retries?: number;
  /** First backoff (default 1 s), doubling up to maxBackoffMs (default 60 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Waiting notifications kept at most; past it the oldest is dropped (default 1000). */
  maxQueue?: number;
  log?: Logger;
  post?: PostFn;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (t: unknown) => void;
}

const fetchPost: PostFn = async (url, body, headers, signal) => {
  const r = await fetch(url, { method: 'POST', body, headers, signal, redirect: 'manual' });
  await r.body?.cancel().catch(() => undefined);
  return r.status;
};

/** The URL as safe to log: scheme, host and port only (the path often is the secret, as Slack's). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}/…`;
  } catch {
    return '<invalid url>';
  }
}

export class Notifier {
  private readonly queue: Notification[] = [];
  private running = false;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];
  private readonly pending = new Set<unknown>();
  /** Counters for tests and /metrics. */
  readonly stats = { sent: 0, failed: 0, retried: 0, dropped: 0 };

  constructor(private readonly o: NotifierOptions) {}

  send(n: Notification): void {
    if (this.stopped) return;
    this.queue.push(n);
    if (this.queue.length > (this.o.maxQueue ?? 1000)) {
      this.queue.shift();
      this.stats.dropped++;
      this.o.log?.warn('notification queue full: dropped the oldest', { url: redactUrl(this.o.url) });
    }
    if (!this.running) void this.drain();
  }

  /** Resolves when nothing is queued or in flight. */
  idle(): Promise<void> {
    if (!this.running && !this.queue.length) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
    const clear = this.o.clearTimeout ?? ((t: unknown) => clearTimeout(t as NodeJS.Timeout));
    for (const t of this.pending) clear(t);
    this.pending.clear();
  }

  private timer(fn: () => void, ms: number): unknown {
    const set = this.o.setTimeout ?? ((f: () => void, m: number) => setTimeout(f, m).unref());
    const t = set(() => {
      this.pending.delete(t);
      fn();
    }, ms);
    this.pending.add(t);
    return t;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => this.timer(r, ms));
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length && !this.stopped) await this.deliver(this.queue.shift()!);
    } finally {
      this.running = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async deliver(n: Notification): Promise<void> {
    const body = JSON.stringify(n);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'ugro-notifier' };
    if (this.o.secret)
      headers['x-ugro-signature-256'] = `sha256=${createHmac('sha256', this.o.secret).update(body).digest('hex')}`;
    const retries = this.o.retries ?? 5;
    let last = '';
    for (let i = 0; i <= retries && !this.stopped; i++) {
      if (i > 0) {
        this.stats.retried++;
        await this.sleep(Math.min((this.o.backoffMs ?? 1000) * 2 ** (i - 1), this.o.maxBackoffMs ?? 60_000));
        if (this.stopped) return;
      }
      const ac = new AbortController();
      const t = this.timer(() => ac.abort(new Error('timed out')), this.o.timeoutMs ?? 10_000);
      try {
        const code = await (this.o.post ?? fetchPost)(this.o.url, body, headers, ac.signal);
        if (code >= 200 && code < 300) {
          this.stats.sent++;
          return;
        }
        last = `HTTP ${code}`;
      } catch (e) {
        last = ac.signal.aborted ? `no answer in ${this.o.timeoutMs ?? 10_000} ms` : (e as Error).message;
      } finally {
        (this.o.clearTimeout ?? ((x: unknown) => clearTimeout(x as NodeJS.Timeout)))(t);
        this.pending.delete(t);
      }
    }
    this.stats.failed++;
    this.o.log?.error('notification not delivered', {
      job: n.job,
      kind: n.kind,
      url: redactUrl(this.o.url),
      error: last,
    });
  }
}
