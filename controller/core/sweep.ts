/**
 * PURE: one sweep's reconcile. From the sweep's spec, its last status and what the trial files and
 * their statuses show, decide which trial files to write (create, pause, resume, retire) or
 * remove, and the sweep's new status. loop/sweeps.ts gathers the facts and does the writes.
 *  - A trial is a TrainingJob the controller writes; pausing one is `spec.suspend: true` with the
 *    reason in an annotation (its run stops with a checkpoint: Suspended, never a failure), and
 *    resuming it is `suspend: false` (a new attempt from its newest checkpoint).
 *  - An edited spec is a new generation: the old generation's trials still running are suspended
 *    (kept, with their statuses, as history) and the new generation's trials start from index 0.
 *  - A deleted sweep deletes its trial files (their runs stop with their grace); its status goes
 *    once no trial file is left.
 */
import { type ParamSet, STOPPED_ANNOTATION, SWEEP_HASH_ANNOTATION, type SweepState } from '../api/sweep.ts';
import type { RungValue, SweepStatus, TrialRecord, TrialState } from '../api/sweep-status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import { expandParameters, trialJob } from './sweep-params.ts';
import { ashaVerdicts, medianVerdicts, type Verdict } from './sweep-stopping.ts';

/** What the loop read of one trial file (of any generation) and its status. */
export interface TrialFacts {
  name: string;
  generation: number;
  index: number;
  params: ParamSet;
  /** The trial's file as read: undefined when it is gone (or invalid). */
  job?: TrainingJob;
  /** The job's phase for its current spec, and its newest metrics line's step. */
  phase?: string;
  reason?: string;
  message?: string;
  step?: number;
  /** The objective on its newest metrics line. */
  objective?: number;
  /** Its newest metrics line had the objective not finite (NaN, ±Infinity). */
  diverged?: boolean;
  /** Rung values known (from the status, or read from its metrics this pass). */
  rungs: RungValue[];
}

export interface SweepInput {
  name: string;
  now: Date;
  spec: SweepState;
  prev?: SweepStatus;
  /** The sweep's owner (its file's writer, else its annotation): the trials' owner. */
  owner?: string;
  trials: readonly TrialFacts[];
}

export interface SweepEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface SweepDecision {
  /** Trial files to write, each whole (created, paused, resumed, retired). */
  write: TrainingJob[];
  /** Trial files to delete. */
  remove: string[];
  /** The new status; null: delete the status file. */
  status: SweepStatus | null;
  events: SweepEvent[];
}

const ENDED = new Set(['Succeeded', 'Failed', 'Cancelled', 'Invalid']);
/** Job phases in which nothing of a trial runs any more (a paused trial ends Suspended). */
const SETTLED = new Set([...ENDED, 'Suspended']);

/** The generation a spec with `hash` is: the status's, the trials' (status lost), or the next. */
export function generationOf(hash: string, prev: SweepStatus | undefined, trials: readonly TrialFacts[]): number {
  if (prev?.specHash === hash) return Math.max(1, prev.generation);
  const fromTrials = trials.filter((t) => t.job?.metadata.annotations?.[SWEEP_HASH_ANNOTATION] === hash);
  if (!prev && fromTrials.length) return Math.max(...fromTrials.map((t) => t.generation));
  const seen = Math.max(prev?.generation ?? 0, ...trials.map((t) => t.generation));
  return seen + 1;
}

/** A trial's state from its file and status. */
function stateOf(t: TrialFacts, prev: TrialRecord | undefined): { state: TrialState; why?: string } {
  if (!t.job)
    return prev && prev.state !== 'running'
      ? { state: prev.state, why: prev.why }
      : { state: 'failed', why: 'its file was deleted' };
  const stopped = t.job.metadata.annotations?.[STOPPED_ANNOTATION];
  if (t.phase === 'Succeeded') return { state: 'succeeded' };
  if (t.phase === 'Failed' || t.phase === 'Invalid')
    return { state: 'failed', why: `${t.reason ?? t.phase}: ${t.message ?? ''}`.slice(0, 1024) };
  if (t.phase === 'Cancelled') return { state: 'stopped', why: 'cancelled' };
  if (t.job.spec.suspend) return { state: stopped ? 'paused' : 'stopped', why: stopped ?? 'spec.suspend set by hand' };
  return { state: 'running' };
}

function withSuspend(job: TrainingJob, suspend: boolean, why?: string): TrainingJob {
  const annotations = { ...job.metadata.annotations };
  if (why) annotations[STOPPED_ANNOTATION] = why;
  else delete annotations[STOPPED_ANNOTATION];
  return { ...job, metadata: { ...job.metadata, annotations }, spec: { ...job.spec, suspend } };
}

function counts(records: readonly TrialRecord[], total: number, gen: number): SweepStatus['counts'] {
  const cur = records.filter((r) => r.generation === gen);
  const n = (s: TrialState) => cur.filter((r) => r.state === s).length;
  return {
    total,
    pending: Math.max(0, total - cur.length),
    running: n('running'),
    paused: n('paused'),
    stopped: n('stopped'),
    succeeded: n('succeeded'),
    failed: n('failed'),
  };
}

