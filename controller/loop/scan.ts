/**
 * Gathers facts from the hosts: their health, every run on a host (at start, resync, a host back),
 * and one job's parts and newest checkpoint for its reconcile, with a host quiet past its keepalive
 * counted unreachable at once.
 */
import type { Host } from '../../config/cluster.ts';
import type { SpecState } from '../api/job-state.ts';
import type { CheckpointInfo } from '../api/run.ts';
import type { JobStatus } from '../api/status.ts';
import { HostError } from '../backends/errors.ts';
import { checkpointDir } from '../core/launch.ts';
import type { LoopContext } from './context.ts';

export class HostScan {
  constructor(private readonly ctx: LoopContext) {}

  async refreshHealth(hosts: Host[] = this.ctx.hosts): Promise<void> {
    const nodes = await Promise.all(hosts.map((h) => this.ctx.runtime.probe(h)));
    for (const n of nodes) {
      const prev = this.ctx.hostsState.health.get(n.name);
      if (prev?.status !== n.status)
        this.ctx.log.info('node status', { host: n.name, status: n.status, reason: n.reasons[0] });
      this.ctx.hostsState.health.set(n.name, n);
    }
    this.ctx.scheduler.invalidate();
    this.ctx.observer?.health?.(nodes);
  }

  async scanHost(h: Host): Promise<void> {
    try {
      const { parts, rejected } = await this.ctx.runtime.observe(h);
      this.ctx.liveness.answered(h.name);
      this.ctx.stats.observes++;
      this.reportRejected(h, rejected);
      this.ctx.hostsState.set(h.name, parts);
      this.ctx.scheduler.invalidate();
      for (const p of parts) if (p.alive && this.ctx.hostsState.mine(p)) this.ctx.waiters.ensure(h, p);
    } catch (e) {
      this.ctx.liveness.failed(h.name, (e as Error).message);
      this.ctx.log.warn('cannot list runs on host', { host: h.name, error: (e as Error).message });
    }
  }

  private reportRejected(h: Host, rejected: { dir: string; why: string }[]): void {
    for (const r of rejected)
      this.ctx.warnOnce(`${h.name}/${r.dir}`, 'ignoring a run directory that fails validation', {
        host: h.name,
        dir: r.dir,
        why: r.why,
      });
  }

  /**
   * Observe every host that has (or per status should have) a part of this job, and with a valid
   * spec the job's newest checkpoint there. A host known down is not waited for (the liveness
   * watch retries it): it is unreachable for this pass at once.
   */
  async observeJob(
    name: string,
    spec: SpecState,
    status: JobStatus | undefined,
  ): Promise<{ unreachable: Map<string, string>; checkpoints: CheckpointInfo[]; attemptFloor: number }> {
    const hostsToObserve = new Set([...this.ctx.hostsState.hostsOf(name), ...(status?.nodes ?? []).map((n) => n.host)]);
    const unreachable = new Map<string, string>();
    const checkpoints: CheckpointInfo[] = [];
    let attemptFloor = 0;
    const down = this.ctx.liveness.downAll();
    await Promise.all(
      [...hostsToObserve].map(async (hn) => {
        const h = this.ctx.host(hn);
        if (!h) return;
        const isDown = down.get(hn);
        if (isDown) {
          unreachable.set(hn, isDown);
          return;
        }
        // Quiet past its keepalive: a request would only hang until the keepalive gives up.
        // Unreachable now (the liveness watch reconnects and clears it the moment it answers).
        const silent = this.silentMs(h);
        if (silent > silenceLimitMs(h)) {
          const why = `no answer for ${(silent / 1000).toFixed(1)} s`;
          this.ctx.liveness.failed(hn, why);
          unreachable.set(hn, why);
          return;
        }
        const ckpt = spec.kind === 'valid' ? checkpointDir(spec.job, h) : undefined;
        try {
          const r = await this.whileHeard(h, this.ctx.runtime.observe(h, name, ckpt?.ok ? ckpt.path : undefined));
          if (this.ctx.liveness.answered(hn)) this.ctx.kickQueued();
          this.ctx.stats.observes++;
          this.reportRejected(h, r.rejected);
          this.ctx.hostsState.set(hn, r.parts, name);
          if (r.checkpoint) checkpoints.push(r.checkpoint);
          for (const p of r.parts) {
            if (spec.kind === 'valid' && p.meta.specHash === spec.hash)
              attemptFloor = Math.max(attemptFloor, p.meta.attempt);
          }
          for (const p of r.parts) if (p.alive && this.ctx.hostsState.mine(p)) this.ctx.waiters.ensure(h, p);
        } catch (e) {
          const why = (e as Error).message.replace(`${hn}: `, '');
          if (e instanceof HostError && ['unreachable', 'refused', 'timeout', 'channel'].includes(e.kind)) {
            this.ctx.liveness.failed(hn, why);
          }
          unreachable.set(hn, why);
        }
      }),
    );
    return { unreachable, checkpoints, attemptFloor };
  }

  /** How long `h` has said nothing (keepalive replies count), by this controller's clock. */
  silentMs(h: Host): number {
    const heard = this.ctx.runtime.lastHeard(h);
    return heard === undefined ? 0 : this.ctx.now().getTime() - heard;
  }

  /**
   * `p`, unless `h` goes quiet past the silence limit while it runs: then the host is unreachable
   * for this pass at once. (A host cut mid-request would otherwise hold it until ssh's keepalive
   * gives up and a reconnect times out: seconds past the moment its node counts as lost.) `p`
   * is left to end on its own.
   */
  whileHeard<T>(h: Host, p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setInterval(() => {
        const silent = this.silentMs(h);
        if (silent <= silenceLimitMs(h)) return;
        clearInterval(timer);
        reject(new HostError(h.name, 'unreachable', `no answer for ${(silent / 1000).toFixed(1)} s`));
      }, 100);
      timer.unref?.();
      p.then(
        (v) => {
          clearInterval(timer);
          resolve(v);
        },
        (e) => {
          clearInterval(timer);
          reject(e);
        },
      );
    });
  }
}

/** A host quiet this long is unreachable (1.5 keepalive intervals, plus slack for timers). */
export function silenceLimitMs(h: Host): number {
  return 1.5 * h.ssh.keepaliveMs + 500;
}
