/**
 * Step 5: the current attempt of this spec, as the hosts show it: finish a half-done launch;
 * detect what ends it early (a lost node, a vanished runner, a failed member, stalled progress,
 * the deadline) and stop the gang; report Running (with restarts at a checkpoint on purpose:
 * at-checkpoint.ts); or end it (Succeeded; Failed; or back to
 * Queued for a restart after a backoff).
 */
import type { FailureRecord } from '../../api/status.ts';
import type { TrainingJob } from '../../api/trainingjob.ts';
import { oomOverride, withBatches } from '../batch.ts';
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
import { progressPart } from '../live-progress.ts';
import {
  iso,
  nodeStatuses,
  partFailed,
  type RunView,
  runAlive,
  runStoppedOnPurpose,
  vanishedParts,
} from '../run-view.ts';
import type { ReconcileResult, ScheduleNext } from '../types.ts';
import { rebalance, scaleUp } from './at-checkpoint.ts';

/** Grace for stopping the rest of a gang whose members are all still there (a vanished runner's ranks). */
const GANG_GRACE_SECONDS = 5;
/**
 * Grace when a peer is gone (failed, lost, stalled, or never came): the survivors wait in a
 * collective for it, so their SIGTERM checkpoint (which needs every rank) cannot happen; a longer
 * grace only delays the restart (a survivor stuck there leaves only on the SIGKILL after it:
 * npm run bench, recovery, crash-stuck-peer). 2 s is left for a script's own quick cleanup.
 */
const PEER_GONE_GRACE_SECONDS = 2;

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

/** Hosts of `run` that are lost: unreachable now, and silent for longer than nodeLostSeconds. */
function lostHosts(c: Ctx, run: RunView): { host: string; since: number }[] {
  const { unreachable, cluster, now } = c.d.input;
  const limit = c.job.spec.failurePolicy.nodeLostSeconds * 1000;
  const out: { host: string; since: number }[] = [];
  for (const h of run.meta.hosts) {
    // A Slurm login host holds none of the run's processes: losing contact with it is not losing the run.
    if (cluster.hosts.find((x) => x.name === h)?.slurm) continue;
    const last = cluster.lastHeard.get(h);
    if (unreachable.has(h) && last !== undefined && now.getTime() - last > limit) out.push({ host: h, since: last });
  }
  return out;
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
      classifyRun(r, {
        missing,
        gaveUp,
        rdzvTimeoutSeconds,
        deadlineSeconds: c.job.spec.activeDeadlineSeconds,
        gone: lostHosts(c, r).map((l) => l.host),
        exitCodes: c.job.spec.restartPolicy.exitCodes,
        batch: !!c.job.spec.batch,
      }),
    );
  }
  return m;
}

/**
 * Record a failure of `attempt` the moment it is detected (once): the record names the cause
 * (which host, which rank) better than the stopped run will, and the backoff starts now.
 */
function noteFailure(c: Ctx, attempt: number, f: RunFailure): boolean {
  const s = c.d.status;
  if (s.failures?.some((r) => r.attempt === attempt)) return false;
  // Failures before this one (its own run may already show as failed), plus this one.
  const before = outcomes(c);
  before.delete(attempt);
  const n = countFailures(before, s.failures ?? [])[f.class] + 1;
  s.failures = withRecord(s.failures, failureRecord(attempt, f, c.d.now));
  s.nextRetryAt = new Date(c.d.input.now.getTime() + backoffMs(c.job, f.class, n)).toISOString();
  return true;
}

