/**
 * PURE failure accounting. A finished attempt is classified once (succeeded, stopped on purpose,
 * or failed with a class and reason); counts per class are rebuilt every time from what the hosts
 * show plus the status's failure records (launches that left nothing on any host), so a restarted
 * controller counts the same. Backoff runs on the controller's clock only.
 */
import type { RankObservation, RankOom } from '../api/run.ts';
import type { FailureClass, FailureRecord, JobStatus } from '../api/status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import type { OomRank } from './batch.ts';
import { firstFailure, type RunView, runAlive, runStoppedOnPurpose, runStopReason, vanishedParts } from './run-view.ts';

export interface RunFailure {
  class: FailureClass;
  reason: string;
  message: string;
  host?: string;
  rank?: number;
  exitCode?: number;
  logTail?: string[];
  /** No restart whatever the budget (a deadline is a limit, not a hiccup). */
  final?: boolean;
  /** Restart, but do not count it (an exit code listed under restartPolicy.exitCodes.retry). */
  uncounted?: boolean;
  /** Class oom: the rank that ran out of memory and the batch it ran (its micro batch is halved). */
  oom?: OomRank;
}

/** spec.restartPolicy.maxOomRestarts when unset. */
export const DEFAULT_MAX_OOM_RESTARTS = 3;

export type RunOutcome =
  | { kind: 'running' }
  | { kind: 'succeeded' }
  | { kind: 'on-purpose' }
  | { kind: 'failed'; failure: RunFailure };

/** Most failure records kept in status (newest last). */
const MAX_FAILURE_RECORDS = 20;

/**
 * What a run amounts to. `missing`: hosts of the run with no part at all (never started).
 * `gaveUp`: the run is over even with those hosts missing (the rendezvous timed out).
 * `gone`: hosts of the run that are lost; their parts count as ended.
 */
export function classifyRun(
  run: RunView,
  opts: {
    missing: string[];
    gaveUp: boolean;
    rdzvTimeoutSeconds: number;
    deadlineSeconds?: number;
    gone?: string[];
    exitCodes?: { fatal: number[]; retry: number[] };
    /** The job has spec.batch: UGRO can halve an out-of-memory rank's micro batch. */
    batch?: boolean;
  },
): RunOutcome {
  if (runAlive(run)) return { kind: 'running' };
  if (runStoppedOnPurpose(run)) return { kind: 'on-purpose' };
  const gone = opts.gone ?? [];
  const vanished = vanishedParts(run);
  const ended = (h: string) =>
    gone.includes(h) || run.parts.some((p) => p.host === h && (p.exitCode !== undefined || vanished.includes(p)));
  const stop = runStopReason(run);
  // Once UGRO stopped it and nothing is left alive, a host that never reported is over too.
  if (!run.meta.hosts.every(ended) && !opts.gaveUp && !stop) return { kind: 'running' };
  const failed = (f: RunFailure): RunOutcome => ({ kind: 'failed', failure: f });
  if (stop === 'deadline-exceeded') {
    const message = `ran longer than activeDeadlineSeconds (${opts.deadlineSeconds ?? '?'} s)`;
    return failed({ class: 'training', reason: 'DeadlineExceeded', message, final: true });
  }
  if (stop === 'launch-failed') return failed({ class: 'infra', reason: 'LaunchFailed', message: 'the launch failed' });
  // A lost host explains whatever its peers did meanwhile (they fail when a peer vanishes).
  if (stop === 'node-lost' || gone.length) {
    const host = gone[0];
    return failed({ class: 'infra', reason: 'NodeLost', message: `node ${host ?? '?'} was lost`, host });
  }
  if (stop === 'runner-vanished' || vanished.length) {
    const host = vanished[0]?.host;
    return failed({
      class: 'infra',
      reason: 'RunnerVanished',
      message: `the runner on ${host ?? '?'} vanished without an exit code (host rebooted? OOM killer? see dmesg)`,
      host,
    });
  }
  if (stop === 'stalled') return failed({ class: 'training', reason: 'ProgressStalled', message: 'progress stalled' });
  // The backend said why it ended (Slurm: NODE_FAIL, TIMEOUT, OUT_OF_MEMORY…): that, with the
  // failing rank and its log when the training is to blame.
  const reported = run.parts.find((p) => p.ended)?.ended;
  if (reported) {
    const f = firstFailure(run);
    const where =
      f && reported.class === 'training'
        ? { host: f.host, ...(f.rank !== undefined ? { rank: f.rank } : {}), exitCode: f.exitCode }
        : {};
    return failed({ ...reported, ...where, ...(f?.logTail.length ? { logTail: f.logTail.slice(-20) } : {}) });
  }
  if (!opts.missing.length && run.parts.every((p) => p.exitCode === 0)) return { kind: 'succeeded' };
  const f = firstFailure(run);
  // Hosts that never came up are the cause when the only other exits are the parts UGRO itself
  // stopped after the rendezvous timed out.
  const onlyOurStops = run.parts.every((p) => p.exitCode === 0 || p.stopReason);
  if (opts.missing.length && (!f || onlyOurStops)) {
    const message =
      `hosts ${opts.missing.join(', ')} never started ` + `(rendezvous timed out after ${opts.rdzvTimeoutSeconds} s)`;
    return failed({ class: 'infra', reason: 'HostsNeverStarted', message });
  }
  const oom = oomFailure(run, opts.batch ?? false);
  if (oom) return failed(oom);
  const exitCode = f?.exitCode ?? 1;
  const base = {
    class: 'training' as const,
    message: `rank ${f?.rank ?? '?'} on ${f?.host ?? '?'} exited with code ${exitCode}`,
    host: f?.host,
    rank: f?.rank,
    exitCode,
    logTail: f?.logTail.slice(-20),
  };
  if (opts.exitCodes?.fatal.includes(exitCode)) {
    return failed({ ...base, reason: 'FatalExitCode', message: `${base.message} (listed as fatal)`, final: true });
  }
  if (opts.exitCodes?.retry.includes(exitCode)) {
    return failed({ ...base, reason: 'RetryExitCode', message: `${base.message} (listed as retry)`, uncounted: true });
  }
  return failed({ ...base, reason: 'RankFailed' });
}

