/**
 * The TrainingJob API (apiVersion ugro.dev/v1alpha1). Strict: unknown fields are errors with
 * their path and line. `parseTrainingJob` is pure; the store reads files.
 */
import { basename } from 'node:path';
import { z } from 'zod';
import type { FieldIssue } from '../../config/errors.ts';
import { dnsLabel } from '../../config/names.ts';
import { type ParseResult, parseYamlWith } from '../../config/parse.ts';
import { shQuote } from '../../config/quote.ts';
import { canonicalHash } from './canonical-hash.ts';

export const API_VERSION = 'ugro.dev/v1alpha1';
export const KIND = 'TrainingJob';

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a valid environment variable name');
const RESERVED_ENV = /^(UGRO_|RANK$|LOCAL_RANK$|WORLD_SIZE$|MASTER_ADDR$|MASTER_PORT$|GROUP_RANK$|LOCAL_WORLD_SIZE$)/;

const PRIORITY_VALUES = { high: 100, normal: 0, low: -100 } as const;

/** spec.after: what a dependency waits for. */
export const AFTER_PHASES = ['Succeeded', 'Completed'] as const;
const MAX_AFTER = 32;

/**
 * sshd hands the whole remote command to the login shell as ONE argument, and Linux caps one
 * argument at 128 KiB (MAX_ARG_STRLEN): args, command and env, quoted, must fit beside UGRO's own
 * launch script. Checked here so a job fails validation with the field, not the launch obscurely.
 */
const MAX_ARGV_BYTES = 96 * 1024;

/** A NUL cannot travel in an exec argument; sshd drops the whole connection (every job on that host) on one. */
const noNul = (s: string) => !s.includes('\0');
const NUL_MESSAGE = 'must not contain a NUL byte (\\0): it cannot be passed to a program';
const word = (error: string) => z.string({ error }).refine(noNul, NUL_MESSAGE);

const scriptPath = z
  .string()
  .min(1)
  .refine(noNul, NUL_MESSAGE)
  .refine(
    (s) => !s.startsWith('/') && !s.split('/').includes('..'),
    'must be a relative path inside the project\'s scripts/ (no leading "/", no "..")',
  );

