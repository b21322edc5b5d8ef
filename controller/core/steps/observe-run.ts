/**
 * Step 5: the current attempt of this spec, as the hosts show it: finish a half-done launch,
 * stop the gang when a member failed, enforce the deadline, report Running, or end it
 * (Succeeded; Failed; or back to Queued for a restart after a backoff).
 */
import type { FailureRecord } from '../../api/status.ts';
import type { TrainingJob } from '../../api/trainingjob.ts';
import type { Draft } from '../draft.ts';
import {
  backoffMs,
  budgetOf,
  classifyRun,
  countFailures,
  failureRecord,
  type RunFailure,
  type RunOutcome,
  withRecord,
} from '../failures.ts';
import { iso, nodeStatuses, partFailed, type RunView, runAlive, runStoppedOnPurpose } from '../run-view.ts';
import type { ReconcileResult } from '../types.ts';

/** What the next step should do when this one does not end the pass. */
export interface ScheduleNext {
  attempt: number;
  /** The attempt that was stopped on purpose and now resumes (suspend off, cancel withdrawn). */
  resuming?: RunView;
}

interface Ctx {
  d: Draft;
  job: TrainingJob;
  hash: string;
  /** Runs of this spec, oldest first. */
  mine: RunView[];
}

function missingHosts(d: Draft, run: RunView): string[] {
  return run.meta.hosts.filter((h) => !run.parts.some((p) => p.host === h) && !d.input.unreachable.has(h));
}

function ageSeconds(d: Draft, run: RunView): number {
  return (d.input.now.getTime() - Date.parse(run.meta.createdAt)) / 1000;
}

/** Outcomes of every run of this spec (older ones are over: their missing hosts never came). */
function outcomes(c: Ctx): Map<number, RunOutcome> {
  const m = new Map<number, RunOutcome>();
  const { rdzvTimeoutSeconds } = c.d.input.cluster;
  for (const r of c.mine) {
    const missing = missingHosts(c.d, r);
    const gaveUp = missing.length > 0 && ageSeconds(c.d, r) >= rdzvTimeoutSeconds;
    m.set(
      r.attempt,
      classifyRun(r, { missing, gaveUp, rdzvTimeoutSeconds, deadlineSeconds: c.job.spec.activeDeadlineSeconds }),
    );
  }
  return m;
}

export function observeRun(c: Ctx): ReconcileResult | ScheduleNext {
  const { d, hash } = c;
  const prevAttempt = d.prev?.specHash === hash ? d.prev.attempt : 0;
  const current = c.mine[c.mine.length - 1];
  const last = Math.max(current?.attempt ?? 0, prevAttempt);

  if (current && current.attempt === last) {
    // Stopped on purpose (suspend now off, or a cancel withdrawn): not a failure, a new attempt.
    if (runStoppedOnPurpose(current)) return { attempt: last + 1, resuming: current };
    return observeCurrent(c, current);
  }
  // The status names an attempt the hosts do not show.
  const record = d.status.failures?.find((r) => r.attempt === last);
  if (last > 0 && record) {
    // A launch that failed before anything started anywhere: its record stands for the run.
    d.status.attempt = last;
    return decide(c, last, recordFailure(record));
  }
  const away = (d.prev?.nodes ?? []).filter((n) => d.input.unreachable.has(n.host)).map((n) => n.host);
  if (last > 0 && d.prev?.specHash === hash && away.length) {
    // Its hosts did not answer: it may well be running there. Wait; never launch it twice.
    d.status.attempt = last;
    d.status.runId = d.prev.runId;
    d.status.nodes = d.prev.nodes.map((n) => (away.includes(n.host) ? { ...n, state: 'Unknown' } : n));
    d.cond(
      'HostsReachable',
      'False',
      'HostUnreachable',
      away.map((h) => `${h}: ${d.input.unreachable.get(h)}`).join('; '),
    );
    return d.finish(d.prev.phase, d.prev.reason ?? 'HostUnreachable', d.prev.message ?? '', 5000);
  }
  // Nothing of attempt `last` ever reached a host (the controller stopped before launching it):
  // launch that attempt number; otherwise the next one.
  return { attempt: last > (current?.attempt ?? 0) ? last : last + 1 };
}

