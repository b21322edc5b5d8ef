/**
 * Per-host leases: each controller takes a lease file in every host's runs dir naming itself,
 * renewed while it lives, so a second controller (another jobs dir, another machine) refuses to
 * place work on hosts it does not own instead of double-booking their GPUs. A lease that is not
 * renewed expires after its TTL (a controller killed with -9); the same controller restarted on
 * the same jobs dir is the same owner and takes its lease back at once.
 */
import type { Host } from '../../config/cluster.ts';
import type { HostLease, LeaseResult } from '../backends/api.ts';
import type { Logger } from '../base/log.ts';

export class Leases {
  private readonly state = new Map<string, LeaseResult | { error: string }>();
  /** Renewals in flight: a stop waits for them, or one landing after the release takes the lease back. */
  private readonly renewing = new Set<Promise<void>>();

  constructor(
    private readonly runtime: HostLease,
    private readonly hosts: Host[],
    readonly owner: string,
    readonly ttlSeconds: number,
    private readonly log: Logger,
  ) {}

  /** Take or renew every host's lease, in parallel. */
  async renewAll(): Promise<void> {
    const round = Promise.all(this.hosts.map((h) => this.renew(h))).then(() => undefined);
    this.renewing.add(round);
    try {
      await round;
    } finally {
      this.renewing.delete(round);
    }
  }

  private async renew(h: Host): Promise<void> {
    const before = this.state.get(h.name);
    let now: LeaseResult | { error: string };
    try {
      now = await this.runtime.lease(h, this.owner, this.ttlSeconds);
    } catch (e) {
      now = { error: (e as Error).message };
    }
    this.state.set(h.name, now);
    const was = before && 'held' in before ? before.held : undefined;
    if ('held' in now && now.held !== was) {
      if (now.held) this.log.info('host lease taken', { host: h.name });
      else
        this.log.warn('host is leased by another controller: not placing work there', {
          host: h.name,
          owner: now.owner,
          expiresInSeconds: now.expiresInSeconds,
        });
    }
  }

  held(host: string): boolean {
    const s = this.state.get(host);
    return !!s && 'held' in s && s.held;
  }

  /** Hosts this controller may not use, with a sentence saying why. */
  foreign(): Map<string, string> {
    const m = new Map<string, string>();
    for (const h of this.hosts) {
      const s = this.state.get(h.name);
      if (!s) m.set(h.name, 'has no lease of this controller yet');
      else if ('error' in s) m.set(h.name, `has no lease of this controller (${s.error.replace(`${h.name}: `, '')})`);
      else if (!s.held) {
        m.set(
          h.name,
          `is leased by another UGRO controller (${s.owner ?? 'unknown'}) for ${s.expiresInSeconds ?? '?'} s more: ` +
            'stop that controller, or wait for its lease to expire',
        );
      }
    }
    return m;
  }

  async releaseAll(): Promise<void> {
    await Promise.all([...this.renewing]);
    await Promise.all(
      this.hosts
        .filter((h) => this.held(h.name))
        .map((h) => this.runtime.lease(h, this.owner, this.ttlSeconds, true).catch(() => undefined)),
    );
    this.state.clear();
  }
}
