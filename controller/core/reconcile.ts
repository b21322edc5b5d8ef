/**
 * PURE reconcile: (spec, previous status, what the hosts show, cluster view, now) ->
 * (status, actions, requeueAfter). No fs, no ssh, no timers: the runtime executes the actions.
 * Level-triggered: there is no "added/changed/deleted" branch, only "what is, what should be".
 * One function per step of docs/architecture.md's reconcile table, run in this order:
 *   1 deleted  2 invalid  3 older generations stopped  4 cancel/suspend  5 observe the run
 *   5b dependencies (spec.after)  6 schedule the next attempt
 */
import { formatIssue } from '../../config/errors.ts';
import { setCondition } from '../api/status.ts';
import { type Authorized, authorize } from './authorize.ts';
import { Draft } from './draft.ts';
import { groupRuns, runAlive } from './run-view.ts';
import { applySource, specForSource } from './source.ts';
import { reconcileDeleted } from './steps/deleted.ts';
import { checkDependencies, withAfterCheckpoints } from './steps/dependencies.ts';
import { reconcileInvalid } from './steps/invalid.ts';
import { observeRun } from './steps/observe-run.ts';
import { scheduleNext } from './steps/schedule-next.ts';
import { stopRequested } from './steps/stop-requested.ts';
import type { ReconcileInput, ReconcileResult } from './types.ts';

export function reconcile(raw: ReconcileInput): ReconcileResult {
  // Whose job, and was the change theirs to make: a forbidden spec or control never reaches the steps.
  const auth = authorize(raw, raw.auth);
  if (auth.hold) return withAuth(held(raw), auth, raw);
  const input = auth.input;
  // GitOps: an invalid file from git is named by its commit; the source's view goes into the status.
  const spec = specForSource(input.spec, input.source);
  const res = withAuth(applySource(input, reconcileSteps(spec === input.spec ? input : { ...input, spec })), auth, raw);
  const dropped = input.control !== raw.control ? { dropControl: true } : {};
  return input.spec === raw.spec ? { ...res, ...dropped } : { ...res, spec: input.spec, ...dropped };
}

/** A forbidden change with nothing accepted to go on with: the status as it was, no action. */
function held(input: ReconcileInput): ReconcileResult {
  return { status: input.status ? structuredClone(input.status) : null, actions: [], events: [] };
}

/** The authenticated owner, the Authorized condition and the refusals' events, into the result. */
function withAuth(res: ReconcileResult, auth: Authorized, input: ReconcileInput): ReconcileResult {
  if (!input.auth) return res;
  // Every event of a pass that acts on someone's change names them (`actor`), unless it names another.
  const events = [...auth.events, ...res.events].map((e) =>
    e.actor || !auth.changedBy ? e : { ...e, actor: auth.changedBy },
  );
  const s = res.status;
  if (!s) return { ...res, events };
  if (auth.owner) {
    s.owner = auth.owner.owner;
    s.ownerBy = auth.owner.by;
  }
  const had = s.conditions.some((c) => c.type === 'Authorized');
  if (auth.denied) {
    s.conditions = setCondition(
      s.conditions,
      { type: 'Authorized', status: 'False', reason: 'Forbidden', message: auth.denied },
      input.now.toISOString(),
    );
  } else if (had) {
    s.conditions = setCondition(
      s.conditions,
      {
        type: 'Authorized',
        status: 'True',
        reason: 'Authorized',
        message: 'every change came from its owner or an admin',
      },
      input.now.toISOString(),
    );
  }
  return { ...res, events };
}

function reconcileSteps(input: ReconcileInput): ReconcileResult {
  const { spec } = input;
  const runs = groupRuns(input.parts);
  if (spec.kind === 'deleted') return reconcileDeleted(input, runs);
  if (spec.kind === 'invalid') return reconcileInvalid(input, spec);

  const { job, hash } = spec;
  const d = new Draft(input);
  const prev = input.status;
  d.cond('Valid', 'True', 'SpecValid', 'spec is valid');
  // A changed spec is a new generation: attempts count from 1 again, the old outcome is gone.
  if (prev?.specHash !== hash) {
    d.status = {
      phase: d.status.phase,
      observedGeneration: d.status.observedGeneration + 1,
      specHash: hash,
      // Without a previous status (a new job, or a status lost) every run of the hash is adopted.
      ...(prev ? { generationSince: d.now } : {}),
      attempt: 0,
      nodes: [],
      createdAt: d.status.createdAt,
      conditions: d.conditions,
    };
  } else if (prev.generationSince) d.status.generationSince = prev.generationSince;
  const control = input.control;
  if (control?.kind === 'invalid') {
    const msg = control.issues.map((i) => formatIssue(control.file, i)).join('\n');
    if (prev?.conditions.find((c) => c.type === 'ControlValid')?.message !== msg) {
      d.event('InvalidControl', `ignored: ${msg}`, 'Warning');
    }
    d.cond('ControlValid', 'False', 'InvalidControl', `ignored: ${msg}`);
  } else if (d.conditions.some((c) => c.type === 'ControlValid')) {
    d.cond('ControlValid', 'True', 'ControlValid', 'no invalid control request');
  }

  // 3. Runs of an older spec are stopped: the spec changed.
  for (const r of runs) if (r.specHash !== hash && runAlive(r)) d.stop(r, 'spec-changed');

  // This generation's runs: an older generation of the same spec (the spec was changed and then
  // changed back) ran before generationSince; its runs are history, not this generation's.
  const since = d.status.generationSince ? Date.parse(d.status.generationSince) : undefined;
  const mine = runs.filter(
    (r) => r.specHash === hash && (since === undefined || Date.parse(r.meta.createdAt) >= since),
  );
  if (prev && prev.specHash !== hash && runs.some((r) => r.specHash === hash && !mine.includes(r))) {
    d.event('SpecReverted', `the spec is back to an earlier version (${hash}): training it again`);
  }
  const current = mine[mine.length - 1];
  // A leftover of an older attempt alive on a host that came back: one generation at a time.
  for (const r of mine) if (r !== current && runAlive(r)) d.stop(r, 'superseded', 5);
  const stopped = stopRequested(d, job, hash, current);
  if (stopped) return stopped;
  const observed = observeRun({ d, job, hash, mine });
  if ('status' in observed) return withAfterCheckpoints(input, observed);
  // 5b. spec.after: only before this generation's first launch (started: a run, or an attempt).
  const started = mine.length > 0 || (prev?.specHash === hash && prev.attempt > 0);
  const held = checkDependencies(d, job, hash, started);
  if (held) return held;
  return withAfterCheckpoints(input, scheduleNext(d, job, hash, observed));
}
