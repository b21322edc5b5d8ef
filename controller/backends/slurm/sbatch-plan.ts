/**
 * PURE: what a TrainingJob asks of Slurm (nodes, ranks per node, GPUs, partition, account, QOS,
 * nice, time limit, requeue, the signal before the limit), from its spec and the cluster file's
 * `slurm:` section. Every field is a checked number or a name that passed config/slurm.ts's
 * patterns: batch.ts writes them into #SBATCH lines as they are.
 */
import type { SlurmSettings } from '../../../config/slurm.ts';
import { nodeRange, priorityValue, type TrainingJob } from '../../api/trainingjob.ts';

export interface SlurmPlan {
  /** --nodes=MIN or MIN-MAX (nodes: {min, max}: Slurm picks within the range; torchrun follows). */
  nodes: { min: number; max: number };
  /** torchrun's --nproc_per_node on every node. */
  nproc: number;
  gpusPerNode?: number;
  partition?: string;
  account?: string;
  qos?: string;
  /** --nice from the job's priority (0 is the highest an unprivileged user may ask). */
  nice?: number;
  /** --time in minutes, from activeDeadlineSeconds. */
  timeMinutes?: number;
  /** Slurm may requeue it after a node failure or a preemption (the restart policy allows restarts). */
  requeue: boolean;
  /** --signal=TERM@N: seconds before the time limit the ranks get SIGTERM (time to checkpoint). */
  signalSeconds: number;
  /** Extra #SBATCH lines of the cluster file (already checked). */
  extra: string[];
  /** The first rendezvous port tried on the first node. */
  rdzvPort: number;
  /** c10d join timeout (communication.timeout_seconds, at most 600). */
  joinTimeoutSeconds: number;
}

/** Named priority class of a priority value (integers: >= 100 high, <= -100 low). */
function priorityClass(p: number): 'high' | 'normal' | 'low' {
  return p >= 100 ? 'high' : p <= -100 ? 'low' : 'normal';
}

/**
 * --nice for a priority: high (100) and above 0, normal 100, low 200, integers in between
 * (`max(0, 100 - p)`): Slurm lets an unprivileged user only lower a job's priority.
 */
export function niceOf(priority: number): number {
  return Math.max(0, 100 - priority);
}

export function slurmPlan(
  job: TrainingJob,
  s: SlurmSettings,
  o: { rdzvTimeoutSeconds: number; nproc?: number },
): SlurmPlan {
  const spec = job.spec;
  const p = priorityValue(spec.priority);
  const gpusPerNode = spec.resources?.gpusPerNode ?? s.gpusPerNode;
  const nproc = spec.nprocPerNode === 'gpu' ? (gpusPerNode ?? 1) : (o.nproc ?? spec.nprocPerNode);
  const qos = s.priority.qos[priorityClass(p)] ?? s.qos;
  const deadline = spec.activeDeadlineSeconds;
  const rp = spec.restartPolicy;
  return {
    nodes: nodeRange(spec),
    nproc,
    ...(gpusPerNode ? { gpusPerNode } : {}),
    ...(s.partition ? { partition: s.partition } : {}),
    ...(s.account ? { account: s.account } : {}),
    ...(qos ? { qos } : {}),
    ...(s.priority.nice ? { nice: niceOf(p) } : {}),
    ...(deadline ? { timeMinutes: Math.max(1, Math.ceil(deadline / 60)) } : {}),
    requeue: rp.maxRestarts + rp.maxInfraRestarts > 0,
    signalSeconds: Math.min(3600, Math.max(60, Math.ceil(spec.preemption?.graceSeconds ?? 60))),
    extra: [...s.sbatch],
    rdzvPort: s.rdzvPort,
    joinTimeoutSeconds: Math.max(1, Math.min(600, Math.round(o.rdzvTimeoutSeconds))),
  };
}
