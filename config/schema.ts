/**
 * The cluster inventory schema. It reads the seed's `config/cluster.yaml` unchanged
 * (cluster.master, cluster.communication, workers[], paths, training, environment, logging,
 * webhook) and adds what users need that the seed lacked: `ssh` (key, known_hosts, agent,
 * timeouts), per-host `ssh_key` / `known_hosts` / `python` / `gpus`, and `health` thresholds.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { checkBranch, normalizeRepoPath, parseGitUrl } from './gitops.ts';
import { dnsLabel } from './names.ts';
import { slurmSchemaWith } from './slurm.ts';
import { usersSchemaWith } from './users.ts';

const HOSTNAME_RE =
  /^(?=.{1,253}$)([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/;
const address = z
  .string()
  .min(1, 'must not be empty')
  // A name whose last label is all digits (10.0.0.300) is a mistyped address, not a DNS name.
  .refine(
    (s) => isIP(s) !== 0 || (HOSTNAME_RE.test(s) && !/(^|\.)\d+$/.test(s)),
    'must be an IPv4/IPv6 address or a DNS name (e.g. "192.168.1.101")',
  );

const port = z
  .number({ error: 'must be a number' })
  .int('must be a whole number')
  .min(1, 'must be between 1 and 65535')
  .max(65535, 'must be between 1 and 65535');

// POSIX user names as useradd accepts them; also keeps them safe as shell words.
const userName = z
  .string({ error: 'is required: the login user on this host (e.g. "ob")' })
  .regex(/^[a-z_][a-z0-9_.-]*\$?$/i, 'must be a valid login name (letters, digits, "_", "-", ".")')
  .max(32, 'must be at most 32 characters');

const absOrHomePath = z.string().min(1, 'must not be empty');

const gpuSpec = z.strictObject({
  index: z.number().int().min(0).optional(),
  model: z.string().min(1),
  vram_gb: z.number().positive().optional(),
});

const hardware = z.strictObject({
  gpu_model: z.string().optional(),
  vram_gb: z.number().positive().optional(),
  cpu_cores: z.number().int().positive().optional(),
  ram_gb: z.number().positive().optional(),
});

const hostPaths = z.strictObject({
  home: absOrHomePath.optional(),
  project: absOrHomePath.optional(),
  scripts: absOrHomePath.optional(),
  runs: absOrHomePath.optional(),
  checkpoints: absOrHomePath.optional(),
  /** Absolute directories a job's spec.checkpoint.dir may name besides paths.checkpoints (e.g. an NFS mount). */
  checkpoint_roots: z.array(absOrHomePath).optional(),
  logs: absOrHomePath.optional(),
  experiments: absOrHomePath.optional(),
});

/** Fields a user may add to any host (master or worker) beyond the seed. */
const hostExtras = {
  ssh_key: absOrHomePath.optional(),
  known_hosts: absOrHomePath.optional(),
  python: z.string().min(1).optional(),
  gpus: z.array(gpuSpec).optional(),
  labels: z.record(z.string(), z.string()).optional(),
};

const masterSchema = z.strictObject({
  name: dnsLabel.optional(),
  hostname: z.string().min(1, 'must not be empty'),
  ip: address,
  port: port.default(22),
  user: userName,
  hardware: hardware.optional(),
  paths: hostPaths.optional(),
  ...hostExtras,
});

const workerSchema = z.strictObject({
  name: dnsLabel,
  hostname: z.string().min(1, 'must not be empty'),
  ip: address,
  user: userName,
  ssh_port: port.default(22),
  rank: z.number().int('must be a whole number').min(1, 'must be >= 1 (rank 0 is the master)'),
  hardware: hardware.optional(),
  paths: hostPaths.optional(),
  ...hostExtras,
});

const communicationSchema = z.strictObject({
  backend: z.string().default('c10d'),
  master_port: port.default(29500),
  timeout_seconds: z.number().int().positive().default(300),
});

const sshSchema = z.strictObject({
  identity_file: absOrHomePath.optional(),
  known_hosts: absOrHomePath.default('~/.ssh/known_hosts'),
  use_agent: z.boolean().default(true),
  connect_timeout_seconds: z.number().positive().max(120).default(5),
  /** A lost node is noticed from these keepalives (failurePolicy.nodeLostSeconds, default 5). */
  keepalive_seconds: z.number().positive().max(60).default(1),
  /** Name of an environment variable holding the key's passphrase (never the passphrase itself). */
  passphrase_env: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional(),
});

