/**
 * PURE: `ugro export job NAME --to sbatch|pytorchjob|trainjob`: the text written out. Each starts
 * with a comment listing what UGRO does for the job that the target cannot (common.ts).
 *
 * sbatch is the batch script the Slurm backend submits (slurm/batch.ts), for the cluster file's
 * `slurm:` section when it has one (else Slurm's defaults, python from `environment.python`):
 * submit it from an empty directory on storage the nodes share; that directory is the run dir.
 */
import { stringify } from 'yaml';
import type { Cluster } from '../../config/cluster.ts';
import { slurmSettings } from '../../config/slurm.ts';
import { runIdOf } from '../api/run.ts';
import { specHash, type TrainingJob } from '../api/trainingjob.ts';
import { type BatchScripts, batchScript } from '../backends/slurm/batch.ts';
import { slurmPlan } from '../backends/slurm/sbatch-plan.ts';
import { slurmScripts } from '../backends/slurm/scripts.ts';
import { checkpointDir, trainingTarget, ugroEnv } from '../core/launch.ts';
import { type ExportTarget, header } from './common.ts';
import { pytorchJob, trainJob } from './kubeflow.ts';

export function exportJob(
  job: TrainingJob,
  cluster: Cluster,
  to: ExportTarget,
  o: { image?: string; scripts?: BatchScripts } = {},
): string {
  if (to === 'sbatch') return sbatchExport(job, cluster, o.scripts);
  const obj = to === 'pytorchjob' ? pytorchJob(job, o) : trainJob(job, o);
  const notes = header(job, to, 'Written').map((l) => `# ${l}`.trimEnd());
  return `${notes.join('\n')}\n${stringify(obj, { lineWidth: 0 })}`;
}

function sbatchExport(job: TrainingJob, cluster: Cluster, scripts?: BatchScripts): string {
  const host = cluster.slurm ?? cluster.master;
  const settings =
    cluster.slurm?.slurm ??
    slurmSettings({
      name: 'slurm',
      login: { hostname: host.hostname, ip: host.address, user: host.user, port: host.port },
      default: false,
      sbatch: [],
      priority: { nice: true },
      poll_seconds: 2,
      accounting: false,
      rdzv_port: cluster.communication.masterPort,
    });
  const hash = specHash(job.spec);
  const runId = runIdOf(job.metadata.name, hash, 1);
  const ckpt = checkpointDir(job, host);
  const env = ugroEnv(
    job,
    {
      host,
      nodeRank: 0,
      nnodes: 1,
      nproc: 1,
      rdzvAddr: '',
      port: 0,
      runId,
      runDir: '.',
      attempt: 1,
      rdzvTimeoutSeconds: Math.min(cluster.communication.timeoutSeconds, 600),
    },
    ckpt.ok ? ckpt.path : '',
  );
  // The run dir is where sbatch is run (the body sets UGRO_RUN_DIR and UGRO_METRICS_FILE from it);
  // an unset checkpoint dir falls back to its checkpoints/.
  const { UGRO_METRICS_FILE: _m, ...ugro } = env;
  if (!ckpt.ok) delete ugro.UGRO_CHECKPOINT_DIR;
  const notes = [
    ...header(job, 'sbatch', 'Written'),
    'Submit from an empty directory on storage every node shares (it becomes the run directory):',
    `  mkdir run && cd run && sbatch ../${job.metadata.name}.sbatch`,
  ];
  return batchScript(
    {
      runId,
      plan: slurmPlan(job, settings, { rdzvTimeoutSeconds: Math.min(cluster.communication.timeoutSeconds, 600) }),
      python: host.python,
      ugroEnv: ugro,
      jobEnv: Object.fromEntries(Object.entries(job.spec.env).filter(([k]) => !k.startsWith('UGRO_'))),
      target: trainingTarget(job, host),
      notes,
    },
    scripts ?? slurmScripts().batch,
  );
}
