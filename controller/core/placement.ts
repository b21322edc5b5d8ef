/**
 * PURE placement over GPUs for the whole queue at once: (waiting jobs, each host's GPUs, what
 * holds them, owners' usage, now) -> for each waiting job: place it (on which GPUs of which
 * hosts), preempt lower-priority work for it, wait (and why), or never (it cannot fit this
 * cluster at all). One pass, in queue order: priority, then fair share between owners (less
 * recent GPU time first), then age. A job that cannot start blocks those behind it from its GPUs
 * (no starvation), except preemptible ones, which may backfill idle GPUs and are preempted when
 * the head can start.
 *
 * With quotas (PlanInput.quota, core/quota.ts): priorities are first capped to each owner's
 * max_priority; a job over its owner's quota waits (reason QuotaExceeded) without becoming the
 * head, so it holds back nobody else's job, preempts nobody and backfills nothing; an elastic job
 * gets only the nodes its owner's GPU limit allows; what this pass starts counts at once.
 */
import { capped, gpuCount, minGpus, quotaWait, withinGpus } from './placement-quota.ts';
import {
  type Decision,
  fits,
  type Gpu,
  type Holding,
  type HostSlots,
  MEMORY_SLACK,
  type PlacedNode,
  type PlanInput,
  type Request,
} from './placement-types.ts';
import { QuotaPass } from './quota.ts';

export type { Decision, Gpu, Holding, HostSlots, PlacedNode, PlanInput, Request } from './placement-types.ts';

/** The queue order: priority, fair share, age, name. */
function queueOrder(usage: Map<string, number>): (a: Request, b: Request) => number {
  return (a, b) =>
    b.priority - a.priority ||
    (usage.get(a.owner) ?? 0) - (usage.get(b.owner) ?? 0) ||
    a.createdAt.localeCompare(b.createdAt) ||
    a.job.localeCompare(b.job);
}

function gib(mib: number): string {
  return `${Math.round((mib / 1024) * 10) / 10} GB`;
}

/**
 * A GPU's memory as its card is sold: nvidia-smi reports a "12 GB" card as 12227 MiB or so, which
 * qualifies for a 12 GB request (MEMORY_SLACK) and so is called 12 GB, not 11.9.
 */
function cardSize(mib: number): string {
  const whole = Math.round(mib / 1024);
  return whole > 0 && mib >= whole * 1024 * MEMORY_SLACK ? `${whole} GB` : gib(mib);
}

function perNode(r: Request): string {
  const n = r.gpusPerNode === 'all' ? 'every' : String(r.gpusPerNode);
  const mem = r.minGpuMemoryMiB ? ` >= ${gib(r.minGpuMemoryMiB)}` : '';
  return `${r.minNodes === r.maxNodes ? r.minNodes : `${r.minNodes}-${r.maxNodes}`} node(s) x ${n} GPU(s)${mem}`;
}

/** Why the job can never run on this cluster (whatever is free), or undefined. */
function neverFits(r: Request, hosts: HostSlots[]): string | undefined {
  const candidates = r.hosts ? hosts.filter((h) => r.hosts!.includes(h.host)) : hosts;
  const able = candidates.filter((h) => {
    if (h.cpu) return !r.minGpuMemoryMiB;
    const q = h.gpus.filter((g) => fits(g, r.minGpuMemoryMiB));
    return r.gpusPerNode === 'all' ? q.length > 0 : q.length >= r.gpusPerNode;
  });
  if (able.length >= r.minNodes) return undefined;
  const biggest = Math.max(0, ...candidates.flatMap((h) => h.gpus.map((g) => g.memoryMiB)));
  if (r.minGpuMemoryMiB && biggest < r.minGpuMemoryMiB * MEMORY_SLACK) {
    return `asks for ${gib(r.minGpuMemoryMiB)} GPUs; the biggest GPU in the cluster has ${cardSize(biggest)}`;
  }
  const most = Math.max(0, ...candidates.map((h) => h.gpus.filter((g) => fits(g, r.minGpuMemoryMiB)).length));
  if (r.gpusPerNode !== 'all' && most < r.gpusPerNode) {
    return `asks for ${r.gpusPerNode} GPUs per node; no host has more than ${most} that qualify`;
  }
  return `asks for ${r.minNodes} nodes with ${perNode(r)}; only ${able.length} host(s) could ever take part`;
}

