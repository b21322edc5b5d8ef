/**
 * Which hosts answer. The SSH layer notes when each host last said anything (its 1 s keepalive
 * replies included); this module turns that into the facts reconcile decides on: when each host
 * was last heard from, and which hosts are down (a contact failed and none succeeded since).
 * While a run of this controller lives, a 1 s tick (no host I/O) wakes the jobs of hosts that
 * went quiet, so a lost node is decided within its nodeLostSeconds; down hosts are retried with
 * backoff, and their jobs woken when they answer again. Idle, it does nothing.
 */
import type { Host } from '../../config/cluster.ts';
import type { Reachability } from '../backends/api.ts';
import type { Logger } from '../base/log.ts';

/** A host quiet this long while it holds a live part wakes that part's job (reconcile decides). */
const QUIET_MS = 1500;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 10_000;

interface Down {
  since: number;
  why: string;
  retryAt: number;
  retries: number;
}

export class Liveness {
  private readonly down = new Map<string, Down>();
  private readonly woken = new Map<string, number>();
  private readonly startedAt: number;

  constructor(
    private readonly runtime: Reachability,
    private readonly hosts: Host[],
    private readonly now: () => number,
    private readonly log: Logger,
  ) {
    this.startedAt = now();
  }

  /** When the host last answered (controller clock); a host never heard from counts from our start. */
  lastHeard(host: string): number {
    const h = this.hosts.find((x) => x.name === host);
    const t = h ? this.runtime.lastHeard(h) : undefined;
    return Math.max(t ?? 0, this.startedAt);
  }

  lastHeardAll(): Map<string, number> {
    return new Map(this.hosts.map((h) => [h.name, this.lastHeard(h.name)]));
  }

  /** Hosts that failed their last contact: host -> why (for scheduling). */
  downAll(): Map<string, string> {
    return new Map(
      [...this.down].map(([h, d]) => [h, `unreachable since ${new Date(d.since).toISOString()} (${d.why})`]),
    );
  }

  isDown(host: string): boolean {
    return this.down.has(host);
  }

  /** A contact with `host` failed. */
  failed(host: string, why: string): void {
    if (this.down.has(host)) return;
    const now = this.now();
    this.down.set(host, { since: now, why: why.replace(`${host}: `, ''), retryAt: now + RETRY_MIN_MS, retries: 0 });
    this.log.warn('host unreachable', { host, error: why });
  }

  /** A contact with `host` succeeded: true if it was down (its jobs should look again). */
  answered(host: string): boolean {
    const was = this.down.delete(host);
    if (was) this.log.info('host answers again', { host });
    return was;
  }

  /**
   * One tick: hosts holding live parts that went quiet wake their jobs (once per second at most);
   * down hosts due for a retry are tried (a connect, nothing run). Returns the jobs to wake.
   */
  async tick(liveJobsOn: (host: string) => string[]): Promise<{ wake: Set<string>; back: string[] }> {
    const now = this.now();
    const wake = new Set<string>();
    for (const h of this.hosts) {
      const jobs = liveJobsOn(h.name);
      if (!jobs.length) continue;
      if (now - this.lastHeard(h.name) > QUIET_MS && now - (this.woken.get(h.name) ?? 0) >= 1000) {
        this.woken.set(h.name, now);
        for (const j of jobs) wake.add(j);
      }
    }
    const back: string[] = [];
    await Promise.all(
      [...this.down].map(async ([name, d]) => {
        if (now < d.retryAt) return;
        const h = this.hosts.find((x) => x.name === name);
        if (!h) return;
        try {
          await this.runtime.reach(h);
          if (this.answered(name)) back.push(name);
        } catch (e) {
          d.retries++;
          d.why = (e as Error).message.replace(`${name}: `, '');
          d.retryAt = this.now() + Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** d.retries);
        }
      }),
    );
    return { wake, back };
  }

  /** Is there anything to watch (a live run, or a host to retry)? */
  busy(anyLive: boolean): boolean {
    return anyLive || this.down.size > 0;
  }
}
