/**
 * reconcile(): the pure decision (spec, previous status, what the hosts show, cluster, now) ->
 * (status, actions, requeue). Each test feeds the previous result's status back in, as the
 * controller does, and asserts the exact actions, phase and reason.
 */
import { describe, expect, it } from 'vitest';
import type { SpecState } from '../../controller/api/job-state.ts';
import { type JobStatus, setCondition } from '../../controller/api/status.ts';
import { parseTrainingJob } from '../../controller/api/trainingjob.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import type { ReconcileInput, ReconcileResult } from '../../controller/core/types.ts';
import { jobYaml, rank, run, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const ms = (s: number) => T0 + s * 1000;

function rec(over: Partial<ReconcileInput> & { spec: SpecState }): ReconcileResult {
  return reconcile({ name: 'train', now: at(0), parts: [], unreachable: new Map(), cluster: view(), ...over });
}
const cond = (s: JobStatus | null | undefined, type: string) => s?.conditions.find((c) => c.type === type);
const launches = (r: ReconcileResult) => r.actions.filter((a) => a.type === 'launch');

const TWO = { script: 't.py', nodes: 2 };
/** The GPU every host of the default view has (job-fixtures' view()). */
const G8 = [{ index: 0, name: '', memoryMiB: 8188 }];

describe('a new job', () => {
  const S = validSpec('train', TWO);

  it('is launched: one launch action with parts, ranks and port; phase Starting', () => {
    const r = rec({ spec: S });
    expect(r.actions).toEqual([
      {
        type: 'launch',
        job: 'train',
        runId: `train-${S.hash}-a1`,
        dir: `train.${S.hash}.1`,
        attempt: 1,
        specHash: S.hash,
        parts: [
          { host: 'gpu-master', nodeRank: 0, nproc: 1, gpus: G8 },
          { host: 'gpu1', nodeRank: 1, nproc: 1, gpus: G8 },
        ],
        allParts: [
          { host: 'gpu-master', nodeRank: 0, nproc: 1, gpus: G8 },
          { host: 'gpu1', nodeRank: 1, nproc: 1, gpus: G8 },
        ],
        rdzvHost: 'gpu-master',
        port: 29500,
        createdAt: iso(0),
      },
    ]);
    expect(r.status).toMatchObject({
      phase: 'Starting',
      reason: 'Launching',
      message: 'launching attempt 1 on gpu-master, gpu1',
      observedGeneration: 1,
      specHash: S.hash,
      attempt: 1,
      runId: `train-${S.hash}-a1`,
      createdAt: iso(0),
      startTime: iso(0),
      nodes: [
        { host: 'gpu-master', nodeRank: 0, globalRanks: [], state: 'Pending' },
        { host: 'gpu1', nodeRank: 1, globalRanks: [], state: 'Pending' },
      ],
    });
    expect(r.status!.completionTime).toBeUndefined();
    expect(r.requeueAfterMs).toBe(2000);
    expect(cond(r.status, 'Valid')).toMatchObject({ status: 'True', reason: 'SpecValid' });
    expect(cond(r.status, 'Scheduled')).toMatchObject({
      status: 'True',
      reason: 'Scheduled',
      message: 'assigned gpu-master, gpu1',
    });
    expect(r.events.map((e) => e.reason)).toContain('Launching');
  });

  // Regression (was a bug, fixed): one launch writes two "Launching" events to events.jsonl (one pushed in step 6, one
  // by finish() because the phase changed), so `ugro events` shows every launch twice.
  it('one launch is one Launching event', () => {
    expect(rec({ spec: S }).events.filter((e) => e.reason === 'Launching')).toHaveLength(1);
  });

  it('takes the first free port above the ones in use', () => {
    const r = rec({ spec: S, cluster: view({ usedPorts: new Set([29500, 29501]) }) });
    expect(launches(r)[0]).toMatchObject({ port: 29502 });
  });

  it('stays Queued/Unschedulable, naming why, when it cannot be placed', () => {
    const r = rec({
      spec: S,
      cluster: view({
        ready: new Set(['gpu1']),
        notReady: new Map([
          ['gpu-master', 'down'],
          ['gpu2', 'down'],
        ]),
      }),
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Queued',
      reason: 'Unschedulable',
      message: 'needs 2 GPU(s) on 2 host(s), 1 free: gpu-master NotReady (down); gpu2 NotReady (down)',
      attempt: 0,
    });
    expect(cond(r.status, 'Scheduled')).toMatchObject({ status: 'False', reason: 'Unschedulable' });
    expect(r.requeueAfterMs).toBe(5000);
  });

  it('with suspend: true is Suspended and never launched', () => {
    const r = rec({ spec: validSpec('train', { ...TWO, suspend: true }) });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Suspended', reason: 'Suspended' });
  });
});

describe('observing a run', () => {
  const S = validSpec('train', TWO);
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const launched = rec({ spec: S }).status!;

  it('torchrun up, no ranks yet: Starting/Rendezvous', () => {
    const r = rec({
      spec: S,
      status: launched,
      now: at(5),
      parts: [R.part('gpu-master', { launchedAtMs: ms(1) }), R.part('gpu1', { launchedAtMs: ms(1) })],
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Starting',
      reason: 'Rendezvous',
      message: 'attempt 1: waiting for rendezvous',
    });
    expect(r.status!.nodes.map((n) => n.state)).toEqual(['Running', 'Running']);
  });

  it('every rank up: Running with node statuses, startTime, progress and endpoint', () => {
    const parts = [
      R.part('gpu-master', {
        launchedAtMs: ms(1.5),
        ranks: [rank(0, 0), rank(1, 1)],
        metrics: { step: 40, loss: 1.25 },
      }),
      R.part('gpu1', { launchedAtMs: ms(1), ranks: [rank(2, 0), rank(3, 1)] }),
    ];
    const r = rec({ spec: S, status: launched, now: at(60), parts });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Running',
      reason: 'Running',
      message: 'attempt 1: 4 ranks on gpu-master, gpu1',
      observedGeneration: 1,
      attempt: 1,
      runId: R.runId,
      rdzvEndpoint: '10.0.0.10:29500',
      startTime: iso(1),
      progress: { step: 40, loss: 1.25 },
    });
    expect(r.status!.nodes).toEqual([
      { host: 'gpu-master', nodeRank: 0, globalRanks: [0, 1], pid: 1000, state: 'Running' },
      { host: 'gpu1', nodeRank: 1, globalRanks: [2, 3], pid: 1001, state: 'Running' },
    ]);
    expect(cond(r.status, 'Running')).toMatchObject({
      status: 'True',
      reason: 'RanksRunning',
      message: '4 ranks running on 2 hosts',
    });
    expect(cond(r.status, 'HostsReachable')).toMatchObject({ status: 'True' });
    expect(r.requeueAfterMs).toBe(30_000);
    expect(r.events).toEqual([
      { reason: 'Running', message: 'attempt 1: 4 ranks on gpu-master, gpu1', type: 'Normal' },
    ]);
    // Level-triggered: the same observation again changes nothing and says nothing.
    const again = rec({ spec: S, status: r.status!, now: at(90), parts });
    expect(again.status).toEqual({ ...r.status, message: r.status!.message });
    expect(again.events).toEqual([]);
  });

  it('all parts exit 0: Succeeded, completionTime = the last part to finish', () => {
    const parts = [
      R.part('gpu-master', {
        exit: 0,
        launchedAtMs: ms(1),
        finishedAtMs: ms(100),
        ranks: [rank(0, 0, { exitCode: 0, exitedAt: ms(99) })],
      }),
      R.part('gpu1', {
        exit: 0,
        launchedAtMs: ms(1),
        finishedAtMs: ms(101.5),
        ranks: [rank(1, 0, { exitCode: 0, exitedAt: ms(100) })],
      }),
    ];
    const r = rec({ spec: S, status: launched, now: at(120), parts });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Succeeded',
      reason: 'Succeeded',
      message: 'all ranks exited 0 (attempt 1)',
      completionTime: iso(101.5),
      startTime: iso(1),
    });
    expect(r.status!.nodes.map((n) => [n.state, n.exitCode])).toEqual([
      ['Succeeded', 0],
      ['Succeeded', 0],
    ]);
    expect(cond(r.status, 'Complete')).toMatchObject({ status: 'True', reason: 'Succeeded' });
    expect(r.requeueAfterMs).toBeUndefined();
  });

  it('a rank exits 3: Failed with exitCode 3, the failed rank and host, and its log tail', () => {
    const log = Array.from({ length: 25 }, (_, i) => `line ${i}`);
    const parts = [
      // rank 0 was killed (143) as the gang came down; rank 1 is the real failure.
      R.part('gpu-master', { exit: 1, finishedAtMs: ms(52), ranks: [rank(0, 0, { exitCode: 143, exitedAt: ms(49) })] }),
      R.part('gpu1', {
        exit: 1,
        finishedAtMs: ms(51),
        ranks: [rank(1, 0, { exitCode: 3, exitedAt: ms(50), logTail: log })],
        agentLogTail: ['ChildFailedError'],
      }),
    ];
    const r = rec({ spec: S, status: launched, now: at(60), parts });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Failed',
      reason: 'RankFailed',
      message: 'rank 1 on gpu1 exited with code 3',
      exitCode: 3,
      failedRank: 1,
      failedHost: 'gpu1',
      logTail: log.slice(5),
      completionTime: iso(52),
    });
    expect(r.status!.nodes.map((n) => n.state)).toEqual(['Failed', 'Failed']);
    expect(r.events).toContainEqual({
      reason: 'RankFailed',
      message: 'rank 1 on gpu1 exited with code 3',
      type: 'Warning',
    });
  });

  it('torchrun failing with no rank output: the agent log is the tail, rank unknown', () => {
    const parts = [
      R.part('gpu-master', { exit: 0, finishedAtMs: ms(5) }),
      R.part('gpu1', { exit: 1, finishedAtMs: ms(4), agentLogTail: ['ModuleNotFoundError: torch'] }),
    ];
    const r = rec({ spec: S, status: launched, now: at(10), parts });
    expect(r.status).toMatchObject({
      phase: 'Failed',
      exitCode: 1,
      failedHost: 'gpu1',
      logTail: ['ModuleNotFoundError: torch'],
      message: 'rank ? on gpu1 exited with code 1',
    });
    expect(r.status!.failedRank).toBeUndefined();
  });

  it('gang semantics: one node failed while another still runs -> stop the others (grace 2: no checkpoint now)', () => {
    const parts = [
      R.part('gpu-master', { ranks: [rank(0)] }),
      R.part('gpu1', { exit: 1, finishedAtMs: ms(50), ranks: [rank(1, 0, { exitCode: 3, exitedAt: ms(50) })] }),
    ];
    const r = rec({ spec: S, status: launched, now: at(51), parts });
    expect(r.actions).toEqual([
      {
        type: 'stop',
        runId: R.runId,
        dir: R.dir,
        hosts: ['gpu-master'],
        graceSeconds: 2,
        reason: 'gang-failed',
      },
    ]);
    expect(r.status).toMatchObject({ phase: 'Running', reason: 'Failing' });
    expect(r.requeueAfterMs).toBe(1000);
  });

  it('a rank exiting non-zero while its torchrun is still alive already fails the gang', () => {
    const parts = [
      R.part('gpu-master', { ranks: [rank(0)] }),
      R.part('gpu1', { ranks: [rank(1, 0, { exitCode: 2, exitedAt: ms(50) })] }),
    ];
    const r = rec({ spec: S, status: launched, now: at(51), parts });
    expect(r.actions).toEqual([
      {
        type: 'stop',
        runId: R.runId,
        dir: R.dir,
        hosts: ['gpu-master', 'gpu1'],
        graceSeconds: 2,
        reason: 'gang-failed',
      },
    ]);
  });

  it('an unreachable host is Unknown (not relaunched), HostsReachable False, quicker requeue', () => {
    const parts = [R.part('gpu-master', { ranks: [rank(0)], launchedAtMs: ms(1) })];
    const r = rec({
      spec: S,
      status: launched,
      now: at(60),
      parts,
      unreachable: new Map([['gpu1', 'connection refused']]),
    });
    expect(launches(r)).toEqual([]);
    expect(r.actions).toEqual([]);
    expect(r.status!.nodes[1]).toEqual({ host: 'gpu1', nodeRank: 1, globalRanks: [], state: 'Unknown' });
    expect(cond(r.status, 'HostsReachable')).toMatchObject({
      status: 'False',
      reason: 'HostUnreachable',
      message: 'gpu1: connection refused',
    });
    expect(r.requeueAfterMs).toBe(1000);
  });

  // Regression (was a bug, fixed): a Running job whose host is briefly unreachable is reported as Starting/Rendezvous
  // ("waiting for rendezvous"), with a new event each time the host flaps: `started` requires a
  // part from every host, and an unreachable host has none.
  it('a Running job stays Running while one of its hosts is briefly unreachable', () => {
    const both = [
      R.part('gpu-master', { ranks: [rank(0)], launchedAtMs: ms(1) }),
      R.part('gpu1', { ranks: [rank(1)], launchedAtMs: ms(1) }),
    ];
    const running = rec({ spec: S, status: launched, now: at(60), parts: both }).status!;
    expect(running.phase).toBe('Running');
    const r = rec({
      spec: S,
      status: running,
      now: at(90),
      parts: [both[0]],
      unreachable: new Map([['gpu1', 'timeout']]),
    });
    expect(r.status).toMatchObject({ phase: 'Running' });
    expect(r.events).toEqual([]);
  });
});