export function observeRun(c: Ctx): ReconcileResult | ScheduleNext {
  const { d, hash } = c;
  const prevAttempt = d.prev?.specHash === hash ? d.prev.attempt : 0;
  const current = c.mine[c.mine.length - 1];
  const last = Math.max(current?.attempt ?? 0, prevAttempt);
  const since = c.mine.length ? Date.parse(c.mine[0].meta.createdAt) : undefined;

  if (current && current.attempt === last) {
    // Stopped on purpose (suspend now off, or a cancel withdrawn): not a failure, a new attempt.
    if (runStoppedOnPurpose(current))
      return { attempt: last + 1, resuming: current, prefer: current.meta.hosts, since };
    return observeCurrent(c, current);
  }
  // The status names an attempt the hosts do not show.
  const record = d.status.failures?.find((r) => r.attempt === last);
  if (last > 0 && record) {
    // A launch that failed before anything started anywhere: its record stands for the run.
    d.status.attempt = last;
    return decide(c, last, recordFailure(record), undefined, current?.meta.hosts);
  }
  const away = (d.prev?.nodes ?? []).filter((n) => d.input.unreachable.has(n.host)).map((n) => n.host);
  if (last > 0 && d.prev?.specHash === hash && away.length) {
    // Its hosts did not answer: it may well be running there. Wait; never launch it twice.
    d.status.attempt = last;
    d.status.runId = d.prev.runId;
    d.status.nodes = d.prev.nodes.map((n) => (away.includes(n.host) ? { ...n, state: 'Unknown' } : n));
    if (d.prev.slurm) d.status.slurm = d.prev.slurm;
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
  return { attempt: last > (current?.attempt ?? 0) ? last : last + 1, since };
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
  const prog = progressPart(current.parts)?.metrics;
  if (prog) s.progress = prog;
  const slurm = current.parts.find((p) => p.slurm)?.slurm;
  if (slurm) s.slurm = slurm;
  const hosts = current.meta.hosts;
  const missing = missingHosts(d, current);
  const unknown = hosts.filter((h) => unreachable.has(h));
  const stoppedByUs = current.parts.some((p) => p.stopReason);
  // A rank that exits non-zero fails the gang, unless UGRO is already stopping the run (then the
  // exits are its own signals arriving).
  const anyFailed =
    current.parts.some(partFailed) ||
    (!stoppedByUs && current.parts.some((p) => p.ranks.some((r) => r.exitCode !== undefined && r.exitCode !== 0)));
  const age = ageSeconds(d, current);
  const alive = runAlive(current);

  if (unknown.length) {
    d.cond('HostsReachable', 'False', 'HostUnreachable', unknown.map((h) => `${h}: ${unreachable.get(h)}`).join('; '));
  } else d.cond('HostsReachable', 'True', 'AllReachable', 'every host of the run answered');

  // Half-done launch (controller died mid-way): finish it while the rendezvous still waits.
  if (missing.length && !anyFailed && !stoppedByUs && age < cluster.rdzvTimeoutSeconds) {
    // The GPUs each node was given are in the status written before the launch (and in the
    // meta of the parts that did start): the missing parts get the same, and the same batch split.
    const gpusOfHost = (h: string) =>
      current.parts.find((p) => p.host === h)?.meta.gpus ?? d.prev?.nodes.find((n) => n.host === h)?.gpus;
    const all = withBatches(
      job,
      hosts.map((h, i) => {
        const gpus = gpusOfHost(h);
        return { host: h, nodeRank: i, nproc: current.meta.nprocPerNode, ...(gpus?.length ? { gpus } : {}) };
      }),
      s.batchOverrides,
      s.balance?.speeds,
    );
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

  // A lost node: its peers cannot go on; stop them and restart the gang.
  const lost = lostHosts(c, current);
  if (lost.length) {
    const l = lost[0];
    const silent = Math.round((now.getTime() - l.since) / 100) / 10;
    const what = `node ${l.host} lost: no answer since ${new Date(l.since).toISOString()} (${silent} s)`;
    d.cond('NodeLost', 'True', 'NodeLost', what);
    if (noteFailure(c, current.attempt, { class: 'infra', reason: 'NodeLost', message: what, host: l.host })) {
      d.event('NodeLost', what, 'Warning');
    }
    if (alive) {
      d.stop(current, 'node-lost', PEER_GONE_GRACE_SECONDS);
      return d.finish('Running', 'NodeLost', `${what}: stopping the others`, 1000);
    }
  } else if (d.conditions.some((x) => x.type === 'NodeLost' && x.status === 'True')) {
    d.cond('NodeLost', 'False', 'NodesAnswering', 'every host of the run answers');
  }

  // A runner gone without an exit code (host rebooted, OOM killer, kill -9 of the runner).
  const vanished = vanishedParts(current);
  if (vanished.length && !lost.length) {
    const v = vanished[0];
    const what =
      `the runner on ${v.host} (pid ${v.pid}) vanished without an exit code ` +
      '(host rebooted? OOM killer? see dmesg)';
    if (noteFailure(c, current.attempt, { class: 'infra', reason: 'RunnerVanished', message: what, host: v.host })) {
      d.event('RunnerVanished', what, 'Warning');
    }
    if (alive) {
      d.stop(current, 'runner-vanished', GANG_GRACE_SECONDS);
      return d.finish('Running', 'RunnerVanished', `${what}: stopping the others`, 1000);
    }
  }

  const gaveUp = missing.length > 0 && age >= cluster.rdzvTimeoutSeconds;
  // Gang semantics: one node failing fails the run; stop the rest now rather than let them hang.
  if ((anyFailed || gaveUp) && alive) {
    d.stop(current, 'gang-failed', PEER_GONE_GRACE_SECONDS);
    return d.finish('Running', 'Failing', 'a node failed: stopping the others', 1000);
  }

  const outcome = classifyRun(current, {
    missing,
    gaveUp,
    rdzvTimeoutSeconds: cluster.rdzvTimeoutSeconds,
    deadlineSeconds: job.spec.activeDeadlineSeconds,
    gone: lost.map((l) => l.host),
    exitCodes: job.spec.restartPolicy.exitCodes,
    batch: !!job.spec.batch,
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
  if (outcome.kind === 'on-purpose') {
    return { attempt: current.attempt + 1, resuming: current, prefer: hosts, since: sinceOf(c) };
  }
  if (outcome.failure.final) s.completionTime ??= doneAt;
  const usable = hosts.filter((h) => !lost.some((l) => l.host === h));
  return decide(c, current.attempt, outcome.failure, doneAt, usable);
}

function sinceOf(c: Ctx): number | undefined {
  return c.mine.length ? Date.parse(c.mine[0].meta.createdAt) : undefined;
}

function running(c: Ctx, current: RunView, unknown: string[]): ReconcileResult {
  const { d, job } = c;
  const s = d.status;
  // Waiting in the backend's own queue (Slurm PENDING): Queued with its reason; the time there
  // counts toward no deadline. The backend's waiter wakes the job when that changes.
  const waiting = current.parts.find((p) => p.alive && p.waiting)?.waiting;
  if (waiting) {
    d.cond('Running', 'False', waiting.reason, waiting.message);
    return d.finish('Queued', waiting.reason, waiting.message, 30_000);
  }
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

  // Hang detection: every rank touches its heartbeat file each step; one that stops for
  // progressDeadlineSeconds fails the gang. The one whose heartbeat stopped first is named.
  const progress = job.spec.failurePolicy.progressDeadlineSeconds;
  let nextCheckMs = Number.POSITIVE_INFINITY;
  if (progress && started) {
    let worst: { host: string; rank: number; age: number } | undefined;
    let stopped: { host: string; rank: number; age: number } | undefined;
    for (const p of current.parts) {
      for (const r of p.ranks) {
        if (r.exitCode !== undefined || r.heartbeatAgeS === undefined) continue;
        const x = { host: p.host, rank: r.rank, age: r.heartbeatAgeS };
        if (!worst || x.age > worst.age) worst = x;
        // A stopped process (SIGSTOP, a debugger) is the cause, however close the heartbeats are:
        // its peers stop beating a moment later, waiting for it in a collective.
        if (/^[Tt]$/.test(r.procState ?? '') && (!stopped || x.age > stopped.age)) stopped = x;
      }
    }
    if (worst && worst.age > progress) {
      if (stopped && stopped.age > progress) worst = stopped;
      const what =
        `rank ${worst.rank} on ${worst.host} made no progress for ${worst.age.toFixed(1)} s ` +
        `(failurePolicy.progressDeadlineSeconds: ${progress})`;
      const failure: RunFailure = {
        class: 'training',
        reason: 'ProgressStalled',
        message: what,
        host: worst.host,
        rank: worst.rank,
      };
      if (noteFailure(c, current.attempt, failure)) d.event('ProgressStalled', what, 'Warning');
      d.stop(current, 'stalled', PEER_GONE_GRACE_SECONDS);
      return d.finish('Running', 'ProgressStalled', `${what}: stopping the gang`, 1000);
    }
    if (worst) nextCheckMs = Math.max(200, (progress - worst.age) * 1000 + 200);
  }

  for (const at of [scaleUp, rebalance]) {
    const r = at(d, job, current, started, sinceOf(c));
    if (r && 'result' in r) return r.result;
    if (r) nextCheckMs = Math.min(nextCheckMs, r.pollMs);
  }

  d.cond(
    'Running',
    'True',
    started ? 'RanksRunning' : 'Rendezvous',
    started ? `${nRanks} ranks running on ${hosts.length} hosts` : 'torchrun started; waiting for all ranks',
  );
  // The runtime holds a waiter per part that wakes us on exit; 30 s is only a safety net. Nothing
  // wakes us when ranks come up, so look again soon while starting.
  const where = started ? `${nRanks} ranks on ${hosts.join(', ')}` : 'waiting for rendezvous';
  const msg = `attempt ${current.attempt}: ${where}`;
  // A host that does not answer is looked at again exactly when it would count as lost.
  const limit = job.spec.failurePolicy.nodeLostSeconds * 1000;
  for (const h of unknown) {
    const last = d.input.cluster.lastHeard.get(h);
    if (last !== undefined)
      nextCheckMs = Math.min(nextCheckMs, Math.max(50, last + limit - d.input.now.getTime() + 50));
  }
  const requeue = Math.min(unknown.length ? 1000 : started ? 30_000 : 1000, nextCheckMs);
  return d.finish(started ? 'Running' : 'Starting', started ? 'Running' : 'Rendezvous', msg, requeue);
}

/**
 * An out-of-memory rank: its micro batch halved for every later attempt (status.batchOverrides,
 * once per failed attempt), and an event that says so.
 */
function halveMicroBatch(c: Ctx, attempt: number, oom: NonNullable<RunFailure['oom']>): void {
  const s = c.d.status;
  const nproc = c.mine.find((r) => r.attempt === attempt)?.meta.nprocPerNode ?? 1;
  const next = oomOverride(s.batchOverrides, oom, attempt, nproc);
  if (!next) return;
  s.batchOverrides = next.overrides;
  c.d.event('OutOfMemory', next.message, 'Warning');
}

/** A failed attempt: count it, then Failed (final or budget spent), a backoff, or the next attempt. */
function decide(
  c: Ctx,
  attempt: number,
  failure: RunFailure,
  doneAt?: string,
  prefer?: string[],
): ReconcileResult | ScheduleNext {
  const { d, job } = c;
  const s = d.status;
  const counts = countFailures(outcomes(c), s.failures ?? []);
  s.restarts = counts;
  const existing = s.failures?.find((r) => r.attempt === attempt);
  // A record made when the failure was detected says more than the stopped run can.
  const what = existing?.message ?? failure.message;
  const rank = existing?.rank ?? failure.rank;
  const host = existing?.host ?? failure.host;
  const exitCode = existing?.exitCode ?? failure.exitCode;
  if (rank !== undefined) s.failedRank = rank;
  if (host !== undefined) s.failedHost = host;
  if (exitCode !== undefined) s.exitCode = exitCode;
  if (failure.logTail?.length) s.logTail = failure.logTail;
  const cls = existing?.class ?? failure.class;
  const reason = existing?.reason ?? failure.reason;
  if (!existing) noteFailure(c, attempt, failure);
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
    const kind = cls === 'infra' ? 'infrastructure ' : cls === 'oom' ? 'out-of-memory ' : '';
    const after = max ? ` (after ${max} ${kind}restart${max === 1 ? '' : 's'})` : '';
    const fix = cls === 'oom' ? ': raise spec.restartPolicy.maxOomRestarts, or set spec.batch.maxMicroBatch' : '';
    return d.finish('Failed', reason, `${what}${after}${fix}`);
  }
  if (cls === 'oom' && failure.oom) halveMicroBatch(c, attempt, failure.oom);
  const due = Date.parse(s.nextRetryAt ?? d.now);
  const left = due - d.input.now.getTime();
  if (left > 0) {
    d.cond('Running', 'False', reason, `${what}; restarting in ${Math.ceil(left / 1000)} s`);
    const of = failure.uncounted ? 'not counted' : `restart ${counts[cls]} of ${max}`;
    return d.finish('Queued', 'BackoffRestart', `attempt ${attempt} failed: ${what}; ${of} after backoff`, left);
  }
  s.nextRetryAt = undefined;
  return { attempt: attempt + 1, afterFailure: { attempt, what }, prefer, since: sinceOf(c) };
}