export const trainingJobSpec = z
  .strictObject({
    script: scriptPath.optional(),
    command: z.array(word('must be a string')).min(1, 'must have at least the program to run').optional(),
    args: z.array(word('must be a string (quote numbers: "3")')).default([]),
    env: z
      .record(envName, word('must be a string (quote numbers: "1")'))
      .refine(
        (e) => !Object.keys(e).some((k) => RESERVED_ENV.test(k)),
        'must not set UGRO_* or torch.distributed variables (RANK, WORLD_SIZE, …): UGRO sets those',
      )
      .default({}),
    nodes: z
      .union([
        z.number().int().min(1, 'must be >= 1'),
        z
          .strictObject({ min: z.number().int().min(1), max: z.number().int().min(1) })
          .refine((n) => n.max >= n.min, { message: 'max must be >= min', path: ['max'] }),
      ])
      .default(1),
    nprocPerNode: z
      .union([z.number().int().min(1).max(64), z.literal('gpu')], {
        error: 'must be an integer 1..64 or "gpu" (one rank per GPU)',
      })
      .default(1),
    hosts: z.array(dnsLabel).min(1).optional(),
    resources: z
      .strictObject({
        /** GPUs each node gets (default: nprocPerNode when a number, every qualifying GPU for `gpu`). */
        gpusPerNode: z.number().int().min(1).max(64).optional(),
        minGpuMemoryGiB: z.number().positive().optional(),
      })
      .optional(),
    /**
     * The global batch, split across ranks (`balance`, core/batch.ts); each rank gets its share
     * (UGRO_RANK_BATCH), offset, micro batch and gradient accumulation steps.
     */
    batch: z
      .strictObject({
        global: z.number().int().min(1).max(1_000_000),
        /** Largest micro batch a rank runs at once: larger shares accumulate gradients. */
        maxMicroBatch: z.number().int().min(1).max(1_000_000).optional(),
        /**
         * How the global batch is split: `memory` (in proportion to GPU memory), `even`, or `speed`
         * (in proportion to each rank's measured samples/s, core/balance.ts; re-split at a checkpoint
         * when that would be faster). Unset: DEFAULT_BALANCE (no default here: existing specs keep
         * their hash).
         */
        balance: z.enum(['speed', 'memory', 'even']).optional(),
      })
      .optional(),
    /** May a higher-priority job stop this one (it resumes from its checkpoint later)? */
    preemptible: z.boolean().default(true),
    preemption: z
      .strictObject({
        /** SIGTERM, then this long to checkpoint, then SIGKILL. */
        graceSeconds: z.number().min(0).max(3600).default(60),
        /** Never preempted again within this long after (re)starting: no thrashing. */
        minRuntimeSeconds: z
          .number()
          .min(0)
          .max(7 * 86400)
          .default(300),
      })
      .prefault({}),
    /** With nodes {min, max}: when more GPUs free up, restart at a checkpoint on more nodes. */
    scaleUp: z.boolean().default(false),
    priority: z
      .union([z.enum(['high', 'normal', 'low']), z.number().int().min(-1000).max(1000)], {
        error: 'must be high, normal, low or an integer -1000..1000',
      })
      .default('normal'),
    restartPolicy: z
      .strictObject({
        /** Failures of the training itself (a rank exits non-zero, a hang). */
        maxRestarts: z.number().int().min(0).max(100).default(0),
        /** Failures of the infrastructure (a launch fails, a node is lost, a runner vanishes). */
        maxInfraRestarts: z.number().int().min(0).max(1000).default(10),
        /**
         * Out-of-memory failures while a micro batch can still be halved (core/failures.ts); 3 when
         * unset (DEFAULT_MAX_OOM_RESTARTS: no default here, so existing specs keep their hash).
         */
        maxOomRestarts: z.number().int().min(0).max(100).optional(),
        backoffSeconds: z.number().min(0).max(3600).default(10),
        /**
         * Exit codes with a meaning of their own: `fatal` fails the job at once (a bad config will
         * not get better), `retry` restarts without counting (a script asking to be restarted).
         */
        exitCodes: z
          .strictObject({
            fatal: z.array(z.number().int().min(1).max(255)).max(64).default([]),
            retry: z.array(z.number().int().min(1).max(255)).max(64).default([]),
          })
          .prefault({})
          .refine((e) => !e.fatal.some((c) => e.retry.includes(c)), 'a code cannot be both fatal and retry'),
      })
      .prefault({}),
    failurePolicy: z
      .strictObject({
        /** A host holding part of a run that does not answer this long is lost (the gang restarts). */
        nodeLostSeconds: z.number().min(1).max(3600).default(5),
        /** A rank whose heartbeat (UGRO_HEARTBEAT_FILE) stops this long fails the gang (a hang). */
        progressDeadlineSeconds: z
          .number()
          .int()
          .min(1)
          .max(7 * 86400)
          .optional(),
      })
      .prefault({}),
    checkpoint: z
      .strictObject({
        /**
         * Relative: under the host's paths.checkpoints. Absolute: only under a paths.checkpoint_roots
         * entry of the cluster file (checked against the inventory when the job is scheduled).
         */
        dir: z
          .string()
          .min(1)
          .max(1024)
          .refine(noNul, NUL_MESSAGE)
          .refine(
            (d) => !d.split('/').includes('..'),
            'must not contain ".." (relative paths are under the host\'s paths.checkpoints)',
          )
          .optional(),
        resumeFrom: z
          .string()
          .regex(/^[A-Za-z0-9._-]+$/, 'must be a checkpoint name like "step-400"')
          .optional(),
        /** The directory is shared between the hosts (NFS): restarts never copy checkpoints. */
        shared: z.boolean().optional(),
        /**
         * Retention (core/retention.ts): keep the newest `last` and the `best` by `metric` (from the
         * metrics lines at each step); the controller deletes the others from the hosts when a new one
         * appears. Never deleted: the newest, the one a restart or a dependent would start from, a
         * promoted one (ugro promote).
         */
        keep: z
          .strictObject({
            last: z.number().int().min(1).max(100_000).optional(),
            best: z.number().int().min(1).max(100_000).optional(),
            metric: z
              .string()
              .regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, 'must be a metrics key like "loss"')
              .default('loss'),
            goal: z.enum(['minimize', 'maximize']).default('minimize'),
          })
          .refine((k) => k.last !== undefined || k.best !== undefined, 'set last, best or both')
          .optional(),
      })
      .optional(),
    suspend: z.boolean().default(false),
    /**
     * Before each fresh start of the gang, check that its hosts reach each other on the rendezvous
     * ports (`ugro doctor`'s network round; core/preflight.ts): a failure keeps the job Queued with
     * reason PreflightFailed. No default and not in the spec hash: turning it on restarts nothing.
     */
    preflight: z.boolean().optional(),
    /**
     * Where it runs: `ssh` (UGRO starts the ranks on the inventory's hosts) or `slurm` (submitted
     * with sbatch to the cluster file's `slurm:` section). Unset: ssh, unless that section says
     * `default: true`.
     */
    backend: z.enum(['ssh', 'slurm'], { error: 'must be ssh or slurm' }).optional(),
    activeDeadlineSeconds: z.number().int().positive().optional(),
    /**
     * Jobs this one waits for (like Slurm's --dependency): `Succeeded` (afterok, the default) or
     * `Completed` (afterany: Succeeded, Failed or Cancelled). An entry names a `job:` or a `sweep:`
     * (the whole sweep: its phase, and its best trial's checkpoint). Optional, no default: the spec
     * hash of a job without it stays what it was.
     */
    after: z
      .array(
        z.strictObject({
          job: dnsLabel.optional(),
          sweep: dnsLabel.optional(),
          phase: z
            .enum(AFTER_PHASES, {
              error: 'must be Succeeded (it succeeded, like afterok) or Completed (it ended in any way, like afterany)',
            })
            .default('Succeeded'),
        }),
      )
      .min(1, 'must list at least one job (or leave `after` out)')
      .max(MAX_AFTER, `at most ${MAX_AFTER} jobs`)
      .superRefine((list, ctx) => {
        list.forEach((a, i) => {
          const key = a.sweep ? 'sweep' : 'job';
          if (!a.job === !a.sweep)
            ctx.addIssue({
              code: 'custom',
              message: 'set exactly one of `job: NAME` (a TrainingJob) or `sweep: NAME` (a whole Sweep)',
              path: [i],
            });
          else if (list.findIndex((b) => (b.job ?? b.sweep) === (a.job ?? a.sweep)) !== i)
            ctx.addIssue({ code: 'custom', message: `names ${key} ${a.job ?? a.sweep} twice`, path: [i, key] });
        });
      })
      .optional(),
  })
  .superRefine((s, ctx) => {
    if (!!s.script === !!s.command)
      ctx.addIssue({
        code: 'custom',
        message: 'set exactly one of `script` (a file in scripts/) or `command` (an argv list)',
        path: [s.script ? 'command' : 'script'],
      });
    const quoted = [...(s.command ?? []), ...s.args, ...Object.entries(s.env).map(([k, v]) => `${k}=${v}`)].reduce(
      (n, w) => n + Buffer.byteLength(shQuote(w)) + 1,
      0,
    );
    if (quoted > MAX_ARGV_BYTES)
      ctx.addIssue({
        code: 'custom',
        message:
          `args, command and env take ${quoted} bytes quoted for the shell; ` +
          `the limit is ${MAX_ARGV_BYTES / 1024} KiB ` +
          '(sshd passes the remote command as one argument, which Linux caps at 128 KiB): pass big inputs in a file',
        path: [s.args.length ? 'args' : s.command ? 'command' : 'env'],
      });
    if (s.hosts && typeof s.nodes === 'number' && s.hosts.length < s.nodes)
      ctx.addIssue({
        code: 'custom',
        message: `lists ${s.hosts.length} host(s) but nodes is ${s.nodes}`,
        path: ['hosts'],
      });
  });