/**
 * Choose GPUs on one host from `free` for `r`: the smallest that qualify first (best fit keeps
 * big GPUs for jobs that need them). Undefined when the host cannot take it.
 */
function pickOnHost(r: Request, free: Gpu[], host?: HostSlots): Gpu[] | undefined {
  if (host?.cpu) return r.minGpuMemoryMiB ? undefined : [];
  const q = free
    .filter((g) => fits(g, r.minGpuMemoryMiB))
    .sort((a, b) => a.memoryMiB - b.memoryMiB || a.index - b.index);
  if (r.gpusPerNode === 'all') return q.length ? q.sort((a, b) => a.index - b.index) : undefined;
  if (q.length < r.gpusPerNode) return undefined;
  return q.slice(0, r.gpusPerNode).sort((a, b) => a.index - b.index);
}

/** For 'all', a host offers every qualifying GPU: all of them must be free. */
function wholeHostFree(r: Request, h: HostSlots, free: Gpu[]): boolean {
  if (r.gpusPerNode !== 'all') return true;
  const q = h.gpus.filter((g) => fits(g, r.minGpuMemoryMiB));
  return q.every((g) => free.some((f) => f.index === g.index));
}

function candidatesOf(r: Request, hosts: HostSlots[]): HostSlots[] {
  const rank = (n: string) => (r.prefer?.includes(n) ? r.prefer.indexOf(n) : (r.prefer?.length ?? 0));
  return (r.hosts ? hosts.filter((h) => r.hosts!.includes(h.host)) : hosts)
    .map((h, i) => ({ h, i }))
    .sort((a, b) => rank(a.h.host) - rank(b.h.host) || a.i - b.i)
    .map((x) => x.h);
}

/** Try to place `r` with the GPUs in `free` (host -> free GPUs). */
function tryPlace(
  r: Request,
  hosts: HostSlots[],
  free: Map<string, Gpu[]>,
  taken: Set<string> = new Set(),
): PlacedNode[] | undefined {
  const nodes: PlacedNode[] = [];
  for (const h of candidatesOf(r, hosts)) {
    if (h.unusable || nodes.length >= r.maxNodes) continue;
    const f = free.get(h.host) ?? [];
    if (!wholeHostFree(r, h, f)) continue;
    if (h.cpu && taken.has(h.host)) continue;
    const gpus = pickOnHost(r, f, h);
    if (gpus) nodes.push({ host: h.host, nodeRank: nodes.length, gpus });
  }
  return nodes.length >= r.minNodes ? nodes : undefined;
}

function take(free: Map<string, Gpu[]>, nodes: PlacedNode[], cpuTaken: Set<string>): void {
  for (const n of nodes) {
    cpuTaken.add(n.host);
    free.set(
      n.host,
      (free.get(n.host) ?? []).filter((g) => !n.gpus.some((x) => x.index === g.index)),
    );
  }
}

function freeGpus(hosts: HostSlots[], holdings: Holding[]): Map<string, Gpu[]> {
  const free = new Map<string, Gpu[]>();
  for (const h of hosts) {
    const held = new Set(holdings.filter((x) => x.host === h.host).flatMap((x) => x.gpus));
    free.set(
      h.host,
      h.gpus.filter((g) => !held.has(g.index)),
    );
  }
  return free;
}

/**
 * The fewest, lowest-priority victims whose GPUs (with what is free) let `r` start. A victim is
 * a run of lower priority that is preemptible and past its minimum runtime, or a backfill (a job
 * that jumped the queue) of no higher priority. Never one of equal or higher priority otherwise.
 */
