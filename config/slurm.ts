/**
 * The cluster file's optional `slurm:` section: a Slurm cluster UGRO submits jobs to (sbatch,
 * squeue, sacct, scancel run on its login host over SSH, with the same pinned keys as every other
 * host). Schema and normalization only; the backend is controller/backends/slurm/.
 *
 * Everything here may end up in an #SBATCH line of a generated batch script, which sbatch reads as
 * text: names and extra lines are checked against narrow patterns here, so the generator never has
 * to quote (or trust) them.
 */
import { z } from 'zod';
import type { FieldIssue } from './errors.ts';
import { sbatchLineProblem } from './sbatch-options.ts';

/** A partition, account or QOS name (Slurm allows more; these are the characters safe in a header). */
const slurmName = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/, 'must be a Slurm name: letters, digits, "_", "-", "." (max 64)');

/**
 * One extra #SBATCH line: `--option` or `--option=value`, the value without spaces, quotes or shell
 * characters (sbatch splits header lines on whitespace; these reach it as text), and no option UGRO
 * sets itself in any spelling sbatch accepts (sbatch-options.ts: `--out=` is `--output=`).
 */
const sbatchLine = z.string().superRefine((s, ctx) => {
  const problem = sbatchLineProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const remotePath = z.string().min(1, 'must not be empty');

/**
 * The section's schema, built from schema.ts's own field validators (passed in: schema.ts imports
 * this module, so importing it back would be a cycle).
 */
export function slurmSchemaWith(v: {
  address: z.ZodType<string>;
  dnsLabel: z.ZodString;
  port: z.ZodNumber;
  userName: z.ZodString;
}) {
  const { address, dnsLabel, port, userName } = v;
  return z.strictObject({
    /** What jobs and status call this Slurm cluster (a DNS label; not the name of an inventory host). */
    name: dnsLabel.default('slurm'),
    /** The login host: sbatch/squeue/sacct/scancel run there, over SSH. */
    login: z.strictObject({
      hostname: z.string().min(1, 'must not be empty'),
      ip: address,
      user: userName,
      port: port.default(22),
      ssh_key: z.string().min(1).optional(),
      known_hosts: z.string().min(1).optional(),
    }),
    /** true: every job without `spec.backend` runs on Slurm. */
    default: z.boolean().default(false),
    partition: z
      .string()
      .regex(
        /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}(,[A-Za-z0-9_][A-Za-z0-9._-]{0,63})*$/,
        'must be a partition name (or a list)',
      )
      .optional(),
    account: slurmName.optional(),
    qos: slurmName.optional(),
    /** The interpreter on the compute nodes (default: environment.python, else python3). */
    python: z.string().min(1).optional(),
    /** --gpus-per-node; also the ranks per node of a job with `nprocPerNode: gpu`. */
    gpus_per_node: z.number().int().min(1).max(64).optional(),
    /** Extra #SBATCH lines, e.g. ["--mem=0", "--constraint=a100"]. */
    sbatch: z.array(sbatchLine).max(64).default([]),
    priority: z
      .strictObject({
        /** --nice from the job's priority: high (100 and up) 0, normal 100, low 200 (`--nice=max(0, 100 - p)`). */
        nice: z.boolean().default(true),
        /** --qos by priority class (integers: >= 100 high, <= -100 low, else normal); overrides `qos`. */
        qos: z
          .strictObject({ high: slurmName.optional(), normal: slurmName.optional(), low: slurmName.optional() })
          .optional(),
      })
      .prefault({}),
    /** On storage the login host and every compute node share (run dirs, scripts, checkpoints). */
    paths: z
      .strictObject({
        project: remotePath.optional(),
        runs: remotePath.optional(),
        scripts: remotePath.optional(),
        checkpoints: remotePath.optional(),
        checkpoint_roots: z.array(remotePath).optional(),
      })
      .optional(),
    /** How often squeue is asked about the runs being waited on (one call for all of them). */
    poll_seconds: z.number().min(0.2).max(600).default(2),
    /** sacct answers for jobs squeue no longer shows (needs Slurm accounting). */
    accounting: z.boolean().default(false),
    /** The first rendezvous port tried on a job's first node (the batch script skips ports in use). */
    rdzv_port: port.default(29500),
  });
}

export type SlurmFile = z.output<ReturnType<typeof slurmSchemaWith>>;

/** What the backend needs besides the login host itself (carried on that Host as `slurm`). */
export interface SlurmSettings {
  default: boolean;
  partition?: string;
  account?: string;
  qos?: string;
  gpusPerNode?: number;
  sbatch: string[];
  priority: { nice: boolean; qos: { high?: string; normal?: string; low?: string } };
  pollMs: number;
  accounting: boolean;
  rdzvPort: number;
}

export function slurmSettings(f: SlurmFile): SlurmSettings {
  return {
    default: f.default,
    ...(f.partition ? { partition: f.partition } : {}),
    ...(f.account ? { account: f.account } : {}),
    ...(f.qos ? { qos: f.qos } : {}),
    ...(f.gpus_per_node ? { gpusPerNode: f.gpus_per_node } : {}),
    sbatch: [...f.sbatch],
    priority: { nice: f.priority.nice, qos: { ...f.priority.qos } },
    pollMs: Math.round(f.poll_seconds * 1000),
    accounting: f.accounting,
    rdzvPort: f.rdzv_port,
  };
}

/**
 * The login host in the shape every other host has (normalized by config/cluster.ts like a worker):
 * its paths default to `~/ugro` with run dirs in `~/ugro/slurm-runs` (apart from an SSH host's
 * `runs/`, should the login host also be one).
 */
export function slurmHostFields(f: SlurmFile): {
  name: string;
  hostname: string;
  ip: string;
  port: number;
  user: string;
  rank: number;
  paths: { project?: string; runs: string; scripts?: string; checkpoints?: string; checkpoint_roots?: string[] };
  python?: string;
  ssh_key?: string;
  known_hosts?: string;
} {
  const project = f.paths?.project ?? '~/ugro';
  return {
    name: f.name,
    hostname: f.login.hostname,
    ip: f.login.ip,
    port: f.login.port,
    user: f.login.user,
    rank: 0,
    paths: {
      project,
      runs: f.paths?.runs ?? `${project.replace(/\/+$/, '')}/slurm-runs`,
      ...(f.paths?.scripts ? { scripts: f.paths.scripts } : {}),
      ...(f.paths?.checkpoints ? { checkpoints: f.paths.checkpoints } : {}),
      ...(f.paths?.checkpoint_roots ? { checkpoint_roots: f.paths.checkpoint_roots } : {}),
    },
    ...(f.python ? { python: f.python } : {}),
    ...(f.login.ssh_key ? { ssh_key: f.login.ssh_key } : {}),
    ...(f.login.known_hosts ? { known_hosts: f.login.known_hosts } : {}),
  };
}

/** Cross-field checks: the Slurm cluster's name is not an inventory host's. */
export function slurmIssues(
  f: { slurm?: SlurmFile; workers: { name: string }[]; cluster: { master: { name?: string; hostname: string } } },
  at: (path: PropertyKey[], message: string) => FieldIssue,
): FieldIssue[] {
  if (!f.slurm) return [];
  const names = [f.cluster.master.name ?? f.cluster.master.hostname, ...f.workers.map((w) => w.name)];
  if (!names.includes(f.slurm.name)) return [];
  return [
    at(
      ['slurm', 'name'],
      `"${f.slurm.name}" is already a host's name: give the Slurm cluster its own (it names the cluster, not a node)`,
    ),
  ];
}

/** `~` in these fields is the login user's home on the login host, never the controller's. */
export function isSlurmRemotePath(p: readonly string[]): boolean {
  if (p[0] !== 'slurm') return false;
  if (p[1] === 'python') return p.length === 2;
  if (p[1] !== 'paths') return false;
  return p.length === 3 || (p[2] === 'checkpoint_roots' && p.length === 4);
}
