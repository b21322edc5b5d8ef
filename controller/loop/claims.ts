/**
 * Hosts and rendezvous ports taken by launches in flight, before any observe can show them: a
 * concurrent reconcile of another job must not pick the same hosts or port. A claim lives from
 * the reconcile that decided the launch until the next reconcile of that job (which sees the run
 * on the hosts), or until the launch fails.
 */
export class Claims {
  private readonly byJob = new Map<string, { hosts: string[]; port: number; gpus: Map<string, number[]> }>();
  /** Ports found listening on a rendezvous host at launch: avoided for a while. */
  private readonly busyPorts = new Map<number, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** `gpus`: host -> the GPU indexes the launch takes there (a host left out is taken whole). */
  claim(job: string, hosts: string[], port: number, gpus: Map<string, number[]> = new Map()): void {
    this.byJob.set(job, { hosts: [...hosts], port, gpus });
  }

  /** Every launch in flight: job -> each host it takes, with its GPUs when known. */
  all(): Map<string, { host: string; gpus?: number[] }[]> {
    const m = new Map<string, { host: string; gpus?: number[] }[]>();
    for (const [job, c] of this.byJob)
      m.set(
        job,
        c.hosts.map((host) => ({ host, gpus: c.gpus.get(host) })),
      );
    return m;
  }

  release(job: string): void {
    this.byJob.delete(job);
  }

  /** Host -> job holding it, for every job but `except`. */
  busyHosts(except: string): Map<string, string> {
    const m = new Map<string, string>();
    for (const [job, c] of this.byJob) if (job !== except) for (const h of c.hosts) m.set(h, job);
    return m;
  }

  /** Ports claimed by launches in flight, and ports recently found busy (for `ttlMs`). */
  ports(ttlMs = 60_000): Set<number> {
    const s = new Set<number>();
    for (const c of this.byJob.values()) s.add(c.port);
    const now = this.now();
    for (const [p, at] of this.busyPorts) {
      if (now - at > ttlMs) this.busyPorts.delete(p);
      else s.add(p);
    }
    return s;
  }

  portBusy(port: number): void {
    this.busyPorts.set(port, this.now());
  }
}
