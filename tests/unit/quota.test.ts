/**
 * Per-user quotas (issue 17), pure: the effective limits of a user (defaults, per-user overrides,
 * `unlimited`), the decision for one job (ok, wait QuotaExceeded naming the limit and the usage,
 * never), the priority cap, the CLI's up-front checks, and what reconcile makes of a quota's
 * decision (reason QuotaExceeded, Failed/Unschedulable "within its owner's quota", PriorityCapped).
 * Placement over the whole queue with quotas is in placement.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { limitsFor, type UsersSettings } from '../../config/users.ts';
import type { Decision } from '../../controller/core/placement.ts';
import {
  capPriority,
  checkPriority,
  checkQueued,
  checkQuota,
  gpusLeft,
  QuotaPass,
} from '../../controller/core/quota.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import type { ReconcileResult } from '../../controller/core/types.ts';
import { validSpec, view } from './job-fixtures.ts';

const USERS: UsersSettings = {
  admins: ['master'],
  logs: 'open',
  defaults: { gpus: 2, runningJobs: 4, queuedJobs: 20, gpuHoursPerWeek: 200, maxPriority: 'normal' },
  quotas: { ollie: { gpus: 1 }, master: { gpus: 'unlimited', maxPriority: 'high' } },
};
const why = (d: { kind: string; why?: string }) => d.why;

describe('effective limits', () => {
  it('a per-user entry overrides the defaults field by field, and says where each came from', () => {
    expect(limitsFor(USERS, 'ollie')).toEqual({
      user: 'ollie',
      limits: { gpus: 1, runningJobs: 4, queuedJobs: 20, gpuHoursPerWeek: 200, maxPriority: 'normal' },
      from: {
        gpus: 'users.quotas.ollie.gpus',
        runningJobs: 'users.defaults.running_jobs',
        queuedJobs: 'users.defaults.queued_jobs',
        gpuHoursPerWeek: 'users.defaults.gpu_hours_per_week',
        maxPriority: 'users.defaults.max_priority',
      },
    });
  });

  it('"unlimited" lifts a default for one user; a user not listed gets the defaults', () => {
    expect(limitsFor(USERS, 'master').limits.gpus).toBeUndefined();
    expect(limitsFor(USERS, 'master').limits.maxPriority).toBe('high');
    expect(limitsFor(USERS, 'ob').limits.gpus).toBe(2);
  });

  it('no users: section: no limit at all', () => {
    expect(limitsFor(undefined, 'ollie')).toEqual({ user: 'ollie', limits: {}, from: {} });
    expect(QuotaPass.of(undefined)).toBeUndefined();
    expect(QuotaPass.of({ users: { ...USERS, defaults: {}, quotas: {} }, usage: new Map() })).toBeUndefined();
  });

  it('a user named like an Object property is a user, not a prototype key', () => {
    expect(limitsFor(USERS, 'constructor').limits.gpus).toBe(2);
    expect(limitsFor(USERS, '__proto__').limits.gpus).toBe(2);
  });
});

describe('checkQuota: one job', () => {
  const ollie = limitsFor(USERS, 'ollie');
  const ob = limitsFor(USERS, 'ob');

  it('ok within every limit', () => {
    expect(checkQuota(ob, 1, { gpus: 1, runningJobs: 1, gpuHoursWeek: 10 })).toEqual({ kind: 'ok' });
  });

  it('waits QuotaExceeded naming the limit and the usage: "ollie: 1 of 1 GPUs in use"', () => {
    expect(checkQuota(ollie, 1, { gpus: 1, runningJobs: 1 })).toEqual({
      kind: 'wait',
      reason: 'QuotaExceeded',
      limit: 'gpus',
      why: 'ollie: 1 of 1 GPUs in use (users.quotas.ollie.gpus)',
    });
    expect(why(checkQuota(ob, 2, { gpus: 1 }))).toBe('ob: 1 of 2 GPUs in use (users.defaults.gpus); this job needs 2');
  });

  it('running jobs, GPU-hours this week and queued jobs ahead each hold a job back', () => {
    expect(why(checkQuota(ob, 1, { runningJobs: 4 }))).toBe('ob: 4 of 4 running jobs (users.defaults.running_jobs)');
    expect(why(checkQuota(ob, 1, { gpuHoursWeek: 200.4 }))).toBe(
      'ob: 200 of 200 GPU-hours used in the last 7 days (users.defaults.gpu_hours_per_week)',
    );
    expect(checkQuota(ob, 1, {}, 20)).toMatchObject({ kind: 'wait', limit: 'queuedJobs' });
    expect(why(checkQuota(ob, 1, {}, 20))).toBe(
      'ob: 20 of 20 queued jobs ahead of this one (users.defaults.queued_jobs)',
    );
  });

  it('a CPU job (0 GPUs) is held by neither the GPU nor the GPU-hours limit', () => {
    expect(checkQuota(ollie, 0, { gpus: 1, gpuHoursWeek: 500 })).toEqual({ kind: 'ok' });
  });

  it('never: more GPUs than the user may ever hold, or a limit of 0', () => {
    expect(checkQuota(ollie, 2, {})).toEqual({
      kind: 'never',
      reason: 'QuotaExceeded',
      limit: 'gpus',
      why: 'needs at least 2 GPUs; ollie may use at most 1 at once (users.quotas.ollie.gpus)',
    });
    const none = limitsFor({ ...USERS, quotas: { guest: { runningJobs: 0 } } }, 'guest');
    expect(why(checkQuota(none, 0, {}))).toBe('guest may run no jobs (users.quotas.guest.running_jobs: 0)');
  });

  it('gpusLeft: the GPUs the owner may still take (Infinity without a GPU limit)', () => {
    expect(gpusLeft(ob, { gpus: 1 })).toBe(1);
    expect(gpusLeft(ob, { gpus: 3 })).toBe(0);
    expect(gpusLeft(limitsFor(USERS, 'master'), { gpus: 50 })).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('max_priority: capped, visibly', () => {
  it('a priority above the limit runs at the limit, with a sentence saying so', () => {
    expect(capPriority(limitsFor(USERS, 'ollie'), 100)).toEqual({
      priority: 0,
      note: "priority high is above ollie's max_priority normal (users.defaults.max_priority): runs as normal",
    });
    expect(capPriority(limitsFor(USERS, 'ollie'), -100)).toEqual({ priority: -100 });
    expect(capPriority(limitsFor(USERS, 'master'), 100)).toEqual({ priority: 100 });
    expect(capPriority(limitsFor(undefined, 'x'), 1000)).toEqual({ priority: 1000 });
  });

  it('the CLI can refuse it up front instead (checkPriority), and a full queue (checkQueued)', () => {
    expect(checkPriority(limitsFor(USERS, 'ollie'), 50)).toBe(
      "priority 50 is above ollie's max_priority normal (users.defaults.max_priority)",
    );
    expect(checkPriority(limitsFor(USERS, 'ollie'), 0)).toBeUndefined();
    expect(checkQueued(limitsFor(USERS, 'ob'), 19)).toBeUndefined();
    expect(checkQueued(limitsFor(USERS, 'ob'), 20)).toBe(
      'ob: 20 of 20 queued jobs (users.defaults.queued_jobs): wait for one to start or cancel one',
    );
  });
});

describe('QuotaPass: one placement pass', () => {
  it('counts what the pass starts against the owner at once', () => {
    const q = QuotaPass.of({ users: USERS, usage: new Map([['ob', { gpus: 1 }]]) })!;
    expect(q.check('ob', 1)).toEqual({ kind: 'ok' });
    q.started('ob', 1);
    expect(q.check('ob', 1)).toMatchObject({ kind: 'wait', why: 'ob: 2 of 2 GPUs in use (users.defaults.gpus)' });
    expect(q.check('ollie', 1)).toEqual({ kind: 'ok' });
  });
});

describe('reconcile with a quota decision', () => {
  const S = validSpec('train', { script: 't.py' });
  const rec = (decision: Decision, conditions?: ReconcileResult['status']): ReconcileResult =>
    reconcile({
      name: 'train',
      now: new Date('2026-03-01T10:00:00Z'),
      spec: S,
      parts: [],
      unreachable: new Map(),
      cluster: view({ decision }),
      ...(conditions ? { status: conditions } : {}),
    });

  it('a wait over quota is Queued with reason QuotaExceeded and the quota sentence', () => {
    const why = 'ollie: 1 of 1 GPUs in use (users.quotas.ollie.gpus)';
    const r = rec({ kind: 'wait', why, reason: 'QuotaExceeded' });
    expect(r.status).toMatchObject({ phase: 'Queued', reason: 'QuotaExceeded', message: why });
    expect(r.events).toContainEqual({ reason: 'QuotaExceeded', message: why, type: 'Normal' });
    expect(r.actions).toEqual([]);
  });

  it('never within the quota is Failed/Unschedulable, saying it is the quota', () => {
    const why = 'needs at least 2 GPUs; ollie may use at most 1 at once (users.quotas.ollie.gpus)';
    const r = rec({ kind: 'never', why, reason: 'QuotaExceeded' });
    expect(r.status).toMatchObject({
      phase: 'Failed',
      reason: 'Unschedulable',
      message: `can never run within its owner's quota: ${why}`,
    });
  });

  it('a capped priority is a PriorityCapped condition and one Warning event; cleared when no longer capped', () => {
    const note = "priority high is above ollie's max_priority normal (users.defaults.max_priority): runs as normal";
    const r = rec({ kind: 'wait', why: 'needs 1 GPU(s) on 1 host(s), 0 free', capped: note });
    const c = r.status?.conditions.find((x) => x.type === 'PriorityCapped');
    expect(c).toMatchObject({ status: 'True', reason: 'PriorityCapped', message: note });
    expect(r.events).toContainEqual({ reason: 'PriorityCapped', message: note, type: 'Warning' });
    // The next pass with the same cap: no second event.
    const again = rec({ kind: 'wait', why: 'needs 1 GPU(s) on 1 host(s), 0 free', capped: note }, r.status!);
    expect(again.events.filter((e) => e.reason === 'PriorityCapped')).toEqual([]);
    const lifted = rec({ kind: 'wait', why: 'needs 1 GPU(s) on 1 host(s), 0 free' }, r.status!);
    expect(lifted.status?.conditions.find((x) => x.type === 'PriorityCapped')?.status).toBe('False');
  });
});
