/**
 * PURE: the quota side of one placement pass (core/placement.ts, core/quota.ts): priorities capped
 * to each owner's max_priority, the fewest GPUs a job could ever take (what its quota must allow),
 * and an elastic placement cut down to the GPUs its owner has left.
 */
import {
  type Decision,
  fits,
  type HostSlots,
  type PlacedNode,
  type PlanInput,
  type Request,
} from './placement-types.ts';
import { capPriority, type QuotaDecision, type QuotaPass } from './quota.ts';

/**
 * The fewest GPUs any placement of `r` takes (a CPU host none, 'all' a host's qualifying ones):
 * what its owner's quota must allow for it ever to start. `r` fits the cluster (neverFits).
 */
export function minGpus(r: Request, hosts: HostSlots[]): number {
  if (r.gpusPerNode !== 'all' && !hosts.some((h) => h.cpu)) return r.minNodes * r.gpusPerNode;
  const per: number[] = [];
  for (const h of r.hosts ? hosts.filter((x) => r.hosts!.includes(x.host)) : hosts) {
    if (h.cpu) {
      if (!r.minGpuMemoryMiB) per.push(0);
      continue;
    }
    const q = h.gpus.filter((g) => fits(g, r.minGpuMemoryMiB)).length;
    if (r.gpusPerNode === 'all' ? q > 0 : q >= r.gpusPerNode) per.push(r.gpusPerNode === 'all' ? q : r.gpusPerNode);
  }
  return per
    .sort((a, b) => a - b)
    .slice(0, r.minNodes)
    .reduce((a, b) => a + b, 0);
}

export const gpuCount = (nodes: PlacedNode[]) => nodes.reduce((n, x) => n + x.gpus.length, 0);

/** The first nodes of a placement that stay within `left` GPUs, if that is still at least minNodes. */
export function withinGpus(r: Request, nodes: PlacedNode[], left: number): PlacedNode[] | undefined {
  let k = 0;
  for (let sum = 0; k < nodes.length && sum + nodes[k].gpus.length <= left; k++) sum += nodes[k].gpus.length;
  return k >= r.minNodes ? nodes.slice(0, k) : undefined;
}

/** A quota's wait or never as placement's decision. */
export function quotaWait(q: Exclude<QuotaDecision, { kind: 'ok' }>): Decision {
  return { kind: q.kind, why: q.why, reason: q.reason };
}

/** Priorities capped to each owner's max_priority: the requests, the holdings, and a note per capped job. */
export function capped(input: PlanInput, quota: QuotaPass | undefined) {
  const notes = new Map<string, string>();
  if (!quota) return { requests: input.requests, holdings: input.holdings, notes };
  const requests = input.requests.map((r) => {
    const c = capPriority(quota.limitsOf(r.owner), r.priority);
    if (!c.note) return r;
    notes.set(r.job, c.note);
    return { ...r, priority: c.priority };
  });
  // A claim (a launch in flight) or another controller's run is never preemptible: left alone.
  const holdings = input.holdings.map((h) => {
    if (h.owner === undefined || !Number.isFinite(h.priority)) return h;
    const p = capPriority(quota.limitsOf(h.owner), h.priority).priority;
    return p === h.priority ? h : { ...h, priority: p };
  });
  return { requests, holdings, notes };
}
