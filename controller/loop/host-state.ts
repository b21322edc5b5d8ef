/**
 * What the controller last saw on each host: its run parts (every job, every owner) and its
 * health. Caches only: everything here is rebuilt by observing the hosts, so losing it (a
 * restart) loses nothing.
 */
import type { RunPart } from '../api/run.ts';
import type { NodeHealth } from '../backends/health.ts';

export class HostState {
  private readonly runs = new Map<string, RunPart[]>();
  readonly health = new Map<string, NodeHealth>();

  /**
   * Runs of this controller carry its owner; runs of another controller are only "busy" here.
   * `liveChanged`: the live parts of a host changed (a run ended, was stopped or started): what
   * placement counts as holding GPUs is stale.
   */
  constructor(
    private readonly owner: string,
    private readonly liveChanged: () => void = () => undefined,
  ) {}

  /** Replace a host's parts, telling liveChanged when its live parts are not the same as before. */
  private replace(host: string, parts: RunPart[]): void {
    const live = (ps: readonly RunPart[] | undefined) =>
      (ps ?? [])
        .filter((p) => p.alive)
        .map((p) => p.dir)
        .sort()
        .join(' ');
    const before = live(this.runs.get(host));
    this.runs.set(host, parts);
    if (live(parts) !== before) this.liveChanged();
  }

  mine(p: RunPart): boolean {
    return !p.meta.owner || p.meta.owner === this.owner;
  }

  /** Replace what a host showed: all of it, or (with `job`) that job's parts only. */
  set(host: string, parts: RunPart[], job?: string): void {
    const others = job ? (this.runs.get(host) ?? []).filter((p) => p.meta.job !== job || !this.mine(p)) : [];
    this.replace(host, [...others, ...(job ? parts.filter((p) => this.mine(p)) : parts)]);
  }

  /** Record one part at once (a launch), replacing an older view of the same dir. */
  put(part: RunPart): void {
    const others = (this.runs.get(part.host) ?? []).filter((x) => x.dir !== part.dir);
    this.replace(part.host, [...others, part]);
  }

  drop(host: string, dir: string): void {
    this.replace(
      host,
      (this.runs.get(host) ?? []).filter((p) => p.dir !== dir),
    );
  }

  /** This controller's parts of `job`, on hosts not in `except`. */
  partsOf(job: string, except: Map<string, string> = new Map()): RunPart[] {
    const out: RunPart[] = [];
    for (const [h, ps] of this.runs)
      if (!except.has(h)) for (const p of ps) if (p.meta.job === job && this.mine(p)) out.push(p);
    return out;
  }

  /** Hosts where this controller last saw a part of `job`. */
  hostsOf(job: string): string[] {
    return [...this.runs.entries()]
      .filter(([, ps]) => ps.some((p) => p.meta.job === job && this.mine(p)))
      .map(([h]) => h);
  }

  liveOf(job: string): boolean {
    return [...this.runs.values()].some((ps) => ps.some((p) => p.meta.job === job && p.alive && this.mine(p)));
  }

  /** This controller's jobs with a part on `host` (live ones only, with `live`). */
  jobsOn(host: string, live = false): string[] {
    const s = new Set<string>();
    for (const p of this.runs.get(host) ?? []) if (this.mine(p) && (!live || p.alive)) s.add(p.meta.job);
    return [...s];
  }

  /** Every part on every host, of every owner (what placement counts as holding GPUs). */
  allParts(): RunPart[] {
    return [...this.runs.values()].flat();
  }

  anyLive(): boolean {
    return [...this.runs.values()].some((ps) => ps.some((p) => p.alive && this.mine(p)));
  }

  /** Every job name of this controller found on any host. */
  jobNames(): Set<string> {
    const s = new Set<string>();
    for (const ps of this.runs.values()) for (const p of ps) if (this.mine(p)) s.add(p.meta.job);
    return s;
  }

  /** Host -> job holding it with a live part (another controller's jobs too), except `job`'s own. */
  busy(job: string): Map<string, string> {
    const m = new Map<string, string>();
    for (const [h, ps] of this.runs) {
      for (const p of ps) {
        if (!p.alive) continue;
        if (!this.mine(p)) m.set(h, `${p.meta.job} (of another controller)`);
        else if (p.meta.job !== job) m.set(h, p.meta.job);
      }
    }
    return m;
  }

  /** Rendezvous ports of every live run. */
  ports(): Set<number> {
    const s = new Set<number>();
    for (const ps of this.runs.values()) for (const p of ps) if (p.alive) s.add(p.meta.masterPort);
    return s;
  }

  ready(): Set<string> {
    return new Set([...this.health.values()].filter((n) => n.status === 'Ready').map((n) => n.name));
  }

  notReady(): Map<string, string> {
    return new Map(
      [...this.health.values()].filter((n) => n.status !== 'Ready').map((n) => [n.name, n.reasons[0] ?? 'NotReady']),
    );
  }

  gpus(): Map<string, { memoryTotalMiB: number }[]> {
    return new Map([...this.health.values()].map((n) => [n.name, n.gpus]));
  }
}