export function decideSweep(input: SweepInput): SweepDecision {
  const { prev, now } = input;
  const at = now.toISOString();
  const out: SweepDecision = { write: [], remove: [], status: null, events: [] };
  const base = (): SweepStatus => ({
    phase: 'Running',
    generation: prev?.generation ?? 0,
    createdAt: prev?.createdAt ?? at,
    trials: prev?.trials ?? [],
    counts: prev?.counts ?? { total: 0, pending: 0, running: 0, paused: 0, stopped: 0, succeeded: 0, failed: 0 },
    ...(prev?.specHash ? { specHash: prev.specHash } : {}),
    ...(prev?.objective ? { objective: prev.objective } : {}),
    ...(prev?.rungs ? { rungs: prev.rungs } : {}),
    ...(prev?.best ? { best: prev.best } : {}),
    ...(input.owner ? { owner: input.owner } : prev?.owner ? { owner: prev.owner } : {}),
  });
  if (input.spec.kind === 'deleted') {
    const left = input.trials.filter((t) => t.job).map((t) => t.name);
    if (!left.length) return out;
    out.remove = left;
    out.status = { ...base(), phase: 'Deleting', reason: 'Deleting', message: `deleting ${left.length} trial(s)` };
    if (prev?.phase !== 'Deleting')
      out.events.push({ type: 'Normal', reason: 'Deleting', message: `sweep deleted: removing ${left.join(', ')}` });
    return out;
  }
  if (input.spec.kind === 'invalid') {
    const message = input.spec.issues.map((i) => `${i.line ? `line ${i.line}: ` : ''}${i.path}: ${i.message}`);
    out.status = { ...base(), phase: 'Invalid', reason: 'Invalid', message: message.join('\n') };
    if (prev?.phase !== 'Invalid' || prev.message !== out.status.message)
      out.events.push({ type: 'Warning', reason: 'Invalid', message: `${input.spec.file}: ${message.join('; ')}` });
    return out;
  }
  const { sweep, hash } = input.spec;
  const spec = sweep.spec;
  const gen = generationOf(hash, prev, input.trials);
  const sets = expandParameters(spec.parameters);
  const prevOf = new Map((prev?.trials ?? []).map((r) => [r.name, r]));
  const records = new Map<string, TrialRecord>();
  if (prev && prev.specHash !== hash && prev.specHash)
    out.events.push({ type: 'Normal', reason: 'NewGeneration', message: `spec changed: generation ${gen}` });

  // Every trial known (from the files, then from the last status), as a record.
  const facts = new Map(input.trials.map((t) => [t.name, t]));
  for (const r of prev?.trials ?? [])
    if (!facts.has(r.name)) facts.set(r.name, { ...r, rungs: r.rungs, job: undefined });
  for (const t of facts.values()) {
    const p = prevOf.get(t.name);
    const s = stateOf(t, p);
    const rungs = t.rungs.length >= (p?.rungs.length ?? 0) ? t.rungs : (p?.rungs ?? []);
    // A newer line that diverged replaces the last finite objective: never judged on a stale value.
    const diverged = t.diverged || (t.objective === undefined && p?.diverged === true);
    const objective = diverged ? undefined : (t.objective ?? p?.objective);
    records.set(t.name, {
      name: t.name,
      generation: t.generation,
      index: t.index,
      params: t.params,
      state: s.state,
      rungs,
      ...(t.phase ? { phase: t.phase } : p?.phase ? { phase: p.phase } : {}),
      ...(t.step !== undefined ? { step: t.step } : p?.step !== undefined ? { step: p.step } : {}),
      ...(objective !== undefined ? { objective } : {}),
      ...(diverged ? { diverged: true as const } : {}),
      ...(s.why ? { why: s.why } : {}),
    });
  }

  // An older generation's trial still running is retired (suspended, kept as history).
  for (const t of input.trials) {
    const r = records.get(t.name);
    if (!r || t.generation === gen || !t.job) continue;
    if (r.state === 'running') {
      const why = `superseded by generation ${gen} (the sweep's spec changed)`;
      out.write.push(withSuspend(t.job, true, why));
      r.state = 'superseded';
      r.why = why;
    } else if (r.state === 'paused') r.state = 'superseded';
  }

  const current = [...records.values()].filter((r) => r.generation === gen);
  const verdicts = earlyStop(spec, current);
  const byName = (n: string) => facts.get(n)?.job;
  // Pauses and stops: a running trial judged not to go on.
  for (const r of current) {
    const v = verdicts.get(r.name);
    const job = byName(r.name);
    if (r.state !== 'running' || !v || v.goOn || !job || (r.phase && ENDED.has(r.phase))) continue;
    const why = v.why;
    out.write.push(withSuspend(job, true, why));
    r.state = spec.earlyStopping?.type === 'asha' ? 'paused' : 'stopped';
    r.why = why;
    out.events.push({
      type: 'Normal',
      reason: r.state === 'paused' ? 'TrialPaused' : 'TrialStopped',
      message: `${r.name}: ${why}`,
    });
  }
  let slots = spec.maxParallel - current.filter((r) => r.state === 'running').length;
  // Promotions first (ASHA's order), best first: a paused trial now in the best 1/eta resumes.
  const promoted = current
    .filter((r) => r.state === 'paused' && verdicts.get(r.name)?.goOn && byName(r.name))
    .sort((a, b) => (verdicts.get(b.name)?.rung ?? 0) - (verdicts.get(a.name)?.rung ?? 0));
  for (const r of promoted) {
    if (slots <= 0) break;
    const why = verdicts.get(r.name)?.why ?? 'promoted';
    out.write.push(withSuspend(byName(r.name) as TrainingJob, false));
    r.state = 'running';
    r.why = why;
    slots--;
    out.events.push({ type: 'Normal', reason: 'TrialPromoted', message: `${r.name}: ${why}` });
  }
  // New trials, in index order.
  const made = new Set(current.map((r) => r.index));
  for (let i = 0; i < sets.length && slots > 0; i++) {
    if (made.has(i)) continue;
    const job = trialJob(sweep, hash, gen, i, sets[i], input.owner);
    out.write.push(job);
    records.set(job.metadata.name, {
      name: job.metadata.name,
      generation: gen,
      index: i,
      params: sets[i],
      state: 'running',
      rungs: [],
    });
    made.add(i);
    slots--;
    out.events.push({
      type: 'Normal',
      reason: 'TrialCreated',
      message: `${job.metadata.name}: ${JSON.stringify(sets[i])}`,
    });
  }
  out.status = finish(input, base(), [...records.values()], gen, hash, sets.length);
  if (out.status.phase !== 'Running' && prev?.phase !== out.status.phase)
    out.events.push({ type: 'Normal', reason: out.status.phase, message: out.status.message ?? '' });
  return out;
}

