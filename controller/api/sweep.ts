/**
 * The Sweep API (apiVersion ugro.dev/v1alpha1, kind Sweep): a TrainingJob template run once per
 * parameter set (a grid, seeded random draws, or a list), at most `maxParallel` trials at a time,
 * with an objective read from the metrics lines and early stopping (ASHA or the median rule). A
 * sweep is a file in jobs/ like a TrainingJob (`kind` tells them apart: store.ts); its trials are
 * TrainingJobs the controller writes (core/sweep.ts decides, loop/sweeps.ts writes). Parameter
 * values reach the script only as whole argv words or env values, through `{name}` placeholders in
 * `template.args`, `template.command` and `template.env` values: never pasted into program text.
 */
import { basename } from 'node:path';
import { z } from 'zod';
import type { FieldIssue } from '../../config/errors.ts';
import { dnsLabel } from '../../config/names.ts';
import { type ParseResult, parseYamlWith } from '../../config/parse.ts';
import { canonicalHash } from './canonical-hash.ts';
import { API_VERSION, jobNameFromFile, trainingJobSpec } from './trainingjob.ts';

export const SWEEP_KIND = 'Sweep';
/** The label every trial carries: `ugro get jobs -l ugro.dev/sweep=NAME`. */
export const SWEEP_LABEL = 'ugro.dev/sweep';
export const TRIAL_LABEL = 'ugro.dev/trial';
/** Annotations on a trial: its generation, the sweep spec hash, its parameters (JSON), why it was stopped. */
export const GENERATION_ANNOTATION = 'ugro.dev/sweep-generation';
export const SWEEP_HASH_ANNOTATION = 'ugro.dev/sweep-hash';
export const PARAMS_ANNOTATION = 'ugro.dev/params';
export const STOPPED_ANNOTATION = 'ugro.dev/sweep-stopped';

export const MAX_TRIALS = 1000;
/** Room for `-g<generation>-t<index>` after the sweep's name in a 63-character trial name. */
export const MAX_SWEEP_NAME = 48;

/** `{lr}` in an arg or env value: replaced by the parameter's value. */
export const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

const paramName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,31}$/, 'must be a name like lr or batch_size');
const paramValue = z.union(
  [
    z.number().finite(),
    z
      .string()
      .max(1024)
      .refine((s) => !s.includes('\0'), 'must not contain a NUL byte'),
  ],
  { error: 'must be a number or a string (it becomes one argv word or env value)' },
);
export type ParamValue = z.output<typeof paramValue>;
export type ParamSet = Record<string, ParamValue>;

const pair = (what: string) =>
  z
    .tuple([z.number().finite(), z.number().finite()], { error: `must be [low, high] (${what})` })
    .refine(([a, b]) => b > a, 'high must be > low');

/** One random parameter's distribution. */
const distribution = z.union(
  [
    z.strictObject({ uniform: pair('a float drawn uniformly') }),
    z.strictObject({
      logUniform: pair('a float drawn uniformly in log space').refine(([a]) => a > 0, 'low must be > 0'),
    }),
    z.strictObject({ int: pair('an integer, both ends included') }),
    z.strictObject({ choice: z.array(paramValue).min(1).max(1000) }),
  ],
  { error: 'must be one of {uniform: [lo, hi]}, {logUniform: [lo, hi]}, {int: [lo, hi]}, {choice: [...]}' },
);
export type Distribution = z.output<typeof distribution>;

const parameters = z
  .strictObject({
    /** Every combination, the first parameter varying slowest. */
    grid: z.record(paramName, z.array(paramValue).min(1).max(MAX_TRIALS)).optional(),
    /** `count` draws, reproducible from `seed`. */
    random: z
      .strictObject({
        seed: z
          .number()
          .int()
          .min(0)
          .max(2 ** 32 - 1),
        count: z.number().int().min(1).max(MAX_TRIALS),
        space: z.record(paramName, distribution),
      })
      .optional(),
    /** The parameter sets, as written. */
    list: z.array(z.record(paramName, paramValue)).min(1).max(MAX_TRIALS).optional(),
  })
  .superRefine((p, ctx) => {
    const set = [p.grid, p.random, p.list].filter(Boolean).length;
    if (set !== 1) ctx.addIssue({ code: 'custom', message: 'set exactly one of `grid`, `random` or `list`', path: [] });
    const size = p.grid ? Object.values(p.grid).reduce((n, v) => n * v.length, 1) : 0;
    if (size > MAX_TRIALS)
      ctx.addIssue({ code: 'custom', message: `the grid has ${size} trials; at most ${MAX_TRIALS}`, path: ['grid'] });
  });