/**
 * A rank that ran out of memory (rank.sh's evidence; the first to exit when several did): class
 * oom while its micro batch can be halved, else a plain training failure that says why not.
 */
function oomFailure(run: RunView, batch: boolean): RunFailure | undefined {
  let best: { host: string; r: RankObservation; oom: RankOom } | undefined;
  for (const p of run.parts) {
    for (const r of p.ranks) {
      const at = (x: RankObservation) => x.exitedAt ?? Number.POSITIVE_INFINITY;
      if (r.oom && (!best || at(r) < at(best.r))) best = { host: p.host, r, oom: r.oom };
    }
  }
  if (!best) return undefined;
  const { host, r, oom } = best;
  const how = oom.kind === 'kernel' ? `killed by ${oom.evidence}` : `CUDA: ${oom.evidence}`;
  const what = `rank ${r.rank} on ${host} ran out of memory (${how})`;
  const where = {
    reason: 'OutOfMemory',
    host,
    rank: r.rank,
    ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
    ...(r.logTail?.length ? { logTail: r.logTail.slice(-20) } : {}),
  };
  const plain = (why: string): RunFailure => ({ class: 'training', message: `${what}: ${why}`, ...where });
  if (!batch) return plain('without spec.batch UGRO cannot shrink its micro batch (set spec.batch to let it)');
  if (oom.micro === undefined || oom.batch === undefined || oom.accum === undefined)
    return plain('its micro batch is unknown (rank.sh recorded none)');
  if (oom.micro <= 1) return plain('already at a micro batch of 1, nothing left to halve: a plain failure');
  const rank: OomRank = { host, localRank: r.localRank, batch: oom.batch, micro: oom.micro, accum: oom.accum };
  return { class: 'oom', message: `${what} with micro batch ${oom.micro}`, ...where, oom: rank };
}

/**
 * Failures per class over the attempts of this spec: each finished run that failed counts once by
 * its class; a recorded failure of an attempt that left no run on any host counts too.
 */
export function countFailures(
  outcomes: Map<number, RunOutcome>,
  records: readonly FailureRecord[],
): Record<FailureClass, number> {
  const counts: Record<FailureClass, number> = { infra: 0, training: 0, oom: 0 };
  for (const o of outcomes.values()) if (o.kind === 'failed' && !o.failure.uncounted) counts[o.failure.class]++;
  for (const r of records) if (!outcomes.has(r.attempt) && r.reason !== 'RetryExitCode') counts[r.class]++;
  return counts;
}

