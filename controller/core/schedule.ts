/** PURE placement: which hosts a new run gets, or why it waits; the rendezvous port; queue order. */
import { nodeRange, priorityValue, type TrainingJob } from '../api/trainingjob.ts';
import type { ClusterView, LaunchPart } from './types.ts';

/** MiB rounding of nvidia-smi vs. the GiB people write: 3 % slack. */
const MEMORY_SLACK = 0.97;

/**
 * Choose hosts for a new run, or say why not. `prefer` (a restart's previous hosts, the holder of
 * its checkpoint first) come first, in that order; the first chosen host is node rank 0.
 */
export function schedule(
  job: TrainingJob,
  view: ClusterView,
  prefer: readonly string[] = [],
): { parts: LaunchPart[] } | { waiting: string } {
  const spec = job.spec;
  const { min, max } = nodeRange(spec);
  const reasons: string[] = [];
  const eligible: LaunchPart[] = [];
  const rank = (n: string) => (prefer.includes(n) ? prefer.indexOf(n) : prefer.length);
  const candidates = (spec.hosts ? view.hosts.filter((h) => spec.hosts!.includes(h.name)) : view.hosts)
    .map((h, i) => ({ h, i }))
    .sort((a, b) => rank(a.h.name) - rank(b.h.name) || a.i - b.i)
    .map((x) => x.h);
  const unknown = (spec.hosts ?? []).filter((n) => !view.hosts.some((h) => h.name === n));
  if (unknown.length) {
    reasons.push(
      `spec.hosts names ${unknown.join(', ')}, not in the cluster file ` +
        `(hosts: ${view.hosts.map((h) => h.name).join(', ')})`,
    );
  }
  const minMiB = (spec.resources?.minGpuMemoryGiB ?? 0) * 1024;
  for (const h of candidates) {
    const foreign = view.foreign.get(h.name);
    if (foreign) {
      reasons.push(`${h.name} ${foreign}`);
      continue;
    }
    const down = view.down.get(h.name);
    if (down) {
      reasons.push(`${h.name} ${down}`);
      continue;
    }
    if (!view.ready.has(h.name)) {
      reasons.push(`${h.name} NotReady (${view.notReady.get(h.name) ?? 'not checked yet'})`);
      continue;
    }
    const holder = view.busy.get(h.name);
    if (holder && holder !== job.metadata.name) {
      reasons.push(`${h.name} busy with job ${holder}`);
      continue;
    }
    const gpus = view.gpus.get(h.name) ?? [];
    if (minMiB && !gpus.some((g) => g.memoryTotalMiB >= minMiB * MEMORY_SLACK)) {
      reasons.push(`${h.name} has no GPU with ${spec.resources!.minGpuMemoryGiB} GiB`);
      continue;
    }
    const nproc =
      spec.nprocPerNode === 'gpu'
        ? gpus.filter((g) => g.memoryTotalMiB >= minMiB * MEMORY_SLACK).length
        : spec.nprocPerNode;
    if (nproc < 1) {
      reasons.push(`${h.name} has no GPU (nprocPerNode: gpu)`);
      continue;
    }
    eligible.push({ host: h.name, nodeRank: 0, nproc });
  }
  if (view.ahead.length) {
    return {
      waiting: `waiting behind ${view.ahead.length} job(s) queued ahead (${view.ahead.slice(0, 3).join(', ')})`,
    };
  }
  if (eligible.length < min) {
    const need = `needs ${min} free Ready host${min === 1 ? '' : 's'}, ${eligible.length} available`;
    return { waiting: `${need}${reasons.length ? `: ${reasons.join('; ')}` : ''}` };
  }
  return { parts: eligible.slice(0, max).map((p, i) => ({ ...p, nodeRank: i })) };
}

/** The first port at or above the base that no live run or launch in flight uses. */
export function freePort(view: Pick<ClusterView, 'basePort' | 'usedPorts'>): number {
  let p = view.basePort;
  while (view.usedPorts.has(p)) p++;
  return p;
}

/** Queue order: higher priority first, then older, then by name. */
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
