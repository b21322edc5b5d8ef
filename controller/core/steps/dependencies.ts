/**
 * Step 5b, before scheduling: spec.after (like Slurm's --dependency). A job whose producers are not
 * done waits (Queued, WaitingForDependency, naming each and its phase); one that can no longer be
 * met (a producer Failed or Cancelled where Succeeded was asked, or deleted) fails it
 * (DependencyFailed); a cycle through spec.after is Invalid, naming it. Only a job that has not
 * started this generation is held: once it launched, its producers' later changes do not stop it.
 * A producer counts by its CURRENT spec: a producer whose spec changed after it succeeded is
 * waited for again (its new version must finish), while its dependents not yet started.
 * A `sweep:` entry waits for the whole sweep (its phase in <name>.sweep.status.yaml, noted by
 * loop/sweeps.ts) and hands the dependent its best trial's newest checkpoint.
 */
import type { Host } from '../../../config/cluster.ts';
import type { TrainingJob } from '../../api/trainingjob.ts';
import type { Draft } from '../draft.ts';
import { checkpointDir } from '../launch.ts';
import type { AfterCheckpoint, JobFacts, ReconcileInput, ReconcileResult } from '../types.ts';
import { newestCheckpoint } from './schedule-next.ts';

export type After = NonNullable<TrainingJob['spec']['after']>[number];

/** The job or sweep an entry names (one namespace: both are files jobs/<name>.yaml). */
export const producerName = (a: After): string => a.sweep ?? a.job ?? '';

/** The names a job waits for (what the index producer -> dependents and cycle search follow). */
export function afterNames(job: TrainingJob | undefined): string[] {
  return (job?.spec.after ?? []).map(producerName);
}

/**
 * A cycle through `name` along spec.after, as the path back to it ([a, b, a]); undefined when
 * none. Cycles among the others only are theirs to report. Each job is visited once.
 */
export function findCycle(name: string, afterOf: (job: string) => readonly string[] | undefined): string[] | undefined {
  const seen = new Set<string>();
  const walk = (at: string, path: string[]): string[] | undefined => {
    for (const next of afterOf(at) ?? []) {
      if (next === name) return [...path, next];
      if (seen.has(next)) continue;
      seen.add(next);
      const found = walk(next, [...path, next]);
      if (found) return found;
    }
    return undefined;
  };
  return walk(name, [name]);
}

export const cycleMessage = (cycle: string[]) => `spec.after: cycle ${cycle.join(' -> ')}`;

type Verdict = { met: true; note: string } | { met: false; wait: string } | { met: false; fail: string };

/** One dependency against what is known of its producer. */
export function judge(dep: After, f: JobFacts | undefined): Verdict {
  if (dep.sweep) return judgeSweep(dep.sweep, dep.phase, f);
  const who = `job ${dep.job}`;
  if (!f) return { met: false, wait: `${who}, which does not exist yet` };
  if (f.sweep) return { met: false, wait: `${who}, which is a Sweep: write \`sweep: ${dep.job}\` to wait for it` };
  if (f.deleted) return { met: false, fail: `${who} was deleted` };
  if (!f.job || f.phase === 'Invalid') return { met: false, wait: `${who}, which is Invalid (fix its spec)` };
  if (!f.phase || f.statusHash !== f.specHash) return { met: false, wait: `${who} (its new spec is not started yet)` };
  const reason = f.reason ? ` (${f.reason})` : '';
  if (f.phase === 'Succeeded') return { met: true, note: `${who} Succeeded` };
  if (f.phase === 'Failed' || f.phase === 'Cancelled') {
    if (dep.phase === 'Completed') return { met: true, note: `${who} ${f.phase}${reason} (Completed is enough)` };
    return { met: false, fail: `${who} ${f.phase}${reason}: it had to succeed` };
  }
  return { met: false, wait: `${who} (${f.phase})` };
}

/** A dependency on a whole sweep: met once it ended (Succeeded: a trial ran to the end). */
function judgeSweep(name: string, want: After['phase'], f: JobFacts | undefined): Verdict {
  const who = `sweep ${name}`;
  if (!f) return { met: false, wait: `${who}, which does not exist yet` };
  if (f.deleted) return { met: false, fail: `${who} was deleted` };
  const s = f.sweep;
  if (!s) return { met: false, wait: `${who}, which is a TrainingJob: write \`job: ${name}\` to wait for it` };
  if (s.phase === 'Deleting') return { met: false, fail: `${who} is being deleted` };
  if (s.phase === 'Invalid') return { met: false, wait: `${who}, which is Invalid (fix its spec)` };
  if (s.phase === 'Succeeded') return { met: true, note: `${who} Succeeded${s.best ? ` (best trial ${s.best})` : ''}` };
  if (s.phase === 'Failed') {
    if (want === 'Completed') return { met: true, note: `${who} Failed (Completed is enough)` };
    return { met: false, fail: `${who} Failed (${s.message ?? 'no trial succeeded'}): it had to succeed` };
  }
  return { met: false, wait: `${who} (${s.phase})` };
}

/**
 * The decision for a job with spec.after that has not started this generation: undefined to go on
 * scheduling, else the pass's result. `started`: this generation already launched an attempt.
 */