describe('restartPolicy', () => {
  const S = validSpec('train', {
    script: 't.py',
    hosts: ['gpu1'],
    restartPolicy: { maxRestarts: 1, backoffSeconds: 10 },
  });
  const A1 = run('train', S.hash, 1, ['gpu1'], { createdAt: iso(0) });
  const A2 = run('train', S.hash, 2, ['gpu1'], { createdAt: iso(70) });
  const failed = (R: typeof A1, finishedS: number) =>
    R.part('gpu1', {
      exit: 1,
      finishedAtMs: ms(finishedS),
      ranks: [rank(0, 0, { exitCode: 3, exitedAt: ms(finishedS) })],
    });
  const launched = rec({ spec: S }).status!;

  it('maxRestarts 1: first failure -> Queued/BackoffRestart until the backoff passes, then attempt 2', () => {
    const backoff = rec({ spec: S, status: launched, now: at(63), parts: [failed(A1, 60)] });
    expect(backoff.actions).toEqual([]);
    expect(backoff.status).toMatchObject({
      phase: 'Queued',
      reason: 'BackoffRestart',
      message: 'attempt 1 failed: rank 0 on gpu1 exited with code 3; restart 1 of 1 after backoff',
      attempt: 1,
      exitCode: 3,
      failedRank: 0,
    });
    // The backoff runs on the controller's clock from when it saw the failure (63 s), not the host's.
    expect(backoff.requeueAfterMs).toBe(10_000);
    expect(backoff.status).toMatchObject({ nextRetryAt: iso(73), restarts: { training: 1, infra: 0 } });
    expect(backoff.status!.failures).toEqual([
      {
        attempt: 1,
        class: 'training',
        reason: 'RankFailed',
        message: 'rank 0 on gpu1 exited with code 3',
        host: 'gpu1',
        rank: 0,
        exitCode: 3,
        time: iso(63),
      },
    ]);
    expect(cond(backoff.status, 'Running')).toMatchObject({ status: 'False', reason: 'RankFailed' });

    // Still inside the backoff one second before it ends; the same failure is not counted twice.
    const again = rec({ spec: S, status: backoff.status!, now: at(72), parts: [failed(A1, 60)] });
    expect(again.actions).toEqual([]);
    expect(again.status!.failures).toHaveLength(1);
    expect(again.requeueAfterMs).toBe(1000);

    const relaunch = rec({ spec: S, status: backoff.status!, now: at(73), parts: [failed(A1, 60)] });
    expect(relaunch.actions).toEqual([
      {
        type: 'launch',
        job: 'train',
        runId: `train-${S.hash}-a2`,
        dir: `train.${S.hash}.2`,
        attempt: 2,
        specHash: S.hash,
        parts: [{ host: 'gpu1', nodeRank: 0, nproc: 1, gpus: G8 }],
        allParts: [{ host: 'gpu1', nodeRank: 0, nproc: 1, gpus: G8 }],
        rdzvHost: 'gpu1',
        port: 29500,
        createdAt: iso(73),
        restartCount: 1,
      },
    ]);
    expect(relaunch.status).toMatchObject({
      phase: 'Starting',
      reason: 'Launching',
      attempt: 2,
      runId: `train-${S.hash}-a2`,
      startTime: iso(73),
    });
    expect(relaunch.status!.completionTime).toBeUndefined();
    expect(relaunch.events).toContainEqual({
      reason: 'Restarting',
      message: 'attempt 2, from the start, on gpu1 (attempt 1 failed: rank 0 on gpu1 exited with code 3)',
      type: 'Warning',
    });

    // The second failure exhausts maxRestarts: Failed, and nothing more is launched.
    const final = rec({ spec: S, status: relaunch.status!, now: at(500), parts: [failed(A1, 60), failed(A2, 90)] });
    expect(final.actions).toEqual([]);
    expect(final.status).toMatchObject({
      phase: 'Failed',
      reason: 'RankFailed',
      message: 'rank 0 on gpu1 exited with code 3 (after 1 restart)',
      attempt: 2,
      exitCode: 3,
      completionTime: iso(90),
    });
  });

  it('maxRestarts 0 (the default): the first failure is final', () => {
    const S0 = validSpec('train', { script: 't.py', hosts: ['gpu1'] });
    const R = run('train', S0.hash, 1, ['gpu1'], { createdAt: iso(0) });
    const r = rec({
      spec: S0,
      status: rec({ spec: S0 }).status!,
      now: at(61),
      parts: [
        R.part('gpu1', { exit: 1, finishedAtMs: ms(60), ranks: [rank(0, 0, { exitCode: 3, exitedAt: ms(60) })] }),
      ],
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Failed',
      reason: 'RankFailed',
      message: 'rank 0 on gpu1 exited with code 3',
    });
  });

  it('the backoff doubles per attempt', () => {
    const S3 = validSpec('train', {
      script: 't.py',
      hosts: ['gpu1'],
      restartPolicy: { maxRestarts: 3, backoffSeconds: 10 },
    });
    const B1 = run('train', S3.hash, 1, ['gpu1'], { createdAt: iso(0) });
    const B2 = run('train', S3.hash, 2, ['gpu1'], { createdAt: iso(70) });
    const f = (R: typeof B1, s: number) =>
      R.part('gpu1', { exit: 1, finishedAtMs: ms(s), ranks: [rank(0, 0, { exitCode: 3, exitedAt: ms(s) })] });
    const r = rec({ spec: S3, status: rec({ spec: S3 }).status!, now: at(100), parts: [f(B1, 60), f(B2, 100)] });
    expect(r.status).toMatchObject({ phase: 'Queued', reason: 'BackoffRestart', attempt: 2 });
    expect(r.requeueAfterMs).toBe(20_000);
  });
});

