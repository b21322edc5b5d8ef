/** PURE: the exact argv and environment of one node's torchrun. */
import { posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import type { TrainingJob } from '../api/trainingjob.ts';

export interface NodeLaunch {
  host: Host;
  nodeRank: number;
  nnodes: number;
  nproc: number;
  rdzvAddr: string;
  port: number;
  runId: string;
  runDir: string;
  attempt: number;
  rdzvTimeoutSeconds: number;
}

/**
 * torchrun via `python -m torch.distributed.run` (same interpreter as training), underscore
 * flag spellings (torch 1.13 knows only those), c10d with is_host=1 on exactly the endpoint's
 * node (c10d's own guess fails on multi-NIC hosts), UGRO-level restarts (--max_restarts=0),
 * and --no_python + rank.sh so each global rank logs to its own file without --redirects/--tee.
 */
export function torchrunArgv(job: TrainingJob, n: NodeLaunch): string[] {
  const spec = job.spec;
  const target = spec.script
    ? [n.host.python, '-u', posix.join(n.host.paths.scripts, spec.script), ...spec.args]
    : [...spec.command!, ...spec.args];
  return [
    n.host.python,
    '-m',
    'torch.distributed.run',
    `--nnodes=${n.nnodes}`,
    `--nproc_per_node=${n.nproc}`,
    `--node_rank=${n.nodeRank}`,
    '--rdzv_backend=c10d',
    `--rdzv_endpoint=${n.rdzvAddr}:${n.port}`,
    `--rdzv_id=${n.runId}`,
    `--rdzv_conf=is_host=${n.nodeRank === 0 ? 1 : 0},join_timeout=${n.rdzvTimeoutSeconds}`,
    '--max_restarts=0',
    '--no_python',
    posix.join(n.runDir, 'rank.sh'),
    ...target,
  ];
}

export function launchEnv(job: TrainingJob, n: NodeLaunch): Record<string, string> {
  // A relative dir is under the host's checkpoints path: ranks run in a per-attempt run
  // directory, so leaving it relative would give every attempt (and every restart) its own.
  const dir = job.spec.checkpoint?.dir;
  const ckpt = dir
    ? posix.resolve(n.host.paths.checkpoints, dir)
    : posix.join(n.host.paths.checkpoints, job.metadata.name);
  return {
    ...job.spec.env,
    PYTHONUNBUFFERED: '1',
    UGRO_JOB: job.metadata.name,
    UGRO_RUN_ID: n.runId,
    UGRO_ATTEMPT: String(n.attempt),
    UGRO_CHECKPOINT_DIR: ckpt,
    UGRO_METRICS_FILE: posix.join(n.runDir, 'metrics.jsonl'),
    ...(job.spec.checkpoint?.resumeFrom ? { UGRO_RESUME_FROM: job.spec.checkpoint.resumeFrom } : {}),
  };
}
