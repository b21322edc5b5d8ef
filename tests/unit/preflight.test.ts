/**
 * spec.preflight's pure half (core/preflight.ts): when it runs (a fresh gang start of two hosts or more,
 * never on Slurm's), how its failed pairs read (the cut host's first), and what a failure does to the job
 * (Queued PreflightFailed with an infrastructure backoff, Failed once maxInfraRestarts is spent). The
 * field itself: a boolean, optional, and outside the spec hash.
 */
import { describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import { parseTrainingJob, specHash } from '../../controller/api/trainingjob.ts';
import {
  type PreflightPair,
  preflightCulprit,
  preflightMessage,
  recordPreflightFailure,
  wantsPreflight,
} from '../../controller/core/preflight.ts';
import type { LaunchAction } from '../../controller/core/types.ts';
import { job, jobYaml } from './job-fixtures.ts';

const part = (host: string, nodeRank: number) => ({ host, nodeRank, nproc: 1 });
const action = (hosts: string[], starting = hosts): LaunchAction => ({
  type: 'launch',
  job: 'j',
  runId: 'j-abcdef12-a1',
  dir: 'j.abcdef12.1',
  attempt: 1,
  specHash: 'abcdef12',
  parts: starting.map((h) => part(h, hosts.indexOf(h))),
  allParts: hosts.map(part),
  rdzvHost: hosts[0],
  port: 29500,
  createdAt: '2026-03-01T10:00:00.000Z',
});
const CMD = { command: ['python3', 't.py'] };
const noSlurm = () => false;

describe('wantsPreflight', () => {
  const pf = job('j', { ...CMD, nodes: 3, preflight: true });
  it('a fresh start of a gang of 2+ hosts with spec.preflight: yes (any attempt)', () => {
    expect(wantsPreflight(pf, action(['gpu-master', 'gpu1', 'gpu2']), noSlurm)).toBe(true);
    expect(wantsPreflight(pf, { ...action(['gpu-master', 'gpu1']), attempt: 4 }, noSlurm)).toBe(true);
  });
  it('not asked for, one host, a half-done launch finished, or a Slurm host: no', () => {
    expect(wantsPreflight(job('j', { ...CMD, nodes: 3 }), action(['gpu-master', 'gpu1']), noSlurm)).toBe(false);
    expect(wantsPreflight(job('j', { ...CMD, preflight: false }), action(['a', 'b']), noSlurm)).toBe(false);
    expect(wantsPreflight(pf, action(['gpu-master']), noSlurm)).toBe(false);
    expect(wantsPreflight(pf, action(['gpu-master', 'gpu1', 'gpu2'], ['gpu2']), noSlurm)).toBe(false);
    expect(wantsPreflight(pf, action(['login', 'gpu1']), (h) => h === 'login')).toBe(false);
  });
});

describe('the field', () => {
  it('a boolean, optional; turning it on leaves the spec hash (and so a running run) alone', () => {
    const off = job('j', { ...CMD });
    const on = job('j', { ...CMD, preflight: true });
    expect(off.spec.preflight).toBeUndefined();
    expect(on.spec.preflight).toBe(true);
    expect(specHash(on.spec)).toBe(specHash(off.spec));
    const bad = parseTrainingJob(jobYaml('j', { ...CMD, preflight: 'yes please' }));
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.issues[0].path).toBe('spec.preflight');
  });
});

describe('the failed pairs', () => {
  const cut: PreflightPair[] = [
    { from: 'gpu-master', to: 'gpu1', port: 29500, result: 'ok' },
    { from: 'gpu-master', to: 'gpu2', port: 29500, result: 'timeout', message: 'no answer within 2000 ms' },
    { from: 'gpu1', to: 'gpu2', port: 29500, result: 'timeout', message: 'no answer within 2000 ms' },
    { from: 'gpu2', to: 'gpu1', port: 29500, result: 'unreachable', message: 'No route to host' },
  ].filter((p) => p.result !== 'ok');
  it('the host in most failed pairs is the culprit, its pairs first, each with port, result and why', () => {
    expect(preflightCulprit(cut)).toBe('gpu2');
    expect(preflightMessage(cut)).toBe(
      'gpu-master -> gpu2:29500: timeout (no answer within 2000 ms); ' +
        'gpu1 -> gpu2:29500: timeout (no answer within 2000 ms); gpu2 -> gpu1:29500: unreachable (No route to host)',
    );
  });
  it('a one-way failure blames the host that does not answer; many pairs are counted, not all listed', () => {
    expect(preflightCulprit([{ from: 'a', to: 'b', port: 1, result: 'refused' }])).toBe('b');
    const many = Array.from({ length: 9 }, (_, i) => ({ from: `h${i}`, to: 'x', port: 29500, result: 'timeout' }));
    expect(preflightMessage(many)).toMatch(/^h0 -> x:29500: timeout; .*; and 3 more pairs$/);
  });
});

describe('recordPreflightFailure', () => {
  const now = new Date('2026-03-01T10:00:00.000Z');
  const starting = {
    phase: 'Starting',
    attempt: 1,
    nodes: [
      { host: 'gpu1', state: 'Pending' },
      { host: 'gpu2', state: 'Pending' },
    ],
    conditions: [],
  } as unknown as JobStatus;
  const f = { attempt: 1, host: 'gpu2', message: 'gpu1 -> gpu2:29500: timeout' };
  it('within the infra budget: Queued PreflightFailed naming the pair, an infra backoff, a record', () => {
    const j = job('j', { ...CMD, nodes: 2, preflight: true, restartPolicy: { maxInfraRestarts: 2 } });
    const r = recordPreflightFailure(starting, j, f, now);
    expect(r.status).toMatchObject({
      phase: 'Queued',
      reason: 'PreflightFailed',
      message: 'attempt 1: preflight failed: gpu1 -> gpu2:29500: timeout; retry 1 of 2 in 1 s',
      restarts: { infra: 1, training: 0, oom: 0 },
      nextRetryAt: '2026-03-01T10:00:01.000Z',
    });
    expect(r.requeueAfterMs).toBe(1000);
    expect(r.status.nodes.map((n) => n.state)).toEqual(['Failed', 'Failed']);
    expect(r.status.failures).toEqual([
      {
        attempt: 1,
        class: 'infra',
        reason: 'PreflightFailed',
        host: 'gpu2',
        message: 'preflight failed: gpu1 -> gpu2:29500: timeout',
        time: now.toISOString(),
      },
    ]);
    expect(r.event).toMatchObject({ reason: 'PreflightFailed', type: 'Warning' });
  });
  it('the budget spent: Failed PreflightFailed, no retry', () => {
    const j = job('j', { ...CMD, nodes: 2, preflight: true, restartPolicy: { maxInfraRestarts: 1 } });
    const spent = { ...starting, attempt: 2, restarts: { infra: 1, training: 0, oom: 0 } } as JobStatus;
    const r = recordPreflightFailure(spent, j, { ...f, attempt: 2 }, now);
    expect(r.status).toMatchObject({
      phase: 'Failed',
      reason: 'PreflightFailed',
      message: 'attempt 2: preflight failed: gpu1 -> gpu2:29500: timeout (gave up after 1 retry)',
      completionTime: now.toISOString(),
    });
    expect(r.requeueAfterMs).toBeUndefined();
    expect(r.status.nextRetryAt).toBeUndefined();
  });
});