function recordFailure(r: FailureRecord): RunFailure {
  return {
    class: r.class,
    reason: r.reason,
    message: r.message,
    ...(r.host !== undefined ? { host: r.host } : {}),
    ...(r.rank !== undefined ? { rank: r.rank } : {}),
    ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
  };
}

function observeCurrent(c: Ctx, current: RunView): ReconcileResult | ScheduleNext {
  const { d, job, hash } = c;
  const { unreachable, cluster, now } = d.input;
  const s = d.status;
  s.attempt = current.attempt;
  s.runId = current.runId;
  s.rdzvEndpoint = current.meta.rdzvEndpoint;
  s.nodes = nodeStatuses(current, unreachable);
  const launched = current.parts.map((p) => p.launchedAtMs).filter((x): x is number => x !== undefined);
  s.startTime = iso(launched.length ? Math.min(...launched) : undefined) ?? s.startTime ?? d.now;
  const prog = current.parts.find((p) => p.metrics)?.metrics;
  if (prog) s.progress = prog;
  const hosts = current.meta.hosts;
  const missing = missingHosts(d, current);
  const unknown = hosts.filter((h) => unreachable.has(h));
  const anyFailed =
    current.parts.some(partFailed) ||
    current.parts.some((p) => p.ranks.some((r) => r.exitCode !== undefined && r.exitCode !== 0 && r.exitCode < 128));
  const age = ageSeconds(d, current);
  const stoppedByUs = current.parts.some((p) => p.stopReason);

  if (unknown.length) {
    d.cond('HostsReachable', 'False', 'HostUnreachable', unknown.map((h) => `${h}: ${unreachable.get(h)}`).join('; '));
  } else d.cond('HostsReachable', 'True', 'AllReachable', 'every host of the run answered');

  // Half-done launch (controller died mid-way): finish it while the rendezvous still waits.
  if (missing.length && !anyFailed && !stoppedByUs && age < cluster.rdzvTimeoutSeconds) {
    const all = hosts.map((h, i) => ({ host: h, nodeRank: i, nproc: current.meta.nprocPerNode }));
    d.actions.push({
      type: 'launch',
      job: d.input.name,
      runId: current.runId,
      dir: current.dir,
      attempt: current.attempt,
      specHash: hash,
      parts: all.filter((p) => missing.includes(p.host)),
      allParts: all,
      rdzvHost: hosts[0],
      port: current.meta.masterPort,
      createdAt: current.meta.createdAt,
    });
    d.event('LaunchResumed', `finishing the half-done launch of ${current.runId} on ${missing.join(', ')}`);
    return d.finish('Starting', 'Launching', `launching on ${missing.join(', ')}`, 1000);
  }

  const gaveUp = missing.length > 0 && age >= cluster.rdzvTimeoutSeconds;
  // Gang semantics: one node failing fails the run; stop the rest now rather than let them hang.
  if ((anyFailed || gaveUp) && runAlive(current)) {
    d.stop(current, 'gang-failed', 5);
    return d.finish('Running', 'Failing', 'a node failed: stopping the others', 1000);
  }

  const outcome = classifyRun(current, {
    missing,
    gaveUp,
    rdzvTimeoutSeconds: cluster.rdzvTimeoutSeconds,
    deadlineSeconds: job.spec.activeDeadlineSeconds,
  });
  if (outcome.kind === 'running') return running(c, current, unknown);

  const finished = current.parts.map((p) => p.finishedAtMs).filter((x): x is number => x !== undefined);
  const doneAt = iso(finished.length ? Math.max(...finished) : now.getTime());
  if (outcome.kind === 'succeeded') {
    s.completionTime = doneAt;
    s.nextRetryAt = undefined;
    d.cond('Running', 'False', 'Completed', 'all ranks exited 0');
    d.cond('Complete', 'True', 'Succeeded', `attempt ${current.attempt} finished`);
    return d.finish('Succeeded', 'Succeeded', `all ranks exited 0 (attempt ${current.attempt})`);
  }
  if (outcome.kind === 'on-purpose') return { attempt: current.attempt + 1, resuming: current };
  if (outcome.failure.final) s.completionTime ??= doneAt;
  return decide(c, current.attempt, outcome.failure, doneAt);
}

