/**
 * PURE: a job's preflight (spec.preflight: true), the network part of `ugro doctor` run on the gang's
 * own hosts before they start: whether it runs for a launch, how its failed pairs read, and what a
 * failure does to the job. A failure is an infrastructure failure of that attempt: the job waits
 * Queued with reason PreflightFailed (its hosts released, an infrastructure backoff), tries again with
 * a new preflight, and is Failed with that reason once spec.restartPolicy.maxInfraRestarts is spent.
 */
import type { JobStatus } from '../api/status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import { type InfraFailureOutcome, recordInfraFailure } from './failures.ts';
import type { LaunchAction } from './types.ts';

/** A pair of the gang's hosts that failed (backends/doctor.ts's DoctorPair, structurally). */
export interface PreflightPair {
  from: string;
  to: string;
  port: number;
  /** refused, timeout, unreachable, wrong-answer, error, not-tested. */
  result: string;
  message?: string;
}

/** Pairs named in a message; the rest are counted. */
const MAX_PAIRS_SHOWN = 6;

/**
 * Run it for this launch? When the spec asks, before every fresh start of a gang (every part of the
 * attempt starts now: the first attempt, and every restart, since the network is as likely a cause
 * as anything after a failure) of two hosts or more, none of them Slurm's (its network is Slurm's).
 * Not when a half-done launch is finished (its other parts already run and hold the port).
 */
export function wantsPreflight(job: TrainingJob, a: LaunchAction, slurmHost: (host: string) => boolean): boolean {
  if (job.spec.preflight !== true) return false;
  if (a.parts.length !== a.allParts.length || a.allParts.length < 2) return false;
  return !a.allParts.some((p) => slurmHost(p.host));
}

/** `gpu1 -> gpu2:29500: timeout (no answer within 2000 ms); …`, worst host's pairs first. */
export function preflightMessage(failed: readonly PreflightPair[]): string {
  const culprit = preflightCulprit(failed);
  const sorted = [...failed].sort(
    (x, y) => Number(y.from === culprit || y.to === culprit) - Number(x.from === culprit || x.to === culprit),
  );
  const shown = sorted
    .slice(0, MAX_PAIRS_SHOWN)
    .map((p) => `${p.from} -> ${p.to}:${p.port}: ${p.result}${p.message ? ` (${p.message})` : ''}`);
  const more = failed.length - shown.length;
  return `${shown.join('; ')}${more > 0 ? `; and ${more} more pair${more === 1 ? '' : 's'}` : ''}`;
}

/** The host in the most failed pairs (a host cut off fails every pair it is in); ties: the first `to`. */
export function preflightCulprit(failed: readonly PreflightPair[]): string {
  const count = new Map<string, number>();
  for (const p of failed) for (const h of [p.to, p.from]) count.set(h, (count.get(h) ?? 0) + 1);
  let best = failed[0]?.to ?? '?';
  for (const [h, n] of count) if (n > (count.get(best) ?? 0)) best = h;
  return best;
}

/**
 * Attempt `attempt`'s preflight failed (`message`: its failed pairs, or why it could not run):
 * recorded as an infrastructure failure with reason PreflightFailed; the job waits Queued for an
 * infrastructure backoff (its host claims are released meanwhile, nothing ran on the hosts), or is
 * Failed once maxInfraRestarts is spent.
 */
export function recordPreflightFailure(
  status: JobStatus,
  job: TrainingJob,
  f: { attempt: number; host: string; message: string },
  now: Date,
): InfraFailureOutcome {
  return recordInfraFailure(
    status,
    job,
    { ...f, reason: 'PreflightFailed', message: `preflight failed: ${f.message}` },
    now,
  );
}
