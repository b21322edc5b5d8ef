/**
 * Step 2: the spec does not validate. Say exactly what is wrong (file:line: field: message) and
 * leave any running run alone: a typo must not kill training.
 */
import { formatIssue } from '../../../config/errors.ts';
import type { SpecState } from '../../api/job-state.ts';
import { Draft } from '../draft.ts';
import type { ReconcileInput, ReconcileResult } from '../types.ts';

export function reconcileInvalid(
  input: ReconcileInput,
  spec: Extract<SpecState, { kind: 'invalid' }>,
): ReconcileResult {
  const d = new Draft(input);
  const msg = spec.issues.map((i) => formatIssue(spec.file, i)).join('\n');
  d.cond('Valid', 'False', 'InvalidSpec', msg);
  d.status.nodes = input.status?.nodes ?? [];
  const r = d.finish('Invalid', 'InvalidSpec', msg);
  // The message names every issue: a new event when they change, not only when the phase does.
  if (input.status?.phase === 'Invalid' && input.status.message !== msg) {
    r.events.push({ reason: 'InvalidSpec', message: msg, type: 'Warning' });
  }
  for (const e of r.events) if (e.reason === 'InvalidSpec') e.type = 'Warning';
  return r;
}
