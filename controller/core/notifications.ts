/**
 * PURE: which status changes are worth a notification (the cluster file's `webhook`), and what it
 * says. A notification is a change a person waits for: the job finished (Succeeded, Failed), it
 * is being restarted after a failure (Restarting), or it made room for another (Preempted).
 */
import type { JobStatus } from '../api/status.ts';

const NOTIFY_KINDS = ['Succeeded', 'Failed', 'Restarting', 'Preempted'] as const;
export type NotifyKind = (typeof NOTIFY_KINDS)[number];

export interface Notification {
  kind: NotifyKind;
  job: string;
  phase: string;
  reason?: string;
  message?: string;
  attempt: number;
  restarts: number;
  time: string;
  /** Slack-compatible: one line a person reads. */
  text: string;
}

type Pick2 = Pick<JobStatus, 'phase' | 'attempt'> &
  Partial<Pick<JobStatus, 'reason' | 'message' | 'failures' | 'restarts'>>;

const lastFailure = (s: Pick2 | undefined) => {
  const f = s?.failures?.[s.failures.length - 1];
  return f ? `${f.attempt}/${f.time}/${f.reason}` : '';
};
const restartsOf = (s: Pick2 | undefined) =>
  s?.restarts ? s.restarts.infra + s.restarts.training + (s.restarts.oom ?? 0) : 0;

/** The notification a status change calls for, or undefined. `prev` undefined: the job was not known yet. */
export function notificationOf(
  job: string,
  prev: Pick2 | undefined,
  next: Pick2 | null,
  time: string,
  cluster?: string,
): Notification | undefined {
  if (!next) return undefined;
  let kind: NotifyKind | undefined;
  if ((next.phase === 'Succeeded' || next.phase === 'Failed') && prev?.phase !== next.phase) kind = next.phase;
  else if (next.reason === 'Preempted' && prev?.reason !== 'Preempted') kind = 'Preempted';
  else if (prev && lastFailure(next) !== lastFailure(prev) && lastFailure(next) && next.phase !== 'Failed')
    kind = 'Restarting';
  if (!kind) return undefined;
  const restarts = restartsOf(next);
  const why = next.message ? `: ${next.message.split('\n', 1)[0].slice(0, 300)}` : '';
  const where = cluster ? ` on ${cluster}` : '';
  const what =
    kind === 'Restarting'
      ? `is restarting (attempt ${next.attempt}, ${next.failures?.[next.failures.length - 1]?.reason ?? 'failure'})`
      : kind === 'Preempted'
        ? 'was preempted'
        : `${kind === 'Succeeded' ? 'succeeded' : 'failed'} (attempt ${next.attempt})`;
  return {
    kind,
    job,
    phase: next.phase,
    ...(next.reason ? { reason: next.reason } : {}),
    ...(next.message ? { message: next.message.slice(0, 4096) } : {}),
    attempt: next.attempt,
    restarts,
    time,
    text: `UGRO${where}: job ${job} ${what}${why}`,
  };
}
