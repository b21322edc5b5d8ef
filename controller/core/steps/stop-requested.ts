/** Step 4: a cancel (for this spec version) or spec.suspend: stop the current run, keep the status. */

import { cancelFor } from '../../api/control.ts';
import { STOPPED_ANNOTATION, SWEEP_LABEL } from '../../api/sweep.ts';
import type { TrainingJob } from '../../api/trainingjob.ts';
import { Draft } from '../draft.ts';
import { nodeStatuses, type RunView, runAlive } from '../run-view.ts';
import type { ReconcileResult } from '../types.ts';

export function stopRequested(
  d: Draft,
  job: TrainingJob,
  hash: string,
  current: RunView | undefined,
): ReconcileResult | undefined {
  const cancel = cancelFor(d.input.control, hash);
  if (!cancel && !job.spec.suspend) return undefined;
  // A finished job stays finished: cancel or suspend after the fact changes nothing (as a
  // Kubernetes Job), rather than relabel a Succeeded run as Cancelled.
  const prev = d.prev;
  const finished = prev?.specHash === hash && (prev.phase === 'Succeeded' || prev.phase === 'Failed');
  if (finished && !(current && runAlive(current))) return undefined;
  const why = cancel ? 'cancelled' : 'suspended';
  if (current) {
    d.stop(current, why, cancel?.graceSeconds ?? d.input.cluster.defaultGraceSeconds);
    d.status.nodes = nodeStatuses(current, d.input.unreachable);
    d.status.runId = current.runId;
    d.status.attempt = current.attempt;
  }
  const alive = current && runAlive(current);
  if (!alive) d.status.completionTime ??= d.now;
  d.status.nextRetryAt = undefined;
  d.cond('Running', 'False', cancel ? 'Cancelled' : 'Suspended', `run ${why}`);
  const again = Draft.whileAlive(current);
  if (!cancel) return d.finish('Suspended', 'Suspended', suspendedMessage(job), again);
  // Who asked (the control file's writer, authorized by core/authorize.ts), in the message and the event.
  const c = d.input.control;
  const by = c?.kind === 'valid' ? c.writer : undefined;
  const res = d.finish('Cancelled', 'Cancelled', `cancelled${by ? ` by ${by}` : ''} at ${cancel.requestedAt}`, again);
  if (by) for (const e of res.events) if (e.reason === 'Cancelled') e.actor = by;
  return res;
}

/**
 * Why the job is suspended: a sweep's trial says what its sweep decided (the reason loop/sweeps.ts
 * wrote in its annotation: the rung, the objective and the cut-off), any other job that its spec says so.
 */
export function suspendedMessage(job: TrainingJob): string {
  const why = job.metadata.annotations?.[STOPPED_ANNOTATION];
  const sweep = job.metadata.labels?.[SWEEP_LABEL];
  if (!why || !sweep) return 'spec.suspend is true: run stopped, status kept';
  // The job file is anyone's to write: one line, bounded.
  const clean = (s: string, n: number) =>
    [...s]
      .map((c) => (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? ' ' : c))
      .join('')
      .replace(/ {2,}/g, ' ')
      .slice(0, n);
  return `sweep ${clean(sweep, 63)}: ${clean(why, 900)} (run stopped with its checkpoint, status kept)`;
}