/** Verdicts of the sweep's early-stopping rule over its current trials (none without one). */
function earlyStop(spec: Extract<SweepState, { kind: 'valid' }>['sweep']['spec'], current: TrialRecord[]) {
  const es = spec.earlyStopping;
  const { metric, goal } = spec.objective;
  if (!es) return new Map<string, Verdict>();
  return es.type === 'asha'
    ? ashaVerdicts(es.rungs, es.eta, goal, metric, current)
    : medianVerdicts(es.steps, es.minTrials, goal, metric, current);
}

/** The status: counts, the best trial, and the phase (done when nothing runs, waits or can resume). */
function finish(
  input: SweepInput,
  s: SweepStatus,
  records: TrialRecord[],
  gen: number,
  hash: string,
  total: number,
): SweepStatus {
  const spec = (input.spec as Extract<SweepState, { kind: 'valid' }>).sweep.spec;
  const es = spec.earlyStopping;
  const cur = records.filter((r) => r.generation === gen);
  const c = counts(records, total, gen);
  // Promotable trials were resumed above (slots are free when nothing runs): none is left waiting.
  // A trial being paused or stopped still runs until its job says so: the sweep ends after it.
  const stopping = cur.some((r) => r.phase !== undefined && !SETTLED.has(r.phase));
  const done = c.pending === 0 && c.running === 0 && !stopping;
  // A paused trial of a finished sweep will not be promoted any more: it stopped at its rung.
  if (done) for (const r of cur) if (r.state === 'paused') r.state = 'stopped';
  const sign = spec.objective.goal === 'minimize' ? 1 : -1;
  const best = cur
    .filter((r) => r.state === 'succeeded' && r.objective !== undefined)
    .sort((a, b) => sign * ((a.objective as number) - (b.objective as number)) || a.index - b.index)[0];
  const order = (r: TrialRecord) => (r.generation === gen ? 0 : 1);
  const trials = records.sort((a, b) => order(a) - order(b) || b.generation - a.generation || a.index - b.index);
  const fin = done ? counts(trials, total, gen) : c;
  const phase = done ? (fin.succeeded > 0 ? 'Succeeded' : 'Failed') : 'Running';
  const p = input.prev;
  const again = !!p?.completionTime && p.phase === phase && p.generation === gen;
  const message = done
    ? fin.succeeded
      ? `${fin.succeeded} trial(s) ran to the end, ${fin.stopped} stopped early, ${fin.failed} failed`
      : `no trial succeeded (${fin.failed} failed, ${fin.stopped} stopped)`
    : `${fin.running} running, ${fin.paused} paused, ${fin.pending} pending of ${total}`;
  const { best: _b, completionTime: _c, reason: _r, ...rest } = s;
  return {
    ...rest,
    phase,
    reason: done ? (phase === 'Succeeded' ? 'Completed' : 'NoTrialSucceeded') : 'Running',
    message,
    specHash: hash,
    generation: gen,
    objective: spec.objective,
    rungs: es ? [...(es.type === 'asha' ? es.rungs : es.steps)] : [],
    trials,
    counts: fin,
    ...(best
      ? {
          best: {
            trial: best.name,
            objective: best.objective as number,
            ...(best.step !== undefined ? { step: best.step } : {}),
          },
        }
      : {}),
    ...(done ? { completionTime: again ? (input.prev?.completionTime as string) : input.now.toISOString() } : {}),
  };
}
