/**
 * The pure core with a Slurm cluster in the inventory: placement sends a `backend: slurm` job
 * (or every job, with `slurm.default`) to the cluster's host and never an SSH job there; the one
 * reconcile loop reads a Slurm run's part exactly as an SSH run's, with Slurm's own words for
 * PENDING (Queued) and for the end (NODE_FAIL restarts, TIMEOUT fails, a failed rank fails with
 * its log tail); a login host that goes quiet is not a lost node.
 */
import { describe, expect, it } from 'vitest';
import type { SpecState } from '../../controller/api/job-state.ts';
import { type RunMeta, type RunPart, runDirName, runIdOf } from '../../controller/api/run.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import { runsOnSlurm, schedule } from '../../controller/core/schedule.ts';
import type { ReconcileInput, ReconcileResult } from '../../controller/core/types.ts';
import { HOSTS, job, rank, validSpec, view } from './job-fixtures.ts';
import { slurmCluster } from './slurm-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();

const HPC = slurmCluster().slurm!;
const hosts = [...HOSTS, HPC];
/** Every host Ready (the Slurm login host too) and free. */
const sview = (over = {}) => view({ hosts, ready: new Set(hosts.map((h) => h.name)), gpus: new Map(), ...over });

function rec(over: Partial<ReconcileInput> & { spec: SpecState }): ReconcileResult {
  return reconcile({ name: 'train', now: at(0), parts: [], unreachable: new Map(), cluster: sview(), ...over });
}

const SLURM = { script: 't.py', nodes: 3, backend: 'slurm' };

/** Attempt 1 of `hash` as the Slurm backend reports it: one part on the cluster's host, no pid. */
function slurmPart(hash: string, state: string, p: Partial<RunPart> = {}): RunPart {
  const meta: RunMeta = {
    job: 'train',
    runId: runIdOf('train', hash, 1),
    specHash: hash,
    attempt: 1,
    host: 'hpc',
    nodeRank: 0,
    nnodes: 1,
    nprocPerNode: 1,
    hosts: ['hpc'],
    rdzvEndpoint: '10.1.0.1:29500',
    masterPort: 29500,
    createdAt: iso(0),
  };
  return {
    dir: runDirName('train', hash, 1),
    host: 'hpc',
    meta,
    alive: true,
    ranks: [],
    agentLogTail: [],
    slurm: { jobId: '42', state, nodes: 'gpu[1-3]' },
    ...p,
  };
}

describe('placement', () => {
  it('a backend: slurm job is one part on the Slurm cluster, whatever holds the GPUs or waits ahead', () => {
    const busy = new Map(HOSTS.map((h) => [h.name, 'other']));
    const d = schedule(job('train', SLURM), sview({ busy, ahead: ['first'] }));
    expect(d).toEqual({ kind: 'place', nodes: [{ host: 'hpc', nodeRank: 0, gpus: [] }], backfill: false });
    const r = rec({ spec: validSpec('train', SLURM), cluster: sview({ busy }) });
    expect(r.actions).toMatchObject([{ type: 'launch', parts: [{ host: 'hpc', nodeRank: 0, nproc: 1 }] }]);
    expect(r.status).toMatchObject({ phase: 'Starting', nodes: [{ host: 'hpc', state: 'Pending' }] });
  });

  it('an SSH job never lands on the Slurm login host', () => {
    const d = schedule(job('train', { script: 't.py', nodes: 3 }), sview());
    expect(d.kind === 'place' && d.nodes.map((n) => n.host)).toEqual(['gpu-master', 'gpu1', 'gpu2']);
    const four = schedule(job('train', { script: 't.py', nodes: 4 }), sview());
    expect(four.kind).not.toBe('place');
  });

  it('slurm.default sends jobs without spec.backend to Slurm; backend: ssh keeps one on the hosts', () => {
    const def = [...HOSTS, { ...HPC, slurm: { ...HPC.slurm, default: true } }];
    expect(runsOnSlurm(job('a', { script: 't.py' }), def)).toBe(true);
    expect(runsOnSlurm(job('a', { script: 't.py', backend: 'ssh' }), def)).toBe(false);
    expect(runsOnSlurm(job('a', { script: 't.py' }), hosts)).toBe(false);
  });

  it('waits while the login host is down; cannot ever run without a slurm: section', () => {
    const down = schedule(job('train', SLURM), sview({ down: new Map([['hpc', 'refused']]) }));
    expect(down).toEqual({ kind: 'wait', why: 'Slurm login host hpc: refused' });
    const r = rec({ spec: validSpec('train', SLURM), cluster: view() });
    expect(r.status).toMatchObject({ phase: 'Failed', reason: 'Unschedulable' });
    expect(r.status?.message).toMatch(/no slurm: section/);
  });
});

