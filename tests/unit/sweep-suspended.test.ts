/**
 * A trial its sweep paused says why in its own status (issue 18): the Suspended message carries the
 * sweep's reason from the trial's ugro.dev/sweep-stopped annotation (rung, objective, cut-off), not
 * only "spec.suspend is true"; a job suspended by hand keeps the plain message; a hostile
 * annotation stays one bounded line.
 */
import { describe, expect, it } from 'vitest';
import { reconcile } from '../../controller/core/reconcile.ts';
import { suspendedMessage } from '../../controller/core/steps/stop-requested.ts';
import { job, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const WHY = 'paused at rung 1 (step 10): loss 34.2, not in the best 1/3 (1 of 4; cut-off 27.1)';

describe("a paused trial's Suspended message", () => {
  it("carries its sweep's name and reason", () => {
    const spec = validSpec('lr-t3', { command: ['t'], suspend: true });
    spec.job.metadata.labels = { 'ugro.dev/sweep': 'lr', 'ugro.dev/trial': '3' };
    spec.job.metadata.annotations = { 'ugro.dev/sweep-stopped': WHY };
    const r = reconcile({ name: 'lr-t3', now: new Date(T0), spec, parts: [], unreachable: new Map(), cluster: view() });
    expect(r.status).toMatchObject({
      phase: 'Suspended',
      reason: 'Suspended',
      message: `sweep lr: ${WHY} (run stopped with its checkpoint, status kept)`,
    });
  });

  it('a job suspended by hand (or a trial without the annotation) keeps the plain message', () => {
    const plain = 'spec.suspend is true: run stopped, status kept';
    expect(suspendedMessage(job('x', { command: ['t'], suspend: true }))).toBe(plain);
    const t = job('lr-t0', { command: ['t'], suspend: true });
    t.metadata.labels = { 'ugro.dev/sweep': 'lr' };
    expect(suspendedMessage(t)).toBe(plain);
  });

  it('a hostile annotation is one line, bounded', () => {
    const t = job('lr-t0', { command: ['t'], suspend: true });
    t.metadata.labels = { 'ugro.dev/sweep': 'lr' };
    t.metadata.annotations = { 'ugro.dev/sweep-stopped': `a\nb\u001b[2J${'x'.repeat(5000)}` };
    const m = suspendedMessage(t);
    expect(m).toMatch(/^sweep lr: a b \[2Jx+ \(run stopped/);
    expect(m.length).toBeLessThan(1000);
  });
});
