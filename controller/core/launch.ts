/** PURE: the exact argv and environment of one node's torchrun, and where its checkpoints go. */
import { posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import type { Gpu } from './placement.ts';
import type { AfterCheckpoint, RankBatch } from './types.ts';

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
  /** The GPUs this node was given: CUDA_VISIBLE_DEVICES (local rank i uses the i-th). */
  gpus?: Gpu[];
  /** Per local rank: its share of the global batch. */
  batches?: RankBatch[];
}

/**
 * torchrun's own main (torch.distributed.run), but a torchrun that fails or is stopped exits the
 * moment its work is done (workers stopped, exit barrier, rendezvous closed): the traceback as
 * Python prints it, then os._exit, without the interpreter's teardown of torch (0.3-0.6 s on the
 * lab, while its TCPStore client threads spin on a core once the store host is gone). The gang
 * is then gone that much sooner (npm run bench, recovery). A success exits normally: the store
 * host's torchrun must outlive its peers' closing of the rendezvous. Fixed text, no values.
 */
const TORCHRUN_MAIN = [
  'import os, sys, traceback',
  'from torch.distributed.run import main',
  'try:',
  '    main()',
  'except SystemExit:',
  '    raise',
  'except BaseException:',
  '    traceback.print_exc()',
  '    sys.stdout.flush()',
  '    sys.stderr.flush()',
  '    os._exit(1)',
].join('\n');

/**
 * torchrun (TORCHRUN_MAIN: torch.distributed.run, same interpreter as training), underscore
 * flag spellings (torch 1.13 knows only those), c10d with is_host=1 on exactly the endpoint's
 * node (c10d's own guess fails on multi-NIC hosts), UGRO-level restarts (--max_restarts=0),
 * and --no_python + rank.sh so each global rank logs to its own file without --redirects/--tee.
 */
export function torchrunArgv(job: TrainingJob, n: NodeLaunch): string[] {
  const target = trainingTarget(job, n.host);
  return [
    n.host.python,
    '-c',
    TORCHRUN_MAIN,
    `--nnodes=${n.nnodes}`,
    `--nproc_per_node=${n.nproc}`,
    `--node_rank=${n.nodeRank}`,
    '--rdzv_backend=c10d',
    `--rdzv_endpoint=${n.rdzvAddr}:${n.port}`,
    `--rdzv_id=${n.runId}`,
    `--rdzv_conf=is_host=${n.nodeRank === 0 ? 1 : 0},join_timeout=${n.rdzvTimeoutSeconds}`,
    '--max_restarts=0',
    // torch looks at its ranks every 5 s by default. A rank that fails ends torchrun itself
    // (rank.sh), so this is for the rest (ranks done, a rank.sh killed): 0.5 s. Each look costs
    // CPU (0.1 s: ~0.25% of a core per torchrun on the lab, taken from training; npm run bench).
    '--monitor_interval=0.5',
    '--no_python',
    posix.join(n.runDir, 'rank.sh'),
    ...target,
  ];
}

/** What each rank runs: `<python> -u <paths.scripts>/<script> ARGS`, or `command + args`. */
export function trainingTarget(job: TrainingJob, host: Pick<Host, 'python' | 'paths'>): string[] {
  const spec = job.spec;
  return spec.script
    ? [host.python, '-u', posix.join(host.paths.scripts, spec.script), ...spec.args]
    : [...spec.command!, ...spec.args];
}

/**
 * Where a job's checkpoints live on `host`. A relative checkpoint.dir is under the host's
 * paths.checkpoints (ranks run in a per-attempt run dir, so leaving it relative would give every
 * attempt its own); an absolute one must be under paths.checkpoints or a paths.checkpoint_roots
 * entry, since train.py loads (torch.load) whatever it finds there.
 */
