/**
 * Liveness rules of the pure core (issue 7): the controller's "settled, skip" shortcut, and what
 * a launch that keeps failing does to the job (reason, backoff, a bounded number of tries).
 */
import { describe, expect, it } from 'vitest';
import type { ControlState } from '../../controller/api/control.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import { parseTrainingJob } from '../../controller/api/trainingjob.ts';
import { recordLaunchFailure } from '../../controller/core/failures.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import { shortcut } from '../../controller/core/settled.ts';
import { jobYaml, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const S = validSpec('train', { script: 't.py', nodes: 2 });
const base = (over: Partial<JobStatus>): JobStatus => ({
  phase: 'Succeeded',
  observedGeneration: 1,
  specHash: S.hash,
  attempt: 1,
  nodes: [],
  createdAt: iso(0),
  conditions: [],
  ...over,
});
const none: ControlState = { kind: 'none' };

describe('shortcut (the settled rule, one place)', () => {
  it('a finished job of this very spec with nothing alive is skipped', () => {
    expect(shortcut(S, base({ phase: 'Succeeded' }), none, false)).toBe('skip');
    expect(shortcut(S, base({ phase: 'Failed' }), none, false)).toBe('skip');
  });

  it('anything alive on a host, a node still shown running, or another spec version: full reconcile', () => {
    expect(shortcut(S, base({ phase: 'Succeeded' }), none, true)).toBe('full');
    expect(
      shortcut(S, base({ nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [], state: 'Running' }] }), none, false),
    ).toBe('full');
    expect(shortcut(S, base({ specHash: 'deadbeef' }), none, false)).toBe('full');
  });

  // Regression (issue 7, defect 8): Invalid counted as finished, so a reverted typo (same spec hash
  // as the status kept) was skipped forever and the job stayed Invalid.
  it('an Invalid status with a now-valid spec of the same hash is reconciled, not skipped', () => {
    expect(shortcut(S, base({ phase: 'Invalid' }), none, false)).toBe('full');
  });

  it('an invalid spec still invalid: re-rendered from the files, no host I/O', () => {
    const bad = {
      kind: 'invalid' as const,
      file: '/jobs/train.yaml',
      issues: [{ path: 'spec.x', message: 'unknown' }],
    };
    expect(shortcut(bad, base({ phase: 'Invalid' }), none, false)).toBe('no-host-io');
    expect(shortcut(bad, base({ phase: 'Running' }), none, false)).toBe('full');
  });

  it('Cancelled is settled only while its cancel stands; Suspended only while spec.suspend is true', () => {
    const cancel: ControlState = { kind: 'valid', control: { cancel: { specHash: S.hash, requestedAt: iso(1) } } };
    expect(shortcut(S, base({ phase: 'Cancelled' }), cancel, false)).toBe('skip');
    expect(shortcut(S, base({ phase: 'Cancelled' }), none, false)).toBe('full');
    const sus = validSpec('train', { script: 't.py', nodes: 2, suspend: true });
    expect(shortcut(sus, base({ phase: 'Suspended', specHash: sus.hash }), none, false)).toBe('skip');
    expect(shortcut(S, base({ phase: 'Suspended' }), none, false)).toBe('full');
  });

  it('end to end: typo, then the typo reverted -> the job is launched within one reconcile', () => {
    const first = reconcile({ name: 'train', now: at(0), spec: S, parts: [], unreachable: new Map(), cluster: view() });
    const bad = {
      kind: 'invalid' as const,
      file: '/jobs/train.yaml',
      issues: [{ path: 'spec.nodez', message: 'unknown field' }],
    };
    // The typo lands before the launch was observed (nothing on the hosts).
    const invalid = reconcile({
      name: 'train',
      now: at(1),
      spec: bad,
      status: first.status!,
      parts: [],
      unreachable: new Map(),
      cluster: view(),
    });
    expect(invalid.status!.phase).toBe('Invalid');
    expect(shortcut(S, invalid.status!, none, false)).toBe('full');
    const fixed = reconcile({
      name: 'train',
      now: at(2),
      spec: S,
      status: invalid.status!,
      parts: [],
      unreachable: new Map(),
      cluster: view(),
    });
    expect(fixed.status!.phase).toBe('Starting');
    expect(fixed.actions.filter((a) => a.type === 'launch')).toHaveLength(1);
  });
});