describe('deleting the job file', () => {
  const S = validSpec('train', TWO);
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const live = [R.part('gpu-master', { ranks: [rank(0)] }), R.part('gpu1', { ranks: [rank(1)] })];
  const running = rec({ spec: S, now: at(30), status: rec({ spec: S }).status!, parts: live }).status!;

  it('with a live run: stop it, keep the status until it has stopped', () => {
    const r = rec({ spec: { kind: 'deleted' }, status: running, now: at(40), parts: live });
    expect(r.actions).toEqual([
      { type: 'stop', runId: R.runId, dir: R.dir, hosts: ['gpu-master', 'gpu1'], graceSeconds: 30, reason: 'deleted' },
    ]);
    expect(r.status).toEqual({ ...running, message: 'deleting: stopping the run' });
    expect(r.requeueAfterMs).toBe(1000);
    expect(r.events).toEqual([{ reason: 'Stopping', message: 'job file deleted: stopping its run' }]);
  });

  it('with nothing alive: archive every run part of every attempt, status null', () => {
    const A2 = run('train', S.hash, 2, ['gpu1', 'gpu2'], { createdAt: iso(100) });
    const parts = [
      R.part('gpu-master', { exit: 1, finishedAtMs: ms(50) }),
      R.part('gpu1', { exit: 1, finishedAtMs: ms(50) }),
      A2.part('gpu1', { exit: 137, cancelled: 'deleted', finishedAtMs: ms(150) }),
      A2.part('gpu2', { exit: 137, cancelled: 'deleted', finishedAtMs: ms(150) }),
    ];
    const r = rec({ spec: { kind: 'deleted' }, status: running, now: at(200), parts });
    expect(r.status).toBeNull();
    expect(r.actions).toEqual([
      {
        type: 'archive',
        parts: [
          { host: 'gpu-master', dir: R.dir },
          { host: 'gpu1', dir: R.dir },
          { host: 'gpu1', dir: A2.dir },
          { host: 'gpu2', dir: A2.dir },
        ],
      },
    ]);
    expect(r.events).toEqual([{ reason: 'Deleted', message: 'job file deleted; run stopped' }]);
  });

  it('nothing alive but a host unreachable: keep the status, archive nothing yet', () => {
    const r = rec({
      spec: { kind: 'deleted' },
      status: running,
      now: at(200),
      parts: [R.part('gpu-master', { exit: 0 })],
      unreachable: new Map([['gpu1', 'timeout']]),
    });
    expect(r.actions).toEqual([]);
    expect(r.status).not.toBeNull();
    expect(r.requeueAfterMs).toBe(1000);
  });

  it('runs of a job this jobs dir never knew (no status): left alone, not archived', () => {
    const r = rec({
      spec: { kind: 'deleted' },
      now: at(200),
      parts: [R.part('gpu-master', { exit: 0 }), R.part('gpu1', { exit: 0 })],
    });
    expect(r).toEqual({ status: null, actions: [], events: [] });
  });

  it('the same spec applied again before the archive pass: the run stopped as deleted is not a failure', () => {
    const stopped = [
      R.part('gpu-master', { exit: 137, cancelled: 'deleted', finishedAtMs: ms(50) }),
      R.part('gpu1', { exit: 137, cancelled: 'deleted', finishedAtMs: ms(50) }),
    ];
    const r = rec({ spec: S, status: running, now: at(60), parts: stopped });
    expect(r.status?.phase).toBe('Starting');
    expect(r.actions.map((a) => a.type)).toEqual(['launch']);
    expect(r.events.map((e) => e.reason)).toEqual(['Resuming', 'Scheduled', 'Launching']);
  });

  it('never seen and nothing on the hosts: status null, no actions, no events', () => {
    expect(rec({ spec: { kind: 'deleted' } })).toEqual({ status: null, actions: [], events: [] });
  });
});