export function budgetOf(job: TrainingJob, cls: FailureClass): number {
  const p = job.spec.restartPolicy;
  if (cls === 'oom') return p.maxOomRestarts ?? DEFAULT_MAX_OOM_RESTARTS;
  return cls === 'infra' ? p.maxInfraRestarts : p.maxRestarts;
}

/**
 * Wait before the next try after the n-th failure of a class: infrastructure and out of memory
 * from 1 s (a lost node or a refused launch is worth retrying soon; an out-of-memory restart runs
 * a smaller micro batch) doubling to 60 s; the training from restartPolicy.backoffSeconds
 * doubling to 600 s.
 */
export function backoffMs(job: TrainingJob, cls: FailureClass, n: number): number {
  const k = 2 ** Math.max(0, n - 1);
  if (cls !== 'training') return Math.min(1000 * k, 60_000);
  return Math.min(job.spec.restartPolicy.backoffSeconds * 1000 * k, 600_000);
}

export function failureRecord(attempt: number, f: RunFailure, now: string): FailureRecord {
  return {
    attempt,
    class: f.class,
    reason: f.reason,
    message: f.message.slice(0, 4096),
    ...(f.host !== undefined ? { host: f.host } : {}),
    ...(f.rank !== undefined ? { rank: f.rank } : {}),
    ...(f.exitCode !== undefined ? { exitCode: f.exitCode } : {}),
    time: now,
  };
}

/** Append a record (keeping the newest MAX_FAILURE_RECORDS), unless that attempt has one already. */
export function withRecord(records: readonly FailureRecord[] | undefined, r: FailureRecord): FailureRecord[] {
  const list = records ?? [];
  if (list.some((x) => x.attempt === r.attempt)) return [...list];
  return [...list, r].slice(-MAX_FAILURE_RECORDS);
}

/** What recordInfraFailure returns: the next status, when to look again, the event to write. */
export interface InfraFailureOutcome {
  status: JobStatus;
  requeueAfterMs?: number;
  event: { reason: string; message: string; type: 'Warning' };
}

/**
 * Attempt `attempt` failed before anything ran on the hosts (a launch, a preflight): recorded as an
 * infrastructure failure with `reason`; the job waits Queued for an infrastructure backoff (its host
 * claims are released meanwhile) and is Failed with that reason once maxInfraRestarts is spent.
 */
export function recordInfraFailure(
  status: JobStatus,
  job: TrainingJob,
  f: { attempt: number; host: string; reason: string; message: string },
  now: Date,
): InfraFailureOutcome {
  const iso = now.toISOString();
  const failure: RunFailure = { class: 'infra', reason: f.reason, message: f.message, host: f.host };
  const failures = withRecord(status.failures, failureRecord(f.attempt, failure, iso));
  const restarts = { infra: 0, training: 0, oom: 0, ...status.restarts };
  restarts.infra++;
  const max = budgetOf(job, 'infra');
  const next: JobStatus = {
    ...status,
    failures,
    restarts,
    nodes: status.nodes.map((n) => ({ ...n, state: 'Failed' })),
  };
  if (restarts.infra > max) {
    const message = `attempt ${f.attempt}: ${f.message} (gave up after ${max} ${max === 1 ? 'retry' : 'retries'})`;
    return {
      status: { ...next, phase: 'Failed', reason: f.reason, message, completionTime: iso, nextRetryAt: undefined },
      event: { reason: f.reason, message, type: 'Warning' },
    };
  }
  const wait = backoffMs(job, 'infra', restarts.infra);
  const retry = `retry ${restarts.infra} of ${max} in ${Math.ceil(wait / 1000)} s`;
  const message = `attempt ${f.attempt}: ${f.message}; ${retry}`;
  return {
    status: {
      ...next,
      phase: 'Queued',
      reason: f.reason,
      message,
      nextRetryAt: new Date(now.getTime() + wait).toISOString(),
    },
    requeueAfterMs: wait,
    event: { reason: f.reason, message, type: 'Warning' },
  };
}

/**
 * The controller could not launch attempt `attempt` (an SSH error, a host refusing, a script
 * failing): an infrastructure failure with reason LaunchFailed (recordInfraFailure).
 */
export function recordLaunchFailure(
  status: JobStatus,
  job: TrainingJob,
  f: { attempt: number; host: string; message: string },
  now: Date,
): InfraFailureOutcome {
  return recordInfraFailure(
    status,
    job,
    { ...f, reason: 'LaunchFailed', message: `launch on ${f.host} failed: ${f.message}` },
    now,
  );
}