// Issue 7, defect 9: a launch that always fails stayed Starting forever, with no reason, its host
// claims held. Now: a reason (the error), exponential backoff, Failed/LaunchFailed after the budget.
describe('recordLaunchFailure', () => {
  const job = (() => {
    const r = parseTrainingJob(jobYaml('train', { script: 't.py', nodes: 2, restartPolicy: { maxInfraRestarts: 3 } }));
    if (!r.ok) throw new Error('fixture');
    return r.value;
  })();
  const starting = base({
    phase: 'Starting',
    reason: 'Launching',
    nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [], state: 'Pending' }],
  });

  it('records the error as the reason, counts it as infrastructure and backs off 1, 2, 4 s; then Failed', () => {
    let st = starting;
    const waits: (number | undefined)[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      const r = recordLaunchFailure(
        st,
        job,
        { attempt, host: 'gpu2', message: 'ssh: connection refused by 10.0.0.12:22' },
        at(attempt * 10),
      );
      waits.push(r.requeueAfterMs);
      st = { ...r.status, phase: 'Starting' };
      if (attempt < 4) {
        expect(r.status).toMatchObject({
          phase: 'Queued',
          reason: 'LaunchFailed',
          restarts: { infra: attempt, training: 0 },
          nextRetryAt: new Date(T0 + attempt * 10_000 + 1000 * 2 ** (attempt - 1)).toISOString(),
        });
        expect(r.status.message).toBe(
          `attempt ${attempt}: launch on gpu2 failed: ssh: connection refused by 10.0.0.12:22; ` +
            `retry ${attempt} of 3 in ${2 ** (attempt - 1)} s`,
        );
      } else {
        expect(r.status).toMatchObject({ phase: 'Failed', reason: 'LaunchFailed', completionTime: iso(40) });
        expect(r.status.message).toContain('gave up after 3 retries');
        expect(r.requeueAfterMs).toBeUndefined();
      }
      expect(r.event).toMatchObject({ reason: 'LaunchFailed', type: 'Warning' });
    }
    expect(waits).toEqual([1000, 2000, 4000, undefined]);
    expect(st.failures!.map((f) => [f.attempt, f.class, f.reason, f.host])).toEqual([
      [1, 'infra', 'LaunchFailed', 'gpu2'],
      [2, 'infra', 'LaunchFailed', 'gpu2'],
      [3, 'infra', 'LaunchFailed', 'gpu2'],
      [4, 'infra', 'LaunchFailed', 'gpu2'],
    ]);
  });

  it(
    'the next reconcile waits out the backoff, ' +
      'then launches the next attempt number (nothing of the failed one ran)',
    () => {
      const S3 = validSpec('train', { script: 't.py', nodes: 2, restartPolicy: { maxInfraRestarts: 3 } });
      const failed = recordLaunchFailure(
        { ...starting, specHash: S3.hash, attempt: 1 },
        job,
        { attempt: 1, host: 'gpu2', message: 'refused' },
        at(10),
      ).status;
      const wait = reconcile({
        name: 'train',
        now: at(10.5),
        spec: S3,
        status: failed,
        parts: [],
        unreachable: new Map(),
        cluster: view(),
      });
      expect(wait.actions).toEqual([]);
      expect(wait.status).toMatchObject({ phase: 'Queued', reason: 'BackoffRestart' });
      expect(wait.requeueAfterMs).toBe(500);
      const go = reconcile({
        name: 'train',
        now: at(11),
        spec: S3,
        status: failed,
        parts: [],
        unreachable: new Map(),
        cluster: view(),
      });
      expect(go.actions).toMatchObject([{ type: 'launch', attempt: 2 }]);
    },
  );
});