export function checkDependencies(
  d: Draft,
  job: TrainingJob,
  hash: string,
  started: boolean,
): ReconcileResult | undefined {
  const deps = job.spec.after ?? [];
  const had = d.conditions.find((c) => c.type === 'DependenciesMet');
  if (!deps.length) {
    if (had) d.conditions = d.conditions.filter((c) => c.type !== 'DependenciesMet');
    return undefined;
  }
  if (started) return undefined;
  const prev = d.prev;
  // Like Slurm's DependencyNeverSatisfied: final for this spec (a new spec is a new try).
  if (prev?.specHash === hash && prev.phase === 'Failed' && prev.reason === 'DependencyFailed')
    return d.finish('Failed', 'DependencyFailed', prev.message ?? 'a dependency failed');
  const producers = d.input.producers ?? new Map<string, JobFacts>();
  const afterOf = (n: string) => (n === d.input.name ? deps.map(producerName) : afterNames(producers.get(n)?.job));
  const cycle = findCycle(d.input.name, afterOf);
  if (cycle) {
    const msg = cycleMessage(cycle);
    d.cond('Valid', 'False', 'DependencyCycle', msg);
    d.cond('DependenciesMet', 'False', 'DependencyCycle', msg);
    return d.finish('Invalid', 'DependencyCycle', msg);
  }
  const verdicts = deps.map((a) => judge(a, producers.get(producerName(a))));
  const failed = verdicts.flatMap((v) => ('fail' in v ? [v.fail] : []));
  if (failed.length) {
    const msg = `cannot start: ${failed.join('; ')} (spec.after)`;
    d.status.completionTime ??= d.now;
    d.cond('DependenciesMet', 'False', 'DependencyFailed', msg);
    return d.finish('Failed', 'DependencyFailed', msg);
  }
  const waits = verdicts.flatMap((v) => ('wait' in v ? [v.wait] : []));
  if (waits.length) {
    const msg = `waits for ${waits.join(', ')}`;
    d.cond('DependenciesMet', 'False', 'WaitingForDependency', msg);
    d.cond('Scheduled', 'False', 'WaitingForDependency', msg);
    // No requeue: a producer's change wakes its dependents (loop/jobs.ts).
    return d.finish('Queued', 'WaitingForDependency', msg);
  }
  const notes = verdicts.flatMap((v) => ('note' in v ? [v.note] : [])).join(', ');
  if (had?.status !== 'True') d.event('DependenciesMet', `${notes}: scheduling`);
  d.cond('DependenciesMet', 'True', 'DependenciesMet', notes);
  return undefined;
}

/**
 * Each launch of a job with spec.after gets each producer's newest complete checkpoint of its
 * current generation: its path on every host of the launch, and a copy from the producer's host
 * to each host of the parts being started that lacks it (unless the producer's dir is shared).
 * A producer with no checkpoint known (none written, or gone) adds nothing.
 */
export function withAfterCheckpoints(input: ReconcileInput, res: ReconcileResult): ReconcileResult {
  const spec = input.spec;
  if (spec.kind !== 'valid' || !spec.job.spec.after?.length || !res.actions.some((a) => a.type === 'launch'))
    return res;
  const host = (n: string) => input.cluster.hosts.find((h) => h.name === n);
  for (const a of res.actions) {
    if (a.type !== 'launch') continue;
    const list: AfterCheckpoint[] = [];
    for (const dep of spec.job.spec.after) {
      const c = afterCheckpoint(
        producerName(dep),
        input.producers?.get(producerName(dep)),
        a.allParts.map((p) => p.host),
        host,
      );
      if (!c) continue;
      const starting = new Set(a.parts.map((p) => p.host));
      c.copyTo = c.copyTo.filter((h) => starting.has(h));
      list.push(c);
    }
    if (list.length) a.after = list;
  }
  return res;
}

function afterCheckpoint(
  name: string,
  f: JobFacts | undefined,
  hosts: string[],
  host: (n: string) => Host | undefined,
): AfterCheckpoint | undefined {
  if (!f?.job || !f.checkpoints?.length) return undefined;
  const since = f.since ? Date.parse(f.since) : undefined;
  const ck = newestCheckpoint(f.checkpoints, since);
  const src = ck && host(ck.host);
  const fromDir = src && checkpointDir(f.job, src);
  if (!ck || !fromDir?.ok) return undefined;
  const dirs: Record<string, string> = {};
  const copyTo: string[] = [];
  for (const hn of new Set(hosts)) {
    const h = host(hn);
    const dir = h && checkpointDir(f.job, h);
    if (!dir?.ok) continue;
    dirs[hn] = dir.path;
    const has = f.checkpoints.some((c) => c.host === hn && c.name === ck.name && c.sizeBytes === ck.sizeBytes);
    if (hn !== ck.host && !has && !f.job.spec.checkpoint?.shared) copyTo.push(hn);
  }
  const trial = f.sweep ? { trial: f.job.metadata.name } : {};
  return { job: name, ...trial, name: ck.name, from: ck.host, fromDir: fromDir.path, dirs, copyTo };
}
