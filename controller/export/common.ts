/**
 * PURE: what every export shares: the training command as a container runs it (torchrun reading
 * the launcher's PET_* variables), the job's env plus the UGRO_* variables a script may read,
 * the GPU count per node, and the list of what UGRO does for the job that the target cannot
 * (written at the top of the output, never dropped silently).
 */
import { posix } from 'node:path';
import { nodeRange, type TrainingJob } from '../api/trainingjob.ts';

export type ExportTarget = 'sbatch' | 'pytorchjob' | 'trainjob';
export const EXPORT_TARGETS: readonly ExportTarget[] = ['sbatch', 'pytorchjob', 'trainjob'];

/** Where a container image is expected to hold the project (scripts/ under it). */
const WORKDIR = '/workspace';
/** The default image when --image is not given (the torch-distributed runtime's own). */
export const DEFAULT_IMAGE = 'pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime';

/** In a container: torchrun takes nnodes, node rank, master and nproc from the launcher's PET_* env. */
export function containerCommand(job: TrainingJob): { command: string[]; args: string[] } {
  const s = job.spec;
  if (s.script) return { command: ['torchrun', posix.join(WORKDIR, 'scripts', s.script)], args: [...s.args] };
  return { command: ['torchrun', '--no_python', ...s.command!], args: [...s.args] };
}

/** The job's env, then what UGRO would set that still means something there (never UGRO's own bookkeeping). */
export function containerEnv(job: TrainingJob): { name: string; value: string }[] {
  const s = job.spec;
  const ugro: Record<string, string> = {
    PYTHONUNBUFFERED: '1',
    UGRO_JOB: job.metadata.name,
    UGRO_ATTEMPT: '1',
    UGRO_RESTART_COUNT: '0',
    UGRO_CHECKPOINT_DIR: checkpointPath(job),
    ...(s.checkpoint?.resumeFrom ? { UGRO_RESUME_FROM: s.checkpoint.resumeFrom } : {}),
    ...(s.failurePolicy.progressDeadlineSeconds
      ? { UGRO_COLLECTIVE_TIMEOUT_SECONDS: String(s.failurePolicy.progressDeadlineSeconds * 2 + 30) }
      : {}),
  };
  return [
    ...Object.entries(s.env).map(([name, value]) => ({ name, value })),
    ...Object.entries(ugro)
      .filter(([k]) => !(k in s.env))
      .map(([name, value]) => ({ name, value })),
  ];
}

/** UGRO_CHECKPOINT_DIR in a container: an absolute checkpoint.dir as it is, else under /workspace/checkpoints. */
function checkpointPath(job: TrainingJob): string {
  const d = job.spec.checkpoint?.dir;
  if (d?.startsWith('/')) return posix.normalize(d);
  return posix.join(WORKDIR, 'checkpoints', d ?? job.metadata.name);
}

/** GPUs each node asks for: resources.gpusPerNode, else one per rank (nprocPerNode: gpu: one). */
export function gpusPerNode(job: TrainingJob): number {
  const s = job.spec;
  return s.resources?.gpusPerNode ?? (s.nprocPerNode === 'gpu' ? 1 : s.nprocPerNode);
}

/**
 * What UGRO does for this job that `target` has no equivalent for. Always: its GPU placement and
 * its hang and node-loss detection; the rest when the spec uses it.
 */
export function notMapped(job: TrainingJob, target: ExportTarget): string[] {
  const s = job.spec;
  const k8s = target !== 'sbatch';
  const out: string[] = [];
  out.push(
    k8s
      ? 'VRAM-aware placement (best fit by GPU memory, CUDA_VISIBLE_DEVICES per node): the scheduler ' +
          'places pods by the nvidia.com/gpu count alone'
      : 'VRAM-aware placement (best fit by GPU memory): Slurm places by node count' +
          (s.resources?.minGpuMemoryGiB ? '; add a --constraint for the GPU model' : ''),
  );
  if (s.resources?.minGpuMemoryGiB)
    out.push(
      `resources.minGpuMemoryGiB (${s.resources.minGpuMemoryGiB}): not expressible; use a node selector or constraint`,
    );
  out.push(
    'hang detection (UGRO_HEARTBEAT_FILE, failurePolicy.progressDeadlineSeconds' +
      `${s.failurePolicy.progressDeadlineSeconds ? `: ${s.failurePolicy.progressDeadlineSeconds} s` : ''}): ` +
      'a rank that hangs is not stopped by the target; UGRO_COLLECTIVE_TIMEOUT_SECONDS is set when a deadline is',
  );
  out.push(
    `node-loss detection (failurePolicy.nodeLostSeconds: ${s.failurePolicy.nodeLostSeconds} s): ` +
      (k8s ? 'the kubelet and the operator decide when a pod is lost' : 'Slurm decides (NODE_FAIL, then --requeue)'),
  );
  out.push(
    'checkpoint copying between hosts and resuming every restart from the newest checkpoint: ' +
      (k8s
        ? `mount shared storage at ${checkpointPath(job)} (UGRO_CHECKPOINT_DIR), and resume in the script`
        : 'the run dir and checkpoints must be on storage the nodes share; a requeue resumes from `latest`'),
  );
  out.push(
    `restart budgets per class (maxRestarts ${s.restartPolicy.maxRestarts}, maxInfraRestarts ` +
      `${s.restartPolicy.maxInfraRestarts}) and backoffSeconds (${s.restartPolicy.backoffSeconds})` +
      (k8s ? ': one backoffLimit counts both' : ': Slurm requeues only after a node failure or a preemption'),
  );
  const codes = s.restartPolicy.exitCodes;
  if (codes.fatal.length || codes.retry.length)
    out.push(
      `restartPolicy.exitCodes (fatal ${codes.fatal.join(',') || '-'}, retry ${codes.retry.join(',') || '-'})` +
        (k8s ? ": PyTorchJob's ExitCode policy retries 128-255 only" : ': no per-code policy'),
    );
  if (s.hosts) out.push(`spec.hosts (${s.hosts.join(', ')}): inventory names, not the target's nodes`);
  if (k8s) out.push(`priority (${s.priority}): needs a PriorityClass of your cluster (schedulingPolicy.priorityClass)`);
  if (s.batch) out.push('spec.batch (per-rank batch shares by GPU memory): UGRO_RANK_BATCH and friends are not set');
  if (s.preemption || !s.preemptible) out.push("preemption settings: the target's own preemption applies");
  if (target === 'trainjob' && s.activeDeadlineSeconds)
    out.push(`activeDeadlineSeconds (${s.activeDeadlineSeconds}): TrainJob v1alpha1 (this CRD) has no such field`);
  if (target === 'trainjob' && typeof s.nodes !== 'number')
    out.push(
      `nodes {min: ${nodeRange(s).min}, max: ${nodeRange(s).max}}: a TrainJob runs numNodes ${nodeRange(s).max}`,
    );
  if (k8s && s.script)
    out.push(`scripts/: the image must hold the project's scripts at ${posix.join(WORKDIR, 'scripts')}`);
  return out;
}

/** The comment block at the top of an export: what it is, and what it leaves out. */
export function header(job: TrainingJob, target: ExportTarget, made: string): string[] {
  return [
    `${made} by \`ugro export job ${job.metadata.name} --to ${target}\` from the TrainingJob ${job.metadata.name}.`,
    'Not carried over (UGRO does these; this target has no equivalent):',
    ...notMapped(job, target).map((n) => `  - ${n}`),
  ];
}
