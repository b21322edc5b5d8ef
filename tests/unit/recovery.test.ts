/**
 * Recovery decisions of the pure core (issue 8): a lost node, a vanished runner, a stalled rank,
 * exit-code policy, where a restart goes, and which checkpoint it resumes from (copied to the new
 * rank 0 when it is elsewhere). Inputs as the controller gathers them; outputs as data.
 */
import { describe, expect, it } from 'vitest';
import type { CheckpointInfo } from '../../controller/api/run.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import { newestCheckpoint } from '../../controller/core/steps/schedule-next.ts';
import type { LaunchAction, ReconcileInput, ReconcileResult } from '../../controller/core/types.ts';
import { rank, run, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const ms = (s: number) => T0 + s * 1000;
const THREE = ['gpu-master', 'gpu1', 'gpu2'];

function rec(over: Partial<ReconcileInput> & Pick<ReconcileInput, 'spec'>): ReconcileResult {
  return reconcile({ name: 'train', now: at(0), parts: [], unreachable: new Map(), cluster: view(), ...over });
}
const launches = (r: ReconcileResult) => r.actions.filter((a): a is LaunchAction => a.type === 'launch');
const heard = (s: number) => new Map(THREE.map((h) => [h, ms(s)]));

describe('a node lost mid-run', () => {
  const S = validSpec('train', { script: 't.py', nodes: { min: 2, max: 3 }, restartPolicy: { maxRestarts: 0 } });
  const R = run('train', S.hash, 1, THREE, { createdAt: iso(0) });
  const live = THREE.map((h, i) => R.part(h, { ranks: [rank(i)], launchedAtMs: ms(1) }));
  const running = rec({ spec: S, now: at(10), status: rec({ spec: S }).status!, parts: live }).status!;
  const survivors = live.filter((p) => p.host !== 'gpu2');
  const cut = (now: number, lastHeardGpu2: number, parts = survivors, status = running) =>
    rec({
      spec: S,
      status,
      now: at(now),
      parts,
      unreachable: new Map([['gpu2', 'ssh: no answer within 3 s']]),
      cluster: view({ lastHeard: new Map([...heard(now), ['gpu2', ms(lastHeardGpu2)]]) }),
    });

  it('unreachable for less than nodeLostSeconds (5): not lost (debounced), checked again within a second', () => {
    const r = cut(24, 20);
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Running' });
    expect(r.status!.nodes.find((n) => n.host === 'gpu2')?.state).toBe('Unknown');
    expect(r.requeueAfterMs).toBe(1000);
  });

  it(
    'past nodeLostSeconds: NodeLost naming the host and since when; ' + 'survivors stopped; counted as infrastructure',
    () => {
      const r = cut(25.5, 20);
      expect(r.actions).toEqual([
        {
          type: 'stop',
          runId: R.runId,
          dir: R.dir,
          hosts: ['gpu-master', 'gpu1'],
          graceSeconds: 2,
          reason: 'node-lost',
        },
      ]);
      const what = `node gpu2 lost: no answer since ${iso(20)} (5.5 s)`;
      expect(r.status).toMatchObject({ phase: 'Running', reason: 'NodeLost', message: `${what}: stopping the others` });
      expect(r.status!.conditions.find((c) => c.type === 'NodeLost')).toMatchObject({ status: 'True', message: what });
      expect(r.events).toContainEqual({ reason: 'NodeLost', message: what, type: 'Warning' });
      expect(r.status!.failures).toEqual([
        { attempt: 1, class: 'infra', reason: 'NodeLost', message: what, host: 'gpu2', time: iso(25.5) },
      ]);
      // Restarted on the hosts still there (nodes min 2), after a 1 s backoff, from the start (no checkpoint yet).
      const stopped = survivors.map((p) => ({ ...p, alive: false, exitCode: 137, stopReason: 'node-lost' as const }));
      const wait = cut(26, 20, stopped, r.status!);
      expect(wait.status).toMatchObject({
        phase: 'Queued',
        reason: 'BackoffRestart',
        restarts: { infra: 1, training: 0 },
      });
      const again = cut(26.6, 20, stopped, wait.status!);
      expect(launches(again)).toMatchObject([{ attempt: 2, allParts: [{ host: 'gpu-master' }, { host: 'gpu1' }] }]);
      expect(again.events.find((e) => e.reason === 'Restarting')?.message).toBe(
        `attempt 2, from the start, on gpu-master,gpu1 (attempt 1 failed: ${what})`,
      );
    },
  );

  it('survivors that failed on their own meanwhile do not turn it into a training failure', () => {
    const failed = survivors.map((p) => ({ ...p, alive: false, exitCode: 1, ranks: [{ ...p.ranks[0], exitCode: 1 }] }));
    // Within the debounce: not decided yet (gpu2 may come back with its part).
    expect(cut(22, 20, failed).status).toMatchObject({ phase: 'Running' });
    const r = cut(26, 20, failed);
    expect(r.status).toMatchObject({ phase: 'Queued', reason: 'BackoffRestart', restarts: { infra: 1, training: 0 } });
  });

  it('nodes: 3 and only two hosts left: Queued WaitingForNodes, restarted when the third is back', () => {
    const S3 = validSpec('train', { script: 't.py', nodes: 3 });
    const R3 = run('train', S3.hash, 1, THREE, { createdAt: iso(0) });
    const done = ['gpu-master', 'gpu1'].map((h, i) =>
      R3.part(h, { exit: 137, ranks: [rank(i)], cancelled: 'node-lost', finishedAtMs: ms(26) }),
    );
    const lostView = view({
      lastHeard: new Map([...heard(40), ['gpu2', ms(20)]]),
      down: new Map([['gpu2', `lost: no answer since ${iso(20)}`]]),
    });
    const first = rec({
      spec: S3,
      status: rec({ spec: S3 }).status!,
      now: at(40),
      parts: done,
      unreachable: new Map([['gpu2', 'x']]),
      cluster: lostView,
    });
    // After the 1 s backoff, the restart cannot be placed: it waits for nodes.
    const st = rec({
      spec: S3,
      status: first.status!,
      now: at(42),
      parts: done,
      unreachable: new Map([['gpu2', 'x']]),
      cluster: lostView,
    });
    expect(st.status).toMatchObject({ phase: 'Queued', reason: 'WaitingForNodes' });
    expect(st.status!.message).toContain(`gpu2 lost: no answer since ${iso(20)}`);
    const back = rec({ spec: S3, status: st.status!, now: at(60), parts: done, cluster: view() });
    expect(launches(back)).toMatchObject([
      { attempt: 2, allParts: [{ host: 'gpu-master' }, { host: 'gpu1' }, { host: 'gpu2' }] },
    ]);
  });

  it('a leftover of attempt 1 alive on a host that came back is stopped (never two generations)', () => {
    const A2 = run('train', S.hash, 2, ['gpu-master', 'gpu1'], { createdAt: iso(30) });
    const parts = [
      R.part('gpu2', { ranks: [rank(2)] }),
      ...['gpu-master', 'gpu1'].map((h, i) => A2.part(h, { ranks: [rank(i)] })),
    ];
    const r = rec({ spec: S, status: running, now: at(40), parts });
    expect(r.actions).toContainEqual({
      type: 'stop',
      runId: R.runId,
      dir: R.dir,
      hosts: ['gpu2'],
      graceSeconds: 5,
      reason: 'superseded',
    });
    expect(r.status).toMatchObject({ attempt: 2, phase: 'Running' });
  });
});

describe('a runner that vanished (no exit code: reboot, OOM killer, kill -9 of the runner)', () => {
  const S = validSpec('train', { script: 't.py', nodes: 2 });
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const running = rec({
    spec: S,
    now: at(10),
    status: rec({ spec: S }).status!,
    parts: [R.part('gpu-master', { ranks: [rank(0)] }), R.part('gpu1', { ranks: [rank(1)] })],
  }).status!;

  it('is RunnerVanished (infrastructure): the rest stopped, then restarted; today it stayed Running forever', () => {
    const parts = [R.part('gpu-master', { ranks: [rank(0)] }), R.part('gpu1', { alive: false, ranks: [rank(1)] })];
    const r = rec({ spec: S, status: running, now: at(20), parts });
    // Its orphans (torchrun, ranks) are stopped by their marker on gpu1 too.
    expect(r.actions).toMatchObject([{ type: 'stop', hosts: ['gpu-master', 'gpu1'], reason: 'runner-vanished' }]);
    expect(r.status).toMatchObject({ phase: 'Running', reason: 'RunnerVanished' });
    expect(r.status!.message).toContain(
      'the runner on gpu1 (pid 1001) vanished without an exit code (host rebooted? OOM killer? see dmesg)',
    );
    const after = rec({
      spec: S,
      status: r.status!,
      now: at(22),
      parts: [R.part('gpu-master', { exit: 137, cancelled: 'runner-vanished', ranks: [rank(0)] }), parts[1]],
    });
    expect(after.status).toMatchObject({ phase: 'Starting', attempt: 2, restarts: { infra: 1, training: 0 } });
  });
});

describe('a stalled rank (its heartbeat stops)', () => {
  const S = validSpec('train', { script: 't.py', nodes: 2, failurePolicy: { progressDeadlineSeconds: 10 } });
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const launched = rec({ spec: S }).status!;
  const beats = (a: number, b: number) => [
    R.part('gpu-master', { ranks: [rank(0, 0, { heartbeatAgeS: a })] }),
    R.part('gpu1', { ranks: [rank(1, 0, { heartbeatAgeS: b })] }),
  ];

  it('healthy heartbeats: Running, and the next look comes when the oldest would pass the deadline', () => {
    const r = rec({ spec: S, status: launched, now: at(30), parts: beats(0.4, 2) });
    expect(r.status!.phase).toBe('Running');
    expect(r.requeueAfterMs).toBe(8200);
  });

  it(
    'past progressDeadlineSeconds: ' +
      'ProgressStalled naming the rank whose heartbeat stopped first; the gang stopped',
    () => {
      const r = rec({ spec: S, status: launched, now: at(30), parts: beats(10.5, 12.25) });
      expect(r.actions).toMatchObject([
        { type: 'stop', reason: 'stalled', hosts: ['gpu-master', 'gpu1'], graceSeconds: 2 },
      ]);
      const what = 'rank 1 on gpu1 made no progress for 12.3 s (failurePolicy.progressDeadlineSeconds: 10)';
      expect(r.status).toMatchObject({ reason: 'ProgressStalled', message: `${what}: stopping the gang` });
      expect(r.status!.failures).toMatchObject([
        { class: 'training', reason: 'ProgressStalled', rank: 1, host: 'gpu1', message: what },
      ]);
      const stopped = beats(11, 13).map((p) => ({ ...p, alive: false, exitCode: 137, stopReason: 'stalled' as const }));
      const after = rec({ spec: S, status: r.status!, now: at(36), parts: stopped });
      expect(after.status).toMatchObject({
        phase: 'Failed',
        reason: 'ProgressStalled',
        failedRank: 1,
        failedHost: 'gpu1',
        message: what,
      });
      expect(after.status!.exitCode).toBeUndefined();
    },
  );
});

describe('restartPolicy.exitCodes', () => {
  const spec = {
    script: 't.py',
    hosts: ['gpu1'],
    restartPolicy: { maxRestarts: 1, exitCodes: { fatal: [2], retry: [75] } },
  };
  const S = validSpec('train', spec);
  const R = run('train', S.hash, 1, ['gpu1'], { createdAt: iso(0) });
  const exit = (code: number, R1 = R) =>
    R1.part('gpu1', { exit: 1, finishedAtMs: ms(5), ranks: [rank(0, 0, { exitCode: code, exitedAt: ms(5) })] });
  const launched = rec({ spec: S }).status!;

  it('a fatal code fails at once, whatever the budget', () => {
    const r = rec({ spec: S, status: launched, now: at(6), parts: [exit(2)] });
    expect(r.status).toMatchObject({ phase: 'Failed', reason: 'FatalExitCode', exitCode: 2 });
    expect(r.actions).toEqual([]);
  });

  it('a retry code restarts without counting: three in a row never exhaust maxRestarts 1', () => {
    const runs = [1, 2, 3].map((a) => run('train', S.hash, a, ['gpu1'], { createdAt: iso(a * 100) }));
    const r = rec({ spec: S, status: launched, now: at(400), parts: runs.map((x) => exit(75, x)) });
    expect(r.status).toMatchObject({ restarts: { training: 0, infra: 0 } });
    expect(r.status!.phase).not.toBe('Failed');
  });

  it('an exit code listed as both is refused by the schema', () => {
    expect(() => validSpec('train', { ...spec, restartPolicy: { exitCodes: { fatal: [3], retry: [3] } } })).toThrow(
      /both fatal and retry/,
    );
  });
});

describe('resuming from the newest checkpoint, wherever it is', () => {
  const S = validSpec('train', { script: 't.py', nodes: { min: 2, max: 2 }, restartPolicy: { maxRestarts: 2 } });
  const R = run('train', S.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
  const failed = [
    R.part('gpu-master', { exit: 1, finishedAtMs: ms(50), ranks: [rank(0, 0, { exitCode: 1, exitedAt: ms(50) })] }),
    R.part('gpu1', { exit: 137, finishedAtMs: ms(50), cancelled: 'gang-failed', ranks: [rank(1)] }),
  ];
  const ck = (host: string, step: number, mtime: number, size = 1000): CheckpointInfo => ({
    host,
    name: `step-${step}`,
    step,
    sizeBytes: size,
    mtimeMs: ms(mtime),
  });
  const restart = (checkpoints: CheckpointInfo[], over: Partial<ReconcileInput> = {}) => {
    const wait = rec({ spec: S, status: rec({ spec: S }).status!, now: at(51), parts: failed, checkpoints, ...over });
    return rec({ spec: S, status: wait.status!, now: at(80), parts: failed, checkpoints, ...over });
  };

  it('the holder of the newest checkpoint becomes rank 0: UGRO_RESUME_FROM, nothing copied', () => {
    const r = restart([ck('gpu1', 40, 45), ck('gpu-master', 20, 30)]);
    expect(launches(r)).toMatchObject([{ attempt: 2, rdzvHost: 'gpu1', resumeFrom: 'step-40', restartCount: 1 }]);
    expect(launches(r)[0].copyCheckpoint).toBeUndefined();
    expect(r.events.find((e) => e.reason === 'Restarting')?.message).toMatch(
      /^attempt 2, resume from step-40, on gpu1,gpu-master/,
    );
  });

  it('when its holder cannot take part, the checkpoint is copied to the new rank 0 first', () => {
    const r = restart([ck('gpu2', 40, 45)], {
      cluster: view({ hosts: view().hosts, busy: new Map([['gpu2', 'other']]) }),
    });
    expect(launches(r)).toMatchObject([
      {
        rdzvHost: 'gpu-master',
        resumeFrom: 'step-40',
        copyCheckpoint: { from: 'gpu2', to: 'gpu-master', name: 'step-40' },
      },
    ]);
  });

  it('checkpoint.shared: nothing is ever copied', () => {
    const SH = validSpec('train', {
      script: 't.py',
      nodes: 2,
      restartPolicy: { maxRestarts: 2 },
      checkpoint: { shared: true },
    });
    const RS = run('train', SH.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
    const parts = failed.map((p) => ({ ...p, dir: RS.dir, meta: { ...p.meta, specHash: SH.hash, runId: RS.runId } }));
    const busy = view({ busy: new Map([['gpu2', 'other']]) });
    const wait = rec({
      spec: SH,
      status: rec({ spec: SH }).status!,
      now: at(51),
      parts,
      checkpoints: [ck('gpu2', 40, 45)],
      cluster: busy,
    });
    const r = rec({
      spec: SH,
      status: wait.status!,
      now: at(80),
      parts,
      checkpoints: [ck('gpu2', 40, 45)],
      cluster: busy,
    });
    expect(launches(r)[0]).toMatchObject({ resumeFrom: 'step-40' });
    expect(launches(r)[0].copyCheckpoint).toBeUndefined();
  });

  it('checkpoints older than this spec version are not its own: not resumed from', () => {
    const r = restart([ck('gpu1', 900, -3600)]);
    expect(launches(r)[0].resumeFrom).toBeUndefined();
  });

  it('newestCheckpoint: by step, then by time', () => {
    expect(newestCheckpoint([ck('a', 10, 5), ck('b', 30, 1), ck('c', 30, 3)], undefined)?.host).toBe('c');
  });

  it('a suspended and resumed job resumes from its checkpoint too (not counted as a restart)', () => {
    const SS = validSpec('train', { script: 't.py', nodes: 2 });
    const RS = run('train', SS.hash, 1, ['gpu-master', 'gpu1'], { createdAt: iso(0) });
    const suspended = ['gpu-master', 'gpu1'].map((h) =>
      RS.part(h, { exit: 137, cancelled: 'suspended', finishedAtMs: ms(40) }),
    );
    const st: JobStatus = { ...rec({ spec: SS }).status!, phase: 'Suspended' };
    const r = rec({ spec: SS, status: st, now: at(60), parts: suspended, checkpoints: [ck('gpu-master', 30, 35)] });
    expect(launches(r)).toMatchObject([{ attempt: 2, resumeFrom: 'step-30' }]);
    expect(r.status!.restarts).toBeUndefined();
  });
});

describe('run dirs left by another controller', () => {
  it('a new attempt never reuses a run dir of this spec found on a host, whoever made it', () => {
    const S = validSpec('train', { script: 't.py', nodes: 2 });
    const r = rec({ spec: S, attemptFloor: 3 });
    expect(launches(r)).toMatchObject([{ attempt: 4, dir: `train.${S.hash}.4` }]);
  });
});