describe('a Slurm run, observed', () => {
  const S = validSpec('train', { ...SLURM, restartPolicy: { maxInfraRestarts: 3 } });
  const slurm = (state: string, p: Partial<RunPart> = {}) => slurmPart(S.hash, state, p);
  const prev = (s: ReconcileResult) => s.status as JobStatus;
  const first = rec({ spec: S });

  it('PENDING: Queued with Slurm reason, the node Pending, the Slurm job in status', () => {
    const r = rec({
      spec: S,
      status: prev(first),
      now: at(5),
      parts: [
        slurm('PENDING', { waiting: { reason: 'SlurmPending', message: 'Slurm job 42 is PENDING (Resources)' } }),
      ],
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Queued',
      reason: 'SlurmPending',
      message: 'Slurm job 42 is PENDING (Resources)',
      nodes: [{ host: 'hpc', state: 'Pending' }],
      slurm: { jobId: '42', state: 'PENDING' },
    });
  });

  it('RUNNING with its ranks: Running, ranks under the cluster, no launch', () => {
    const r = rec({
      spec: S,
      status: prev(first),
      now: at(9),
      parts: [slurm('RUNNING', { ranks: [rank(0), rank(1), rank(2)] })],
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Running', nodes: [{ host: 'hpc', globalRanks: [0, 1, 2] }] });
  });

  it('a login host quiet for long is not a lost node: the run stays as it was', () => {
    const running = rec({ spec: S, status: prev(first), now: at(9), parts: [slurm('RUNNING', { ranks: [rank(0)] })] });
    const r = rec({
      spec: S,
      status: prev(running),
      now: at(600),
      parts: [],
      unreachable: new Map([['hpc', 'no answer for 590.0 s']]),
      cluster: sview({ lastHeard: new Map([['hpc', T0 + 10_000]]) }),
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Running', slurm: { jobId: '42' } });
    expect(r.status?.conditions.find((c) => c.type === 'NodeLost')).toBeUndefined();
  });

  it('COMPLETED: Succeeded', () => {
    const r = rec({
      spec: S,
      status: prev(first),
      now: at(60),
      parts: [slurm('COMPLETED', { alive: false, exitCode: 0 })],
    });
    expect(r.status).toMatchObject({ phase: 'Succeeded' });
  });

  it('NODE_FAIL: an infrastructure failure, retried from the newest checkpoint', () => {
    const ended = { class: 'infra' as const, reason: 'SlurmNodeFail', message: 'a node of Slurm job 42 failed' };
    const r = rec({
      spec: S,
      status: prev(first),
      now: at(60),
      parts: [slurm('NODE_FAIL', { alive: false, exitCode: 1, ended })],
    });
    expect(r.status).toMatchObject({ phase: 'Queued', reason: 'BackoffRestart', restarts: { infra: 1, training: 0 } });
    expect(r.status?.failures?.[0]).toMatchObject({ class: 'infra', reason: 'SlurmNodeFail' });
    const later = rec({
      spec: S,
      status: prev(r),
      now: at(70),
      parts: [slurm('NODE_FAIL', { alive: false, exitCode: 1, ended })],
    });
    expect(later.actions).toMatchObject([{ type: 'launch', attempt: 2, parts: [{ host: 'hpc' }] }]);
  });

  it('TIMEOUT: Failed at once, whatever the budget', () => {
    const ended = {
      class: 'training' as const,
      reason: 'SlurmTimeLimit',
      message: 'reached its time limit',
      final: true,
    };
    const r = rec({
      spec: S,
      status: prev(first),
      now: at(60),
      parts: [slurm('TIMEOUT', { alive: false, exitCode: 1, ended })],
    });
    expect(r.status).toMatchObject({ phase: 'Failed', reason: 'SlurmTimeLimit' });
  });

  it('a failed rank: Failed with that rank, its host and its log tail', () => {
    const ranks = [
      rank(0, 0, { exitCode: 143, exitedAt: T0 + 31_000 }),
      rank(1, 0, { exitCode: 3, exitedAt: T0 + 30_000, logTail: ['ValueError: boom'] }),
    ];
    const T = validSpec('train', SLURM);
    const start = rec({ spec: T });
    const r = rec({
      spec: T,
      status: prev(start),
      now: at(60),
      parts: [slurmPart(T.hash, 'FAILED', { alive: false, exitCode: 1, ranks })],
    });
    expect(r.status).toMatchObject({
      phase: 'Failed',
      reason: 'RankFailed',
      failedRank: 1,
      exitCode: 3,
      logTail: ['ValueError: boom'],
    });
  });
});