const earlyStopping = z.discriminatedUnion(
  'type',
  [
    z.strictObject({
      /** Asynchronous successive halving: at each rung keep the best 1/eta; the others pause with their checkpoint. */
      type: z.literal('asha'),
      rungs: z
        .array(z.number().int().min(1))
        .min(1)
        .max(32)
        .refine((r) => r.every((s, i) => i === 0 || s > r[i - 1]), 'must be increasing steps'),
      eta: z.number().int().min(2).max(100).default(3),
    }),
    z.strictObject({
      /** Stop a trial whose running mean at a step is worse than the median of the others' there. */
      type: z.literal('median'),
      steps: z
        .array(z.number().int().min(1))
        .min(1)
        .max(64)
        .refine((r) => r.every((s, i) => i === 0 || s > r[i - 1]), 'must be increasing steps'),
      /** Trials that must have reached a step before the rule judges anyone there. */
      minTrials: z.number().int().min(1).max(MAX_TRIALS).default(3),
    }),
  ],
  { error: 'must be {type: asha, rungs: [...], eta: 3} or {type: median, steps: [...], minTrials: 3}' },
);

export const sweepSpec = z
  .strictObject({
    /** A TrainingJob spec; `{name}` in args and env values is each trial's parameter. */
    template: trainingJobSpec,
    parameters,
    maxParallel: z.number().int().min(1).max(MAX_TRIALS).default(1),
    objective: z.strictObject({
      /** A key of the metrics lines the script writes (UGRO_METRICS_FILE), e.g. loss. */
      metric: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, 'must be a metrics key like loss'),
      goal: z.enum(['minimize', 'maximize'], { error: 'must be minimize or maximize' }).default('minimize'),
    }),
    earlyStopping: earlyStopping.optional(),
  })
  .superRefine((s, ctx) => {
    const names = new Set(paramNames(s.parameters));
    const used = new Set<string>();
    const check = (text: string, path: PropertyKey[]) => {
      for (const m of text.matchAll(PLACEHOLDER)) {
        used.add(m[1]);
        if (!names.has(m[1]))
          ctx.addIssue({
            code: 'custom',
            message: `{${m[1]}} names no parameter (parameters: ${[...names].join(', ') || 'none'})`,
            path,
          });
      }
    };
    for (const [i, a] of s.template.args.entries()) check(a, ['template', 'args', i]);
    for (const [i, a] of (s.template.command ?? []).entries()) check(a, ['template', 'command', i]);
    for (const [k, v] of Object.entries(s.template.env)) check(v, ['template', 'env', k]);
    for (const n of names)
      if (!used.has(n))
        ctx.addIssue({
          code: 'custom',
          message: `parameter ${n} is used nowhere: put {${n}} in template.args (e.g. "--${n}={${n}}"), command or env`,
          path: ['parameters'],
        });
    if (s.template.after?.length)
      ctx.addIssue({
        code: 'custom',
        message: 'trials cannot wait for jobs: set `after` on the jobs that use the sweep',
        path: ['template', 'after'],
      });
  });

/** The parameter names a spec's parameters define. */
export function paramNames(p: z.output<typeof parameters>): string[] {
  if (p.grid) return Object.keys(p.grid);
  if (p.random) return Object.keys(p.random.space);
  return [...new Set((p.list ?? []).flatMap((s) => Object.keys(s)))];
}

export const sweepSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION, { error: `must be "${API_VERSION}"` }),
  kind: z.literal(SWEEP_KIND),
  metadata: z.strictObject({
    name: dnsLabel.refine(
      (n) => n.length <= MAX_SWEEP_NAME,
      `must be at most ${MAX_SWEEP_NAME} characters (its trials are named NAME-t0, NAME-t1, …)`,
    ),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  spec: sweepSpec,
});

export type Sweep = z.output<typeof sweepSchema>;
export type SweepSpec = Sweep['spec'];

/** What the store read of a sweep file. */
export type SweepState =
  | { kind: 'valid'; sweep: Sweep; hash: string; file: string; writer?: string }
  | { kind: 'invalid'; file: string; issues: FieldIssue[]; writer?: string }
  | { kind: 'deleted' };

/** The `kind` a parsed YAML document says it is (undefined when it says none). */
export function kindOf(raw: unknown): string | undefined {
  const k = raw && typeof raw === 'object' ? (raw as { kind?: unknown }).kind : undefined;
  return typeof k === 'string' ? k : undefined;
}

/** Stable hash of a sweep's spec: a change is a new generation. 8 hex chars. */
export function sweepHash(spec: SweepSpec): string {
  // maxParallel changes how many run at once, not what a trial is: no new generation for it.
  const { maxParallel: _m, ...rest } = spec;
  return canonicalHash(rest);
}

/** Pure: YAML text -> Sweep, or issues with path and line; the name must match the file's. */
export function parseSweep(text: string, file?: string): ParseResult<Sweep> {
  const res = parseYamlWith(text, sweepSchema);
  if (!res.ok) return res;
  if (file && jobNameFromFile(file) !== res.value.metadata.name)
    return {
      ok: false,
      issues: [
        {
          path: 'metadata.name',
          message: `"${res.value.metadata.name}" must match the file name (${basename(file)}): rename the file`,
          ...(res.source?.lineOf(['metadata', 'name']) ?? {}),
        },
      ],
    };
  return { ok: true, value: res.value };
}