function choosePreemption(
  r: Request,
  hosts: HostSlots[],
  free: Map<string, Gpu[]>,
  holdings: Holding[],
  now: number,
  cpuTaken: Set<string>,
): Holding[] | undefined {
  const byJob = new Map<string, Holding[]>();
  for (const h of holdings) {
    const ok =
      (h.backfill && h.priority <= r.priority) ||
      (h.preemptible && h.priority < r.priority && now - h.startedAt >= h.minRuntimeSeconds * 1000);
    if (ok) byJob.set(h.job, [...(byJob.get(h.job) ?? []), h]);
  }
  // Cheapest first: lowest priority, then fewest GPUs, then the smallest GPUs (big ones stay with
  // who has them), then the most recently started (least work lost).
  const mem = (hs: Holding[]) =>
    hs.reduce((n, x) => {
      const host = hosts.find((h) => h.host === x.host);
      return n + (host?.gpus.filter((g) => x.gpus.includes(g.index)).reduce((m, g) => m + g.memoryMiB, 0) ?? 0);
    }, 0);
  const jobs = [...byJob.entries()].sort(
    ([, a], [, b]) =>
      a[0].priority - b[0].priority ||
      a.reduce((n, x) => n + x.gpus.length, 0) - b.reduce((n, x) => n + x.gpus.length, 0) ||
      mem(a) - mem(b) ||
      b[0].startedAt - a[0].startedAt,
  );
  const victims: Holding[] = [];
  const pool = new Map<string, Gpu[]>([...free].map(([h, g]) => [h, [...g]]));
  for (const [, hs] of jobs) {
    for (const h of hs) {
      const host = hosts.find((x) => x.host === h.host);
      const add = host?.gpus.filter((g) => h.gpus.includes(g.index)) ?? [];
      pool.set(h.host, [...(pool.get(h.host) ?? []), ...add]);
    }
    victims.push(...hs);
    const takenNow = (vs: Holding[]) => new Set([...cpuTaken].filter((h) => !vs.some((v) => v.host === h)));
    if (tryPlace(r, hosts, pool, takenNow(victims))) {
      // Drop victims that turn out not to be needed (the fewest that suffice).
      for (const v of [...victims].reverse()) {
        const without = victims.filter((x) => x.job !== v.job);
        const p2 = new Map<string, Gpu[]>([...free].map(([h, g]) => [h, [...g]]));
        for (const w of without) {
          const host = hosts.find((x) => x.host === w.host);
          p2.set(w.host, [...(p2.get(w.host) ?? []), ...(host?.gpus.filter((g) => w.gpus.includes(g.index)) ?? [])]);
        }
        if (without.length < victims.length && tryPlace(r, hosts, p2, takenNow(without))) {
          victims.splice(0, victims.length, ...without);
        }
      }
      return victims;
    }
  }
  return undefined;
}

/** "needs 3 GPU(s) >= 8 GB on 3 host(s), 2 free: gpu1 busy with job a; behind head (priority 0)". */
function waitReason(
  r: Request,
  free: Map<string, Gpu[]>,
  hosts: HostSlots[],
  holdings: readonly Pick<Holding, 'host' | 'job'>[],
  head?: Request,
): string {
  const notes: string[] = [];
  let qualifying = 0;
  for (const h of candidatesOf(r, hosts)) {
    if (h.unusable) {
      notes.push(`${h.host} ${h.unusable}`);
      continue;
    }
    const q = h.gpus.filter((g) => fits(g, r.minGpuMemoryMiB));
    if (!h.cpu && !q.length) {
      notes.push(`${h.host} has no GPU${r.minGpuMemoryMiB ? ` with ${gib(r.minGpuMemoryMiB)}` : ''}`);
      continue;
    }
    const f = (free.get(h.host) ?? []).filter((g) => fits(g, r.minGpuMemoryMiB));
    qualifying += h.cpu ? (holdings.some((x) => x.host === h.host) ? 0 : 1) : f.length;
    const holders = [...new Set(holdings.filter((x) => x.host === h.host).map((x) => x.job))];
    if (holders.length && (h.cpu || f.length < (r.gpusPerNode === 'all' ? q.length : r.gpusPerNode))) {
      notes.push(`${h.host} busy with job ${holders.join(', ')}`);
    }
  }
  const need = r.gpusPerNode === 'all' ? `${r.minNodes} whole host(s)` : `${r.minNodes * r.gpusPerNode} GPU(s)`;
  const mem = r.minGpuMemoryMiB ? ` >= ${gib(r.minGpuMemoryMiB)}` : '';
  let why = `needs ${need}${mem} on ${r.minNodes} host(s), ${qualifying} free`;
  if (notes.length) why += `: ${notes.join('; ')}`;
  if (head) why += `; behind ${head.job} (priority ${head.priority})`;
  return why;
}