export function checkpointDir(job: TrainingJob, host: Host): { ok: true; path: string } | { ok: false; why: string } {
  const dir = job.spec.checkpoint?.dir;
  const base = host.paths.checkpoints;
  if (!dir) return { ok: true, path: posix.join(base, job.metadata.name) };
  if (!dir.startsWith('/')) return { ok: true, path: posix.join(base, dir) };
  const path = posix.normalize(dir);
  const roots = [base, ...host.paths.checkpointRoots];
  if (roots.some((r) => path === r || path.startsWith(`${r.replace(/\/+$/, '')}/`))) return { ok: true, path };
  return {
    ok: false,
    why:
      `spec.checkpoint.dir: ${dir} is outside ${host.name}'s checkpoint roots (${roots.join(', ')}): ` +
      'use a relative path (under paths.checkpoints), ' +
      'or list the directory under paths.checkpoint_roots in the cluster file',
  };
}

/**
 * Variables UGRO sets for the training processes (besides torch's RANK, WORLD_SIZE, …). A restart
 * resumes from `resumeFrom` (the newest complete checkpoint), else the spec's checkpoint.resumeFrom.
 * Collectives are made to fail instead of hanging: NCCL's async error handling is on, and with a
 * progress deadline the collective timeout (UGRO_COLLECTIVE_TIMEOUT_SECONDS, read by train.py for
 * init_process_group) is that deadline. A value the job's own env sets wins for the NCCL ones.
 */
export function ugroEnv(
  job: TrainingJob,
  n: NodeLaunch,
  checkpoint: string,
  restart: { resumeFrom?: string; restartCount?: number } = {},
): Record<string, string> {
  const resume = restart.resumeFrom ?? job.spec.checkpoint?.resumeFrom;
  const progress = job.spec.failurePolicy.progressDeadlineSeconds;
  const env = job.spec.env;
  return {
    PYTHONUNBUFFERED: '1',
    ...(env.TORCH_NCCL_ASYNC_ERROR_HANDLING === undefined ? { TORCH_NCCL_ASYNC_ERROR_HANDLING: '1' } : {}),
    // The same switch under its name before torch 2.2.
    ...(env.NCCL_ASYNC_ERROR_HANDLING === undefined ? { NCCL_ASYNC_ERROR_HANDLING: '1' } : {}),
    UGRO_JOB: job.metadata.name,
    UGRO_RUN_ID: n.runId,
    UGRO_ATTEMPT: String(n.attempt),
    UGRO_RESTART_COUNT: String(restart.restartCount ?? Math.max(0, n.attempt - 1)),
    UGRO_CHECKPOINT_DIR: checkpoint,
    UGRO_METRICS_FILE: posix.join(n.runDir, 'metrics.jsonl'),
    ...(resume ? { UGRO_RESUME_FROM: resume } : {}),
    // Only the GPUs placement gave this node: local rank i (cuda:i) is the i-th of them.
    ...(n.gpus?.length ? { CUDA_VISIBLE_DEVICES: n.gpus.map((g) => g.index).join(',') } : {}),
    // Per local rank (rank.sh exports the LOCAL_RANK-th of each as UGRO_RANK_BATCH, …).
    ...(job.spec.batch && n.batches?.length
      ? {
          UGRO_GLOBAL_BATCH: String(job.spec.batch.global),
          UGRO_RANK_BATCHES: n.batches.map((b) => b.batch).join(','),
          UGRO_RANK_OFFSETS: n.batches.map((b) => b.offset).join(','),
          UGRO_MICRO_BATCHES: n.batches.map((b) => b.micro).join(','),
          UGRO_GRAD_ACCUMS: n.batches.map((b) => b.accum).join(','),
        }
      : {}),
    // Longer than the deadline: a stalled rank is found (and named) by its heartbeat first.
    ...(progress ? { UGRO_COLLECTIVE_TIMEOUT_SECONDS: String(progress * 2 + 30) } : {}),
  };
}

/** spec.after: `prep-data` -> UGRO_AFTER_PREP_DATA_CHECKPOINT (a DNS label has no `_`: no two names meet). */
export function afterEnvName(job: string): string {
  return `UGRO_AFTER_${job.toUpperCase().replace(/-/g, '_')}_CHECKPOINT`;
}

/** spec.after: each producer's checkpoint file as a part on `host` finds it (core/steps/dependencies.ts). */
export function afterEnv(after: readonly AfterCheckpoint[] | undefined, host: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const c of after ?? []) {
    const dir = c.dirs[host];
    if (dir) env[afterEnvName(c.job)] = posix.join(dir, `${c.name}.pt`);
  }
  return env;
}