const environmentSchema = z.looseObject({
  conda_env: z.string().optional(),
  python_version: z.string().optional(),
  torch_version: z.string().optional(),
  cuda_version: z.string().optional(),
  /** How the Python environment on the hosts is managed. */
  manager: z.enum(['system', 'venv', 'pixi']).default('pixi'),
  /** Python interpreter to run training with (default: python3 on PATH, or the managed env's). */
  python: z.string().min(1).optional(),
  /** Lowest NVIDIA driver accepted by health checks. CUDA 12.x needs >= 525.60.13 on Linux. */
  min_driver_version: z
    .string()
    .regex(/^\d+(\.\d+)*$/, 'must look like "525" or "550.54.14"')
    .default('525.60.13'),
});

const healthSchema = z.strictObject({
  max_clock_offset_ms: z.number().positive().default(2000),
  min_free_disk_gb: z.number().nonnegative().default(5),
});

/** Placement over the whole queue (controller/core/placement.ts). */
const schedulingSchema = z.strictObject({
  /** Fair share: an owner's GPU time counts half after this many hours (jobs/.ugro/usage.json). */
  fair_share_half_life_hours: z.number().positive().max(100_000).default(24),
});

/**
 * `ugro controller` follows a git branch (GitOps): the TrainingJob files under `path` at the
 * branch's head are mirrored into the jobs directory. Flags of `ugro controller` override these.
 */
const gitopsSchema = z.strictObject({
  url: z.string().superRefine((u, ctx) => {
    const r = parseGitUrl(u);
    if (!r.ok) ctx.addIssue({ code: 'custom', message: r.message });
  }),
  branch: z
    .string()
    .default('main')
    .superRefine((b, ctx) => {
      const why = checkBranch(b);
      if (why) ctx.addIssue({ code: 'custom', message: why });
    }),
  path: z
    .string()
    .default('jobs')
    .superRefine((p, ctx) => {
      const r = normalizeRepoPath(p);
      if (!r.ok) ctx.addIssue({ code: 'custom', message: r.message });
    }),
  interval_seconds: z.number().int().min(1).max(86_400).default(30),
  /** Stop jobs whose file was removed from git (off: they are marked OutOfSync and keep running). */
  prune: z.boolean().default(false),
  /** Also prune when one commit removes the whole path or more than half of the jobs. */
  prune_all: z.boolean().default(false),
  /** Apply only heads whose SSH signature verifies against allowed_signers (git verify-commit). */
  require_signed: z.boolean().default(false),
  allowed_signers: absOrHomePath.optional(),
  /** For https: the environment variable holding the token (default UGRO_GIT_TOKEN). Never the token itself. */
  token_env: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
    .optional(),
  /** For https with a token: the user name sent with it (default x-access-token). */
  username: z
    .string()
    .regex(/^[A-Za-z0-9._@-]{1,64}$/)
    .optional(),
  /** For ssh: the key and known_hosts (default: the `ssh:` section's). */
  identity_file: absOrHomePath.optional(),
  known_hosts: absOrHomePath.optional(),
});

export const clusterFileSchema = z.strictObject({
  cluster: z.strictObject({
    name: z.string().min(1, 'must not be empty'),
    location: z.string().optional(),
    description: z.string().optional(),
    master: masterSchema,
    communication: communicationSchema.prefault({}),
  }),
  workers: z.array(workerSchema).default([]),
  paths: z
    .looseObject({
      project_root: absOrHomePath.optional(),
      scripts: absOrHomePath.optional(),
      config: absOrHomePath.optional(),
      data: absOrHomePath.optional(),
      logs: absOrHomePath.optional(),
      experiments: absOrHomePath.optional(),
      checkpoint_roots: z.array(absOrHomePath).optional(),
    })
    .optional(),
  training: z.looseObject({}).optional(),
  environment: environmentSchema.prefault({}),
  logging: z.looseObject({}).optional(),
  webhook: z
    .looseObject({
      secret: z.string().optional(),
      /** Notifications: a JSON POST (with a Slack-compatible `text`) on Succeeded, Failed, Restarting, Preempted. */
      url: z
        .string()
        .refine((u) => /^https?:\/\/[^\s/]+/.test(u) && URL.canParse(u), 'must be an http:// or https:// URL')
        .optional(),
      /** Per POST (default 10). */
      timeout_seconds: z.number().min(0.1).max(300).optional(),
      /** Tries after the first, with backoff 1 s doubling to 60 s (default 5). */
      retries: z.number().int().min(0).max(20).optional(),
    })
    .optional(),
  ssh: sshSchema.prefault({}),
  health: healthSchema.prefault({}),
  scheduling: schedulingSchema.prefault({}),
  gitops: gitopsSchema.optional(),
  /** A Slurm cluster jobs can run on (config/slurm.ts; the backend is controller/slurm/). */
  slurm: slurmSchemaWith({ address, dnsLabel, port, userName }).optional(),
  /** Admins, the logs switch and per-user quotas (config/users.ts); absent: one operator, no limits. */
  users: usersSchemaWith({ userName }).optional(),
});

export type ClusterFile = z.output<typeof clusterFileSchema>;
