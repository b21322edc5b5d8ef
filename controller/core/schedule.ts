/**
 * PURE: a job's placement request, the cluster as placement sees it (GPUs per host, what holds
 * them, which hosts cannot be used now), the decision for a single job when the controller has
 * not made one over the whole queue, and the rendezvous port (the per-rank batch split: batch.ts).
 */
import type { Host } from '../../config/cluster.ts';
import { OWNER_ANNOTATION } from '../api/annotations.ts';
import { nodeRange, priorityValue, type TrainingJob } from '../api/trainingjob.ts';
import { type Decision, type Gpu, type Holding, type HostSlots, plan, type Request } from './placement.ts';
import type { ClusterView, LaunchPart } from './types.ts';

/** Who a job belongs to for fair share when its status does not say: its annotation, else 'unknown'. */
export function ownerOf(job: TrainingJob): string {
  return job.metadata.annotations?.[OWNER_ANNOTATION]?.slice(0, 512) || 'unknown';
}

/** GPUs per node a job asks for: resources.gpusPerNode, else nprocPerNode (one GPU a rank). */
function gpusPerNode(job: TrainingJob): number | 'all' {
  const s = job.spec;
  return s.resources?.gpusPerNode ?? (s.nprocPerNode === 'gpu' ? 'all' : s.nprocPerNode);
}

export function requestOf(
  job: TrainingJob,
  o: { createdAt: string; owner?: string; prefer?: readonly string[] },
): Request {
  const { min, max } = nodeRange(job.spec);
  return {
    job: job.metadata.name,
    priority: priorityValue(job.spec.priority),
    owner: o.owner ?? ownerOf(job),
    createdAt: o.createdAt,
    minNodes: min,
    maxNodes: max,
    gpusPerNode: gpusPerNode(job),
    minGpuMemoryMiB: (job.spec.resources?.minGpuMemoryGiB ?? 0) * 1024,
    ...(job.spec.hosts ? { hosts: job.spec.hosts } : {}),
    ...(o.prefer?.length ? { prefer: [...o.prefer] } : {}),
    preemptible: job.spec.preemptible,
  };
}

/** A host's GPUs: what health saw, else what the inventory declares; none at all: a CPU host. */
export function gpusOf(host: Host, observed?: { index?: number; name?: string; memoryTotalMiB: number }[]): Gpu[] {
  if (observed?.length) {
    return observed.map((g, i) => ({ index: g.index ?? i, name: g.name ?? '', memoryMiB: g.memoryTotalMiB }));
  }
  return host.gpus.map((g, i) => ({ index: g.index ?? i, name: g.model, memoryMiB: (g.vramGb ?? 0) * 1024 }));
}

/** The hosts as placement sees them, from the cluster view (a Slurm login host is none of them). */
function slotsOf(view: ClusterView): HostSlots[] {
  return view.hosts
    .filter((h) => !h.slurm)
    .map((h) => {
      const gpus = gpusOf(h, view.gpus.get(h.name));
      const unusable =
        view.foreign.get(h.name) ??
        view.down.get(h.name) ??
        (view.ready.has(h.name) ? undefined : `NotReady (${view.notReady.get(h.name) ?? 'not checked yet'})`);
      return { host: h.name, gpus, ...(gpus.length ? {} : { cpu: true }), ...(unusable ? { unusable } : {}) };
    });
}

/**
 * A single job's decision from the view alone (no queue): hosts another job holds are held
 * whole and never preempted. The controller normally passes a decision made over the whole queue.
 */
export function schedule(job: TrainingJob, view: ClusterView, prefer: readonly string[] = []): Decision {
  if (runsOnSlurm(job, view.hosts)) return placeOnSlurm(job, view);
  if (view.ahead.length) {
    return {
      kind: 'wait',
      why: `waiting behind ${view.ahead.length} job(s) queued ahead (${view.ahead.slice(0, 3).join(', ')})`,
    };
  }
  const hosts = slotsOf(view);
  const holdings: Holding[] = [];
  for (const [host, holder] of view.busy) {
    if (holder === job.metadata.name) continue;
    const h = hosts.find((x) => x.host === host);
    holdings.push({
      job: holder,
      host,
      gpus: h?.gpus.map((g) => g.index) ?? [],
      priority: Number.POSITIVE_INFINITY,
      preemptible: false,
      startedAt: 0,
      minRuntimeSeconds: 0,
      runId: '',
      dir: '',
    });
  }
  const req = requestOf(job, { createdAt: '', prefer });
  return plan({ requests: [req], hosts, holdings, usage: new Map(), now: 0 }).get(job.metadata.name)!;
}

/**
 * Whether `job` runs on the Slurm cluster: `spec.backend`, else the cluster file's `slurm.default`.
 * Such a job is never part of a placement over the GPUs of the inventory's hosts.
 */
export function runsOnSlurm(job: TrainingJob, hosts: readonly Pick<Host, 'slurm'>[]): boolean {
  const b = job.spec.backend;
  return b ? b === 'slurm' : hosts.some((h) => h.slurm?.default);
}

/**
 * A Slurm job is one part on the Slurm cluster's host (its login host): the allocation of
 * `nodes` nodes is Slurm's to make, and Slurm queues it, so neither busy hosts nor jobs ahead
 * hold it back here. It waits only while the login host cannot take it.
 */
function placeOnSlurm(job: TrainingJob, view: ClusterView): Decision {
  const h = view.hosts.find((x) => x.slurm);
  if (!h?.slurm) return { kind: 'never', why: 'spec.backend is slurm, but the cluster file has no slurm: section' };
  if (job.spec.nprocPerNode === 'gpu' && !(job.spec.resources?.gpusPerNode ?? h.slurm.gpusPerNode))
    return {
      kind: 'never',
      why: 'nprocPerNode: gpu on Slurm needs resources.gpusPerNode, or slurm.gpus_per_node in the cluster file',
    };
  const unusable =
    view.foreign.get(h.name) ??
    view.down.get(h.name) ??
    (view.ready.has(h.name) ? undefined : `NotReady (${view.notReady.get(h.name) ?? 'not checked yet'})`);
  if (unusable) return { kind: 'wait', why: `Slurm login host ${h.name}: ${unusable}` };
  return { kind: 'place', nodes: [{ host: h.name, nodeRank: 0, gpus: [] }], backfill: false };
}

/** The launch parts of a placement: node ranks in order, ranks per node from nprocPerNode. */
export function partsOf(job: TrainingJob, nodes: { host: string; nodeRank: number; gpus: Gpu[] }[]): LaunchPart[] {
  return nodes.map((n) => ({
    host: n.host,
    nodeRank: n.nodeRank,
    nproc: job.spec.nprocPerNode === 'gpu' ? Math.max(1, n.gpus.length) : job.spec.nprocPerNode,
    ...(n.gpus.length ? { gpus: n.gpus } : {}),
  }));
}

/** The first port at or above the base that no live run or launch in flight uses. */
export function freePort(view: Pick<ClusterView, 'basePort' | 'usedPorts'>): number {
  let p = view.basePort;
  while (view.usedPorts.has(p)) p++;
  return p;
}

/** Queue order of the old single-job path: higher priority first, then older, then by name. */
export function queueOrder(
  a: { priority: TrainingJob['spec']['priority']; createdAt: string; name: string },
  b: typeof a,
): number {
  return (
    priorityValue(b.priority) - priorityValue(a.priority) ||
    a.createdAt.localeCompare(b.createdAt) ||
    a.name.localeCompare(b.name)
  );
}