export const trainingJobSchema = z
  .strictObject({
    apiVersion: z.literal(API_VERSION, { error: `must be "${API_VERSION}"` }),
    kind: z.literal(KIND, { error: `must be "${KIND}"` }),
    metadata: z.strictObject({
      name: dnsLabel,
      labels: z.record(z.string(), z.string()).optional(),
      annotations: z.record(z.string(), z.string()).optional(),
    }),
    spec: trainingJobSpec,
  })
  .superRefine((j, ctx) => {
    // A cycle through other jobs is found when they are known (core/steps/dependencies.ts); this one is certain.
    const i = j.spec.after?.findIndex((a) => a.job === j.metadata.name) ?? -1;
    if (i >= 0)
      ctx.addIssue({
        code: 'custom',
        message: `a job cannot wait for itself (cycle ${j.metadata.name} -> ${j.metadata.name}): remove this entry`,
        path: ['spec', 'after', i, 'job'],
      });
  });

export type TrainingJob = z.output<typeof trainingJobSchema>;
export type TrainingJobSpec = TrainingJob['spec'];

export function priorityValue(p: TrainingJobSpec['priority']): number {
  return typeof p === 'number' ? p : PRIORITY_VALUES[p];
}

export function nodeRange(spec: TrainingJobSpec): { min: number; max: number } {
  return typeof spec.nodes === 'number' ? { min: spec.nodes, max: spec.nodes } : spec.nodes;
}

/** Stable hash of what changes a run: the spec (not labels/annotations). 8 hex chars. */
export function specHash(spec: TrainingJobSpec): string {
  // Suspending and resuming the same spec is the same run; a preflight only gates the next start.
  const { suspend: _s, preflight: _p, ...rest } = spec;
  return canonicalHash(rest);
}

/** Pure: YAML text -> TrainingJob, or issues with path and line. `file` ties name to file name. */
export function parseTrainingJob(text: string, file?: string): ParseResult<TrainingJob> {
  const res = parseYamlWith(text, trainingJobSchema);
  if (!res.ok) return res;
  if (file) {
    const stem = jobNameFromFile(file);
    if (stem !== res.value.metadata.name) {
      const issue: FieldIssue = {
        path: 'metadata.name',
        message:
          `"${res.value.metadata.name}" must match the file name (${basename(file)}): ` +
          `rename the file to ${res.value.metadata.name}.yaml, or use \`ugro apply -f\``,
        ...(res.source?.lineOf(['metadata', 'name']) ?? {}),
      };
      return { ok: false, issues: [issue] };
    }
  }
  return { ok: true, value: res.value };
}

/** `jobs/foo.yaml` -> `foo`. */
export function jobNameFromFile(file: string): string {
  return basename(file).replace(/\.(ya?ml)$/, '');
}

export function isJobFileName(name: string): boolean {
  return /\.(ya?ml)$/.test(name) && !/\.(status|control)\.ya?ml$/.test(name) && !name.startsWith('.');
}

/** JSON Schema for editors (yaml-language-server: `# yaml-language-server: $schema=…`). */
export function trainingJobJsonSchema(): unknown {
  return z.toJSONSchema(trainingJobSchema, { io: 'input', unrepresentable: 'any' });
}
