/** Step 1: the spec file is gone. Stop what runs, then move its run dirs aside and forget the status. */
import { type RunView, runAlive } from '../run-view.ts';
import type { Action, ReconcileInput, ReconcileResult } from '../types.ts';

export function reconcileDeleted(input: ReconcileInput, runs: RunView[]): ReconcileResult {
  const prev = input.status;
  const live = runs.filter(runAlive);
  const actions: Action[] = [];
  for (const r of live) {
    const hosts = r.parts.filter((p) => p.alive).map((p) => p.host);
    actions.push({
      type: 'stop',
      runId: r.runId,
      dir: r.dir,
      hosts,
      graceSeconds: input.cluster.defaultGraceSeconds,
      reason: 'deleted',
    });
  }
  if (live.length || input.unreachable.size) {
    return {
      status: prev ? { ...prev, message: 'deleting: stopping the run' } : null,
      actions,
      requeueAfterMs: 1000,
      events: actions.length ? [{ reason: 'Stopping', message: 'job file deleted: stopping its run' }] : [],
    };
  }
  // Nothing alive: move the run directories aside (logs kept under runs/.deleted/), so the same
  // spec applied again is a new job, not the old result re-adopted. Only for a job this jobs dir
  // knew (it had a status): a controller started on another or an empty jobs dir must not sweep
  // away runs it never owned.
  const leftover = runs.flatMap((r) => r.parts.map((p) => ({ host: p.host, dir: p.dir })));
  if (prev && leftover.length) actions.push({ type: 'archive', parts: leftover });
  return {
    status: null,
    actions,
    events: prev ? [{ reason: 'Deleted', message: 'job file deleted; run stopped' }] : [],
  };
}
