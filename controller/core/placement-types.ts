/**
 * The shapes of placement (core/placement.ts): the hosts' GPUs, what holds them, a job's request,
 * the decision for it and the inputs of one pass. Apart from placement.ts so that its helpers
 * (placement-quota.ts) can use them without an import cycle; placement.ts re-exports them.
 */
import type { QuotaInput } from './quota.ts';

/** One GPU of a host, as health observed it (or the inventory declares it). */
export interface Gpu {
  index: number;
  name: string;
  memoryMiB: number;
}

export interface HostSlots {
  host: string;
  /** GPUs of the host. */
  gpus: Gpu[];
  /** A host with no GPU at all (CPU training): a job takes it whole, whatever its GPU count. */
  cpu?: boolean;
  /** Not schedulable now (NotReady, down, leased elsewhere): why. Undefined when usable. */
  unusable?: string;
}

/** GPUs held by a live run (or a launch in flight). */
export interface Holding {
  job: string;
  host: string;
  gpus: number[];
  priority: number;
  preemptible: boolean;
  /** When the current run started (ms): minRuntimeSeconds protects it until then + that. */
  startedAt: number;
  minRuntimeSeconds: number;
  /** Started ahead of a higher job that was waiting: always preemptible by that job. */
  backfill?: boolean;
  /** Run id, dir and hosts of the run, so a preemption can stop it. */
  runId: string;
  dir: string;
  /** Its spec's preemption.graceSeconds (time to checkpoint after SIGTERM). */
  graceSeconds?: number;
  /** Its job's owner: a quota's max_priority caps a running job's priority too (absent: no cap). */
  owner?: string;
}

export interface Request {
  job: string;
  priority: number;
  owner: string;
  /** Queue age: status createdAt, else file mtime (ISO). */
  createdAt: string;
  minNodes: number;
  maxNodes: number;
  /** GPUs per node; 'all' takes every qualifying GPU of a host (nprocPerNode: gpu without a count). */
  gpusPerNode: number | 'all';
  minGpuMemoryMiB: number;
  /** Only these hosts (spec.hosts). */
  hosts?: string[];
  /** Hosts to try first, in order (a restart's previous hosts, its checkpoint's holder). */
  prefer?: string[];
  preemptible: boolean;
}

export interface PlacedNode {
  host: string;
  nodeRank: number;
  gpus: Gpu[];
}

export type Decision = (
  | { kind: 'place'; nodes: PlacedNode[]; backfill: boolean }
  | { kind: 'preempt'; victims: Holding[]; why: string }
  /** reason QuotaExceeded: held by its owner's quota (why names the limit and the usage), not by GPUs. */
  | { kind: 'wait'; why: string; reason?: 'QuotaExceeded' }
  /** reason QuotaExceeded: it could never start within its owner's quota (the cluster would fit it). */
  | { kind: 'never'; why: string; reason?: 'QuotaExceeded' }
) & {
  /** Its priority was capped to its owner's max_priority: a sentence saying so. */
  capped?: string;
};

export interface PlanInput {
  requests: Request[];
  hosts: HostSlots[];
  holdings: Holding[];
  /** GPU-seconds per owner, decayed (see usage.ts): less goes first within a priority. */
  usage: Map<string, number>;
  now: number;
  /** The users: section and each owner's usage now; absent (or no limit set): no quota at all. */
  quota?: QuotaInput;
}

/** MiB rounding of nvidia-smi vs. the GiB people write: 3 % slack. */
export const MEMORY_SLACK = 0.97;

/** Does this GPU qualify for a request of `minMiB`? */
export const fits = (g: Gpu, minMiB: number) => g.memoryMiB >= minMiB * MEMORY_SLACK;
