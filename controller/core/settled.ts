/**
 * PURE: may the controller skip host I/O for this job? The one place this rule lives. A job is
 * settled when nothing about it can change without a file changing: it finished for this very
 * spec version (Succeeded, Failed, or Cancelled with its cancel still there), or is suspended
 * with its run known to be down, and nothing of it is alive on any host.
 */
import { type ControlState, cancelFor } from '../api/control.ts';
import type { SpecState } from '../api/job-state.ts';
import type { JobStatus } from '../api/status.ts';

export type Shortcut =
  /** Nothing to do at all. */
  | 'skip'
  /** Re-render the status from the files alone (an invalid spec that is still invalid). */
  | 'no-host-io'
  /** Observe the hosts and reconcile. */
  | 'full';

export function shortcut(
  spec: SpecState,
  status: JobStatus | undefined,
  control: ControlState | undefined,
  liveOnHosts: boolean,
): Shortcut {
  if (!status || liveOnHosts) return 'full';
  // A status written while its stop was in flight still shows nodes running: observe once more.
  const nodesDown = !status.nodes.some((n) => n.state === 'Running' || n.state === 'Pending' || n.state === 'Unknown');
  if (spec.kind === 'invalid') return status.phase === 'Invalid' && nodesDown ? 'no-host-io' : 'full';
  if (spec.kind !== 'valid' || status.specHash !== spec.hash || !nodesDown) return 'full';
  const cancel = cancelFor(control, spec.hash);
  switch (status.phase) {
    case 'Succeeded':
    case 'Failed':
      return 'skip';
    // Settled only while the cancel stands: a withdrawn cancel starts a new attempt.
    case 'Cancelled':
      return cancel ? 'skip' : 'full';
    case 'Suspended':
      return spec.job.spec.suspend ? 'skip' : 'full';
    // Invalid with a now-valid spec (a reverted typo), and every live phase: reconcile.
    default:
      return 'full';
  }
}