/** One pass over the whole queue. */
export function plan(input: PlanInput): Map<string, Decision> {
  const out = new Map<string, Decision>();
  const quota = QuotaPass.of(input.quota);
  const c = capped(input, quota);
  const free = freeGpus(input.hosts, c.holdings);
  // A CPU host (no GPU) goes whole to one job.
  const cpuTaken = new Set(c.holdings.map((h) => h.host));
  const order = [...c.requests].sort(queueOrder(input.usage));
  // GPUs promised to a preemptor (its victims'): nobody behind it may take them meanwhile.
  let holdings = [...c.holdings];
  /** The first job that had to wait: those behind it only backfill (if preemptible). */
  let head: Request | undefined;
  /** Jobs this pass placed: a waiting job's reason names them too, not just "0 free". */
  const placedNow: Pick<Holding, 'host' | 'job'>[] = [];
  const reasonHolders = () => [...holdings, ...placedNow];
  for (const r of order) {
    const never = neverFits(r, input.hosts);
    if (never) {
      out.set(r.job, { kind: 'never', why: never });
      continue;
    }
    // Over quota: waits (or never starts) before it can hold anyone back, preempt or backfill.
    const need = quota ? minGpus(r, input.hosts) : 0;
    const q = quota?.check(r.owner, need);
    if (q && q.kind !== 'ok') {
      out.set(r.job, quotaWait(q));
      // Held by queued_jobs itself: not one of the owner's queued jobs that count.
      if (q.kind === 'wait' && q.limit !== 'queuedJobs') quota!.queued(r.owner);
      continue;
    }
    const found = tryPlace(r, input.hosts, free, cpuTaken);
    // An elastic job takes only the nodes its owner's GPU limit leaves room for.
    const placed = found && quota ? withinGpus(r, found, quota.gpusLeft(r.owner)) : found;
    if (found && !placed && quota) {
      // Even its first minNodes nodes are more GPUs than the quota leaves ('all' on a big host).
      const over = quota.check(r.owner, gpuCount(found.slice(0, r.minNodes)));
      out.set(r.job, { kind: 'wait', why: over.kind === 'ok' ? '' : over.why, reason: 'QuotaExceeded' });
      quota.queued(r.owner);
      continue;
    }
    if (placed && (!head || r.preemptible)) {
      take(free, placed, cpuTaken);
      for (const n of placed) placedNow.push({ host: n.host, job: r.job });
      out.set(r.job, { kind: 'place', nodes: placed, backfill: !!head });
      quota?.started(r.owner, gpuCount(placed));
      continue;
    }
    quota?.queued(r.owner);
    if (placed && head) {
      out.set(r.job, { kind: 'wait', why: waitReason(r, free, input.hosts, reasonHolders(), head) });
      continue;
    }
    const victims = choosePreemption(r, input.hosts, free, holdings, input.now, cpuTaken);
    if (victims) {
      const names = [...new Set(victims.map((v) => v.job))];
      out.set(r.job, { kind: 'preempt', victims, why: `preempting ${names.join(', ')} for its GPUs` });
      // The victims' GPUs are this job's once free: take them out of everyone else's reach.
      holdings = holdings.filter((h) => !victims.includes(h));
      // ... and count against its owner's quota from now on, like a start.
      quota?.started(r.owner, need);
      continue;
    }
    out.set(r.job, { kind: 'wait', why: waitReason(r, free, input.hosts, reasonHolders(), head) });
    head ??= r;
  }
  for (const [job, note] of c.notes) {
    const d = out.get(job);
    if (d) out.set(job, { ...d, capped: note });
  }
  return out;
}