/** A valid control file with a cancel for spec version `hash`. */
const cancelOf = (hash: string, cancel: { requestedAt: string; graceSeconds?: number }) =>
  ({ kind: 'valid', control: { cancel: { specHash: hash, ...cancel } } }) as const;

describe('cancel', () => {
  const S = validSpec('train', TWO);
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const live = [R.part('gpu-master', { ranks: [rank(0)] }), R.part('gpu1', { ranks: [rank(1)] })];
  const stopped = [
    R.part('gpu-master', { exit: 137, cancelled: 'cancelled', finishedAtMs: ms(40) }),
    R.part('gpu1', { exit: 137, cancelled: 'cancelled', finishedAtMs: ms(40) }),
  ];
  const running = rec({ spec: S, now: at(30), status: rec({ spec: S }).status!, parts: live }).status!;

  it('stops the run with the requested grace and marks the job Cancelled', () => {
    const control = cancelOf(S.hash, { requestedAt: iso(35), graceSeconds: 7 });
    const r = rec({ spec: S, status: running, now: at(35), parts: live, control });
    expect(r.actions).toEqual([
      { type: 'stop', runId: R.runId, dir: R.dir, hosts: ['gpu-master', 'gpu1'], graceSeconds: 7, reason: 'cancelled' },
    ]);
    expect(r.status).toMatchObject({
      phase: 'Cancelled',
      reason: 'Cancelled',
      message: `cancelled at ${iso(35)}`,
      runId: R.runId,
      attempt: 1,
    });
    expect(r.status!.completionTime).toBeUndefined();
    expect(r.requeueAfterMs).toBe(1000);

    const after = rec({ spec: S, status: r.status!, now: at(41), parts: stopped, control });
    expect(after.actions).toEqual([]);
    expect(after.status).toMatchObject({ phase: 'Cancelled', completionTime: iso(41) });
    expect(after.requeueAfterMs).toBeUndefined();
  });

  it('without graceSeconds uses the default grace', () => {
    const r = rec({
      spec: S,
      status: running,
      now: at(35),
      parts: live,
      control: cancelOf(S.hash, { requestedAt: iso(35) }),
    });
    expect(r.actions).toEqual([
      {
        type: 'stop',
        runId: R.runId,
        dir: R.dir,
        hosts: ['gpu-master', 'gpu1'],
        graceSeconds: 30,
        reason: 'cancelled',
      },
    ]);
  });

  it('a cancel meant for an older spec does not touch this one', () => {
    const r = rec({
      spec: S,
      status: running,
      now: at(35),
      parts: live,
      control: cancelOf('deadbeef', { requestedAt: iso(35) }),
    });
    expect(r.actions).toEqual([]);
    expect(r.status!.phase).toBe('Running');
  });

  it('a queued job is cancelled without ever being launched', () => {
    const r = rec({ spec: S, control: cancelOf(S.hash, { requestedAt: iso(0) }) });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Cancelled', completionTime: iso(0) });
  });

  it('cancel on an already Succeeded job: stays Succeeded, no stop, no event', () => {
    const done = [
      R.part('gpu-master', { exit: 0, finishedAtMs: ms(50) }),
      R.part('gpu1', { exit: 0, finishedAtMs: ms(50) }),
    ];
    const succeeded = rec({ spec: S, status: running, now: at(60), parts: done }).status!;
    expect(succeeded.phase).toBe('Succeeded');
    const r = rec({
      spec: S,
      status: succeeded,
      now: at(70),
      parts: done,
      control: cancelOf(S.hash, { requestedAt: iso(70) }),
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Succeeded', reason: 'Succeeded', completionTime: iso(50) });
    expect(r.events).toEqual([]);
  });

  it('a cancel withdrawn (control gone) starts a new attempt', () => {
    const cancelled = rec({
      spec: S,
      status: running,
      now: at(41),
      parts: stopped,
      control: cancelOf(S.hash, { requestedAt: iso(35) }),
    }).status!;
    const r = rec({ spec: S, status: cancelled, now: at(50), parts: stopped });
    expect(launches(r)).toMatchObject([{ attempt: 2, runId: `train-${S.hash}-a2` }]);
  });

  // Regression (issue 7, defect 10): a cancel written while the spec was invalid had no hash and
  // cancelled every later version. Now a cancel is for one spec version only.
  it('a cancel for one spec version does not cancel the next version', () => {
    const S2 = validSpec('train', { ...TWO, args: ['--epochs', '2'] });
    const r = rec({ spec: S2, control: cancelOf(S.hash, { requestedAt: iso(0) }) });
    expect(r.status!.phase).toBe('Starting');
    expect(launches(r)).toHaveLength(1);
  });

  it('an invalid control file is ignored with a warning naming the file and field, and cancels nothing', () => {
    const control = {
      kind: 'invalid' as const,
      file: '/jobs/train.control.yaml',
      issues: [{ path: 'cancel.graceSeconds', message: 'must be 0..3600 seconds', line: 4 }],
    };
    const r = rec({ spec: S, status: running, now: at(35), parts: live, control });
    expect(r.actions).toEqual([]);
    expect(r.status!.phase).toBe('Running');
    expect(r.events).toContainEqual({
      reason: 'InvalidControl',
      message: 'ignored: /jobs/train.control.yaml:4: cancel.graceSeconds: must be 0..3600 seconds',
      type: 'Warning',
    });
    expect(cond(r.status, 'ControlValid')).toMatchObject({ status: 'False', reason: 'InvalidControl' });
  });
});

describe('suspend', () => {
  const spec = { ...TWO, restartPolicy: { maxRestarts: 0, backoffSeconds: 10 } };
  const S = validSpec('train', spec);
  const SUS = validSpec('train', { ...spec, suspend: true });
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const live = [R.part('gpu-master', { ranks: [rank(0)] }), R.part('gpu1', { ranks: [rank(1)] })];
  const suspended = [
    R.part('gpu-master', { exit: 137, cancelled: 'suspended', finishedAtMs: ms(40) }),
    R.part('gpu1', { exit: 137, cancelled: 'suspended', finishedAtMs: ms(40) }),
  ];
  const running = rec({ spec: S, now: at(30), status: rec({ spec: S }).status!, parts: live }).status!;

  it('suspend does not change the spec hash', () => {
    expect(SUS.hash).toBe(S.hash);
  });

  it('suspend: true stops the run and marks it Suspended; once stopped, nothing more happens', () => {
    const r = rec({ spec: SUS, status: running, now: at(35), parts: live });
    expect(r.actions).toEqual([
      {
        type: 'stop',
        runId: R.runId,
        dir: R.dir,
        hosts: ['gpu-master', 'gpu1'],
        graceSeconds: 30,
        reason: 'suspended',
      },
    ]);
    expect(r.status).toMatchObject({ phase: 'Suspended', reason: 'Suspended', observedGeneration: 1 });
    const after = rec({ spec: SUS, status: r.status!, now: at(41), parts: suspended });
    expect(after.actions).toEqual([]);
    expect(after.status).toMatchObject({ phase: 'Suspended' });
  });

  it('suspend removed: a NEW attempt is launched, and it is not a failure (maxRestarts 0 still launches)', () => {
    const sus = rec({ spec: SUS, status: running, now: at(41), parts: suspended }).status!;
    const r = rec({ spec: S, status: sus, now: at(100), parts: suspended });
    expect(r.actions).toEqual([
      {
        type: 'launch',
        job: 'train',
        runId: `train-${S.hash}-a2`,
        dir: `train.${S.hash}.2`,
        attempt: 2,
        specHash: S.hash,
        parts: [
          { host: 'gpu-master', nodeRank: 0, nproc: 1, gpus: G8 },
          { host: 'gpu1', nodeRank: 1, nproc: 1, gpus: G8 },
        ],
        allParts: [
          { host: 'gpu-master', nodeRank: 0, nproc: 1, gpus: G8 },
          { host: 'gpu1', nodeRank: 1, nproc: 1, gpus: G8 },
        ],
        rdzvHost: 'gpu-master',
        port: 29500,
        createdAt: iso(100),
        restartCount: 1,
      },
    ]);
    expect(r.status).toMatchObject({ phase: 'Starting', reason: 'Launching', attempt: 2, observedGeneration: 1 });
    expect(r.events.map((e) => e.reason)).toContain('Resuming');
  });

  it('the suspended attempt does not count against maxRestarts: a later failure still gets its restart', () => {
    const S1 = validSpec('train', { ...spec, restartPolicy: { maxRestarts: 1, backoffSeconds: 10 } });
    const A1 = run('train', S1.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
    const A2 = run('train', S1.hash, 2, ['gpu-master', 'gpu1'], { createdAt: iso(100) });
    const parts = [
      A1.part('gpu-master', { exit: 137, cancelled: 'suspended', finishedAtMs: ms(40) }),
      A1.part('gpu1', { exit: 137, cancelled: 'suspended', finishedAtMs: ms(40) }),
      A2.part('gpu-master', {
        exit: 1,
        finishedAtMs: ms(200),
        ranks: [rank(0, 0, { exitCode: 3, exitedAt: ms(200) })],
      }),
      A2.part('gpu1', { exit: 1, finishedAtMs: ms(200) }),
    ];
    const r = rec({ spec: S1, status: rec({ spec: S1 }).status!, now: at(201), parts });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Queued', reason: 'BackoffRestart', attempt: 2 });
  });

  // Regression (was a bug, fixed): the backoff grows with the attempt number, so an attempt stopped on purpose
  // (suspend, withdrawn cancel) doubles the first real failure's backoff, and the message counts attempts
  // that were never failures ("attempt 3 of 2").
  it('after a suspend/resume, the first real failure waits backoffSeconds, not twice that', () => {
    const S1 = validSpec('train', { ...spec, restartPolicy: { maxRestarts: 1, backoffSeconds: 10 } });
    const A1 = run('train', S1.hash, 1, ['gpu1'], { createdAt: iso(0) });
    const A2 = run('train', S1.hash, 2, ['gpu1'], { createdAt: iso(100) });
    const parts = [
      A1.part('gpu1', { exit: 137, cancelled: 'suspended', finishedAtMs: ms(40) }),
      A2.part('gpu1', { exit: 1, finishedAtMs: ms(200), ranks: [rank(0, 0, { exitCode: 3, exitedAt: ms(200) })] }),
    ];
    const r = rec({ spec: S1, status: rec({ spec: S1 }).status!, now: at(200), parts });
    expect(r.requeueAfterMs).toBe(10_000);
    expect(r.status!.message).not.toMatch(/attempt 3 of 2/);
  });

  // Regression (was a bug, fixed): completionTime of a Suspended (or Cancelled) job is `now` of whichever reconcile ran
  // last: the status is rebuilt without the previous completionTime and `??= now` refills it, so
  // every resync (every 60 s for Suspended, which is not terminal) moves it forward.
  it('a Suspended job keeps its completionTime across reconciles', () => {
    const first = rec({ spec: SUS, status: running, now: at(41), parts: suspended }).status!;
    const later = rec({ spec: SUS, status: first, now: at(600), parts: suspended }).status!;
    expect(later.completionTime).toBe(first.completionTime);
  });
});

describe('spec changes', () => {
  const S1 = validSpec('train', TWO);
  const S2 = validSpec('train', { ...TWO, args: ['--lr', '0.01'] });
  const R = run('train', S1.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const live = [R.part('gpu-master', { ranks: [rank(0)] }), R.part('gpu1', { ranks: [rank(1)] })];
  const running = rec({ spec: S1, now: at(30), status: rec({ spec: S1 }).status!, parts: live }).status!;

  it('the old live run is stopped first, then the new spec launched; observedGeneration bumped', () => {
    const r = rec({
      spec: S2,
      status: running,
      now: at(60),
      parts: live,
      cluster: view({ usedPorts: new Set([29500]) }),
    });
    expect(r.actions).toEqual([
      {
        type: 'stop',
        runId: R.runId,
        dir: R.dir,
        hosts: ['gpu-master', 'gpu1'],
        graceSeconds: 30,
        reason: 'spec-changed',
      },
      expect.objectContaining({
        type: 'launch',
        runId: `train-${S2.hash}-a1`,
        dir: `train.${S2.hash}.1`,
        attempt: 1,
        specHash: S2.hash,
        port: 29501,
      }),
    ]);
    expect(r.status).toMatchObject({
      observedGeneration: 2,
      specHash: S2.hash,
      attempt: 1,
      phase: 'Starting',
      runId: `train-${S2.hash}-a1`,
    });
  });

  it('a finished run of the old spec does not count: the new spec starts at attempt 1', () => {
    const old = [
      R.part('gpu-master', { exit: 1, finishedAtMs: ms(50) }),
      R.part('gpu1', { exit: 1, finishedAtMs: ms(50) }),
    ];
    const failed = rec({ spec: S1, status: running, now: at(60), parts: old }).status!;
    expect(failed).toMatchObject({ phase: 'Failed', exitCode: 1 });
    const r = rec({ spec: S2, status: failed, now: at(70), parts: old });
    expect(r.actions).toEqual([expect.objectContaining({ type: 'launch', attempt: 1, specHash: S2.hash })]);
    expect(r.status).toMatchObject({ phase: 'Starting', observedGeneration: 2 });
    expect(r.status!.exitCode).toBeUndefined();
    expect(r.status!.failedHost).toBeUndefined();
  });
});

describe('an invalid spec', () => {
  const S = validSpec('train', TWO);
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const live = [R.part('gpu-master', { ranks: [rank(0)] }), R.part('gpu1', { ranks: [rank(1)] })];
  const running = rec({ spec: S, now: at(30), status: rec({ spec: S }).status!, parts: live }).status!;
  const parsed = parseTrainingJob(jobYaml('train', { ...TWO, nodes: 0 }), '/jobs/train.yaml');
  if (parsed.ok) throw new Error('expected an invalid job');
  const BAD: SpecState = { kind: 'invalid', file: '/jobs/train.yaml', issues: parsed.issues };

  it('is Invalid with the issue path and line, and the running run is left alone', () => {
    const r = rec({ spec: BAD, status: running, now: at(40), parts: live });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({
      phase: 'Invalid',
      reason: 'InvalidSpec',
      message: '/jobs/train.yaml:7:10: spec.nodes: must be >= 1',
      specHash: S.hash,
      attempt: 1,
    });
    expect(r.status!.nodes).toEqual(running.nodes);
    expect(cond(r.status, 'Valid')).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(r.events).toEqual([
      { reason: 'InvalidSpec', message: '/jobs/train.yaml:7:10: spec.nodes: must be >= 1', type: 'Warning' },
    ]);
    // Still invalid: no repeated event.
    expect(rec({ spec: BAD, status: r.status!, now: at(50), parts: live }).events).toEqual([]);
  });

  it('fixing it back to the same spec re-adopts the running run (no restart, same generation)', () => {
    const invalid = rec({ spec: BAD, status: running, now: at(40), parts: live }).status!;
    const r = rec({ spec: S, status: invalid, now: at(50), parts: live });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Running', observedGeneration: 1, runId: R.runId });
  });
});

describe('a half-done launch (the controller died mid-way)', () => {
  const S = validSpec('train', { script: 't.py', nodes: 3, restartPolicy: { maxInfraRestarts: 0 } });
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1', 'gpu2'], { createdAt: iso(0), port: 29600, nproc: 2 });
  const two = [R.part('gpu-master', { launchedAtMs: ms(1) }), R.part('gpu1', { launchedAtMs: ms(1) })];
  const starting = rec({ spec: S }).status!;

  it('young: launch the missing host only, same run, port and createdAt', () => {
    const r = rec({
      spec: S,
      status: starting,
      now: at(20),
      parts: two,
      cluster: view({ usedPorts: new Set([29600]) }),
    });
    expect(r.actions).toEqual([
      {
        type: 'launch',
        job: 'train',
        runId: R.runId,
        dir: R.dir,
        attempt: 1,
        specHash: S.hash,
        parts: [{ host: 'gpu2', nodeRank: 2, nproc: 2, gpus: G8 }],
        allParts: [
          { host: 'gpu-master', nodeRank: 0, nproc: 2, gpus: G8 },
          { host: 'gpu1', nodeRank: 1, nproc: 2, gpus: G8 },
          { host: 'gpu2', nodeRank: 2, nproc: 2, gpus: G8 },
        ],
        rdzvHost: 'gpu-master',
        port: 29600,
        createdAt: iso(0),
      },
    ]);
    expect(r.status).toMatchObject({ phase: 'Starting', reason: 'Launching', message: 'launching on gpu2' });
    expect(r.status!.nodes[2]).toEqual({ host: 'gpu2', nodeRank: 2, globalRanks: [], state: 'Missing' });
    expect(r.events.map((e) => e.reason)).toContain('LaunchResumed');
  });

  it('past the rendezvous timeout: stop the parts that did start', () => {
    const r = rec({ spec: S, status: starting, now: at(301), parts: two });
    expect(r.actions).toEqual([
      {
        type: 'stop',
        runId: R.runId,
        dir: R.dir,
        hosts: ['gpu-master', 'gpu1'],
        graceSeconds: 2,
        reason: 'gang-failed',
      },
    ]);
    expect(launches(r)).toEqual([]);
  });

  it(
    'past the timeout with nothing alive and the others exiting cleanly: ' +
      'Failed naming the host that never started',
    () => {
      const done = [
        R.part('gpu-master', { exit: 0, finishedAtMs: ms(310) }),
        R.part('gpu1', { exit: 0, finishedAtMs: ms(310) }),
      ];
      const r = rec({ spec: S, status: starting, now: at(320), parts: done });
      expect(r.actions).toEqual([]);
      expect(r.status).toMatchObject({
        phase: 'Failed',
        reason: 'HostsNeverStarted',
        message: 'hosts gpu2 never started (rendezvous timed out after 300 s)',
        restarts: { infra: 1, training: 0 },
      });
      expect(r.status!.exitCode).toBeUndefined();
    },
  );

  it('a host that never started is an infrastructure failure: retried under maxInfraRestarts (default 10)', () => {
    const S10 = validSpec('train', { script: 't.py', nodes: 3 });
    const R10 = run('train', S10.hash, 1, ['gpu-master', 'gpu1', 'gpu2'], { createdAt: iso(0) });
    const done = [
      R10.part('gpu-master', { exit: 0, finishedAtMs: ms(310) }),
      R10.part('gpu1', { exit: 0, finishedAtMs: ms(310) }),
    ];
    const r = rec({ spec: S10, status: rec({ spec: S10 }).status!, now: at(320), parts: done });
    expect(r.status).toMatchObject({ phase: 'Queued', reason: 'BackoffRestart', restarts: { infra: 1, training: 0 } });
    expect(r.requeueAfterMs).toBe(1000);
  });

  // Regression (was a bug, fixed): UGRO itself stops the parts that did start (exit 137, cancelled
  // "gang member failed"), and firstFailure then blames that stopped part: "rank ? on gpu-master exited with code 137".
  // The "hosts X never started" message is only reachable when the others exited 0.
  it('after UGRO stopped the waiting parts, the failure still names the host that never started', () => {
    const stopped = [
      R.part('gpu-master', { exit: 137, cancelled: 'gang-failed', finishedAtMs: ms(306) }),
      R.part('gpu1', { exit: 137, cancelled: 'gang-failed', finishedAtMs: ms(306) }),
    ];
    const r = rec({ spec: S, status: starting, now: at(320), parts: stopped });
    expect(r.status).toMatchObject({ phase: 'Failed', message: expect.stringContaining('gpu2 never started') });
  });
});

describe('activeDeadlineSeconds', () => {
  const S = validSpec('train', {
    script: 't.py',
    hosts: ['gpu1'],
    activeDeadlineSeconds: 60,
    restartPolicy: { maxRestarts: 2 },
  });
  const R = run('train', S.hash, 1, ['gpu1'], { createdAt: iso(0) });
  const live = [R.part('gpu1', { launchedAtMs: ms(0), ranks: [rank(0)] })];
  const starting = rec({ spec: S }).status!;

  it('within the deadline: Running', () => {
    const r = rec({ spec: S, status: starting, now: at(59), parts: live });
    expect(r.actions).toEqual([]);
    expect(r.status!.phase).toBe('Running');
  });

  it('exceeded: stop + Failed DeadlineExceeded', () => {
    const r = rec({ spec: S, status: starting, now: at(61), parts: live });
    expect(r.actions).toEqual([
      { type: 'stop', runId: R.runId, dir: R.dir, hosts: ['gpu1'], graceSeconds: 30, reason: 'deadline-exceeded' },
    ]);
    expect(r.status).toMatchObject({
      phase: 'Failed',
      reason: 'DeadlineExceeded',
      message: 'ran longer than activeDeadlineSeconds (60 s)',
      completionTime: iso(61),
    });
    expect(cond(r.status, 'Running')).toMatchObject({ status: 'False', reason: 'DeadlineExceeded' });
  });

  // Regression (was a bug, fixed): once the deadline stop has taken effect, the stopped run (exit 137, cancelled
  // "deadline exceeded") reads as an ordinary rank failure: with maxRestarts > 0 the job is
  // restarted (Queued/BackoffRestart, then a new attempt), otherwise its reason turns into
  // RankFailed. The controller's terminal short-circuit hides this only while the Failed status
  // was persisted; a stop that threw (host dropped mid-stop) or a lost status file re-runs it.
  it('after the deadline stop, the job stays Failed/DeadlineExceeded and is not restarted', () => {
    const failed = rec({ spec: S, status: starting, now: at(61), parts: live }).status!;
    const stopped = [
      R.part('gpu1', {
        exit: 137,
        cancelled: 'deadline exceeded',
        launchedAtMs: ms(0),
        finishedAtMs: ms(70),
        ranks: [rank(0, 0, { exitCode: 143, exitedAt: ms(69) })],
      }),
    ];
    const r = rec({ spec: S, status: failed, now: at(75), parts: stopped });
    expect(r.status).toMatchObject({ phase: 'Failed', reason: 'DeadlineExceeded' });
    const later = rec({ spec: S, status: r.status!, now: at(500), parts: stopped });
    expect(launches(later)).toEqual([]);
    expect(later.status).toMatchObject({ phase: 'Failed', reason: 'DeadlineExceeded' });
  });
});

describe('setCondition', () => {
  it('lastTransitionTime moves only when the status changes; the list stays sorted by type', () => {
    let l = setCondition([], { type: 'Valid', status: 'True', reason: 'A', message: 'a' }, 't1');
    l = setCondition(l, { type: 'Running', status: 'True', reason: 'R', message: 'r' }, 't1');
    l = setCondition(l, { type: 'Valid', status: 'True', reason: 'B', message: 'b' }, 't2');
    expect(l.map((c) => [c.type, c.reason, c.lastTransitionTime])).toEqual([
      ['Running', 'R', 't1'],
      ['Valid', 'B', 't1'],
    ]);
    l = setCondition(l, { type: 'Valid', status: 'False', reason: 'C', message: 'c' }, 't3');
    expect(l.find((c) => c.type === 'Valid')!.lastTransitionTime).toBe('t3');
  });
});

describe('a spec changed and changed back', () => {
  it('trains again (a new generation), not the old finished result re-adopted; said in an event', () => {
    const A = validSpec('train', TWO);
    const B = validSpec('train', { ...TWO, args: ['--lr', '0.1'] });
    const RA = run('train', A.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
    const doneA = ['gpu-master', 'gpu1'].map((h) => RA.part(h, { exit: 0, finishedAtMs: ms(50) }));
    const a = rec({ spec: A, status: rec({ spec: A }).status!, now: at(60), parts: doneA });
    expect(a.status!.phase).toBe('Succeeded');
    const b = rec({ spec: B, status: a.status!, now: at(70), parts: doneA });
    expect(b.status).toMatchObject({ phase: 'Starting', observedGeneration: 2 });
    const back = rec({ spec: A, status: b.status!, now: at(80), parts: doneA, attemptFloor: 1 });
    expect(back.status).toMatchObject({ phase: 'Starting', observedGeneration: 3, attempt: 2 });
    expect(back.events.map((e) => e.reason)).toContain('SpecReverted');
  });

  it('a lost status file adopts what runs (no second launch)', () => {
    const A = validSpec('train', TWO);
    const RA = run('train', A.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
    const live = ['gpu-master', 'gpu1'].map((h, i) => RA.part(h, { ranks: [rank(i)] }));
    const r = rec({ spec: A, now: at(60), parts: live });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Running', attempt: 1 });
  });
});
