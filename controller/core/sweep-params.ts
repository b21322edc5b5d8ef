/**
 * PURE: a sweep's parameter sets (grid, seeded random draws, or the list as written), each trial's
 * name, and its TrainingJob: the template with `{name}` placeholders in args and env values
 * replaced. A value becomes (part of) one argv word or one env value and nothing else: the launch
 * quotes it like any other arg (core/launch.ts), so it is never program text.
 */
import { OWNER_ANNOTATION } from '../api/annotations.ts';
import {
  GENERATION_ANNOTATION,
  PARAMS_ANNOTATION,
  type ParamSet,
  type ParamValue,
  PLACEHOLDER,
  SWEEP_HASH_ANNOTATION,
  SWEEP_LABEL,
  type Sweep,
  type SweepSpec,
  TRIAL_LABEL,
} from '../api/sweep.ts';
import { API_VERSION, KIND, type TrainingJob } from '../api/trainingjob.ts';

/** splitmix32: a small, well-mixed PRNG, so a seed gives the same draws on every machine and version. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
}

/** Six significant digits: a drawn float reads the same in argv, the status and the CLI. */
const round = (x: number) => Number(x.toPrecision(6));

/** Every parameter set of a sweep, in trial order (index 0, 1, …). */
export function expandParameters(p: SweepSpec['parameters']): ParamSet[] {
  if (p.list) return p.list.map((s) => ({ ...s }));
  if (p.random) {
    const next = prng(p.random.seed);
    const out: ParamSet[] = [];
    for (let i = 0; i < p.random.count; i++) {
      const set: ParamSet = {};
      for (const [k, d] of Object.entries(p.random.space)) {
        const u = next();
        if ('uniform' in d) set[k] = round(d.uniform[0] + u * (d.uniform[1] - d.uniform[0]));
        else if ('logUniform' in d) {
          const [lo, hi] = d.logUniform.map(Math.log);
          set[k] = round(Math.exp(lo + u * (hi - lo)));
        } else if ('int' in d) {
          const [lo, hi] = [Math.ceil(d.int[0]), Math.floor(d.int[1])];
          set[k] = lo + Math.min(hi - lo, Math.floor(u * (hi - lo + 1)));
        } else set[k] = d.choice[Math.min(d.choice.length - 1, Math.floor(u * d.choice.length))];
      }
      out.push(set);
    }
    return out;
  }
  // Grid: the first parameter varies slowest (as nested loops written in that order).
  let sets: ParamSet[] = [{}];
  for (const [k, values] of Object.entries(p.grid ?? {}))
    sets = sets.flatMap((s) => values.map((v) => ({ ...s, [k]: v })));
  return sets;
}

/** `sweep-t3` in the first generation, `sweep-g2-t3` after an edit: predictable, and never reused. */
export function trialName(sweep: string, generation: number, index: number): string {
  return generation <= 1 ? `${sweep}-t${index}` : `${sweep}-g${generation}-t${index}`;
}

/** The generation and index a trial name of `sweep` says, or undefined when it is not one. */
export function parseTrialName(sweep: string, name: string): { generation: number; index: number } | undefined {
  if (!name.startsWith(`${sweep}-`)) return undefined;
  const m = /^(?:g([1-9][0-9]{0,7})-)?t(0|[1-9][0-9]{0,5})$/.exec(name.slice(sweep.length + 1));
  if (!m) return undefined;
  const generation = m[1] ? Number(m[1]) : 1;
  if (m[1] && generation === 1) return undefined;
  return { generation, index: Number(m[2]) };
}

const text = (v: ParamValue) => (typeof v === 'number' ? String(v) : v);

/** Replace each `{name}` with its value (a word stays one word, however the value reads). */
export function substitute(word: string, params: ParamSet): string {
  return word.replace(PLACEHOLDER, (whole, k: string) => (k in params ? text(params[k]) : whole));
}

/**
 * Trial `index` of generation `generation`: the template with its parameters, labelled with the
 * sweep, owned by the sweep's owner (the controller, an admin, writes the file: core/authorize.ts
 * honours the annotation), and with a checkpoint dir of its own when the template names one.
 */
export function trialJob(
  sweep: Sweep,
  hash: string,
  generation: number,
  index: number,
  params: ParamSet,
  owner: string | undefined,
): TrainingJob {
  const name = trialName(sweep.metadata.name, generation, index);
  const t = sweep.spec.template;
  const spec = {
    ...t,
    args: t.args.map((a) => substitute(a, params)),
    ...(t.command ? { command: t.command.map((a) => substitute(a, params)) } : {}),
    env: Object.fromEntries(Object.entries(t.env).map(([k, v]) => [k, substitute(v, params)])),
    ...(t.checkpoint?.dir ? { checkpoint: { ...t.checkpoint, dir: `${t.checkpoint.dir}/${name}` } } : {}),
  };
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name,
      labels: { ...sweep.metadata.labels, [SWEEP_LABEL]: sweep.metadata.name, [TRIAL_LABEL]: String(index) },
      annotations: {
        ...(owner ? { [OWNER_ANNOTATION]: owner } : {}),
        [GENERATION_ANNOTATION]: String(generation),
        [SWEEP_HASH_ANNOTATION]: hash,
        [PARAMS_ANNOTATION]: JSON.stringify(params),
      },
    },
    spec,
  } as TrainingJob;
}