function running(c: Ctx, current: RunView, unknown: string[]): ReconcileResult {
  const { d, job } = c;
  const s = d.status;
  const deadline = job.spec.activeDeadlineSeconds;
  if (deadline && s.startTime && (d.input.now.getTime() - Date.parse(s.startTime)) / 1000 > deadline) {
    d.stop(current, 'deadline-exceeded');
    s.completionTime = d.now;
    const msg = `ran longer than activeDeadlineSeconds (${deadline} s)`;
    d.cond('Running', 'False', 'DeadlineExceeded', msg);
    return d.finish('Failed', 'DeadlineExceeded', msg);
  }
  const hosts = current.meta.hosts;
  const nRanks = s.nodes.reduce((n, x) => n + x.globalRanks.length, 0);
  // A host that stops answering mid-run does not send the job back to Starting: its ranks
  // were up (the HostsReachable condition says what is wrong).
  const wasRunning = d.prev?.phase === 'Running' && d.prev.runId === current.runId;
  const started =
    (current.parts.length === hosts.length || (wasRunning && current.parts.length + unknown.length === hosts.length)) &&
    current.parts.every((p) => p.ranks.length > 0);
  d.cond(
    'Running',
    'True',
    started ? 'RanksRunning' : 'Rendezvous',
    started ? `${nRanks} ranks running on ${hosts.length} hosts` : 'torchrun started; waiting for all ranks',
  );
  // The runtime holds a waiter per part that wakes us on exit; 30 s is only a safety net. Nothing
  // wakes us when ranks come up, so look again soon while starting.
  const msg = `attempt ${current.attempt}: ${started ? `${nRanks} ranks on ${hosts.join(', ')}` : 'waiting for rendezvous'}`;
  return d.finish(
    started ? 'Running' : 'Starting',
    started ? 'Running' : 'Rendezvous',
    msg,
    unknown.length ? 5000 : started ? 30_000 : 1000,
  );
}

/** A failed attempt: count it, then Failed (final or budget spent), a backoff, or the next attempt. */
function decide(c: Ctx, attempt: number, failure: RunFailure, doneAt?: string): ReconcileResult | ScheduleNext {
  const { d, job } = c;
  const s = d.status;
  const counts = countFailures(outcomes(c), s.failures ?? []);
  s.restarts = counts;
  const existing = s.failures?.find((r) => r.attempt === attempt);
  // A record made by the controller (a launch failure) says more than the hosts can.
  const what = existing?.message ?? failure.message;
  if (failure.class === 'training') {
    s.exitCode = failure.exitCode ?? 1;
    s.failedRank = failure.rank;
    s.failedHost = failure.host;
    s.logTail = failure.logTail;
  }
  const cls = existing?.class ?? failure.class;
  const reason = existing?.reason ?? failure.reason;
  if (!existing) {
    s.failures = withRecord(s.failures, failureRecord(attempt, failure, d.now));
    s.nextRetryAt = new Date(d.input.now.getTime() + backoffMs(job, cls, counts[cls])).toISOString();
  }
  if (failure.final) {
    s.nextRetryAt = undefined;
    d.cond('Running', 'False', reason, what);
    return d.finish('Failed', reason, what);
  }
  const max = budgetOf(job, cls);
  if (counts[cls] > max) {
    s.completionTime ??= doneAt ?? d.now;
    s.nextRetryAt = undefined;
    d.cond('Running', 'False', 'Failed', what);
    d.cond('Complete', 'False', 'Failed', what);
    const after = max
      ? ` (after ${max} ${cls === 'infra' ? 'infrastructure ' : ''}restart${max === 1 ? '' : 's'})`
      : '';
    return d.finish('Failed', reason, `${what}${after}`);
  }
  const due = Date.parse(s.nextRetryAt ?? d.now);
  const left = due - d.input.now.getTime();
  if (left > 0) {
    d.cond('Running', 'False', 'BackoffRestart', `${what}; restarting in ${Math.ceil(left / 1000)} s`);
    const msg = `attempt ${attempt} failed: ${what}; restart ${counts[cls]} of ${max} after backoff`;
    return d.finish('Queued', 'BackoffRestart', msg, left);
  }
  s.nextRetryAt = undefined;
  d.event('Restarting', `attempt ${attempt} failed (${what}); starting attempt ${attempt + 1}`, 'Warning');
  return { attempt: attempt + 1 };
}
