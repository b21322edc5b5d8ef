/**
 * Progress between reconciles, the pure part (core/live-progress.ts: which run dirs to read, which
 * part's line is a run's progress, how a line goes into a status), progress.sh's answer as
 * records.ts reads it, and the per-job lanes that keep progress writes out of a reconcile's way.
 */
import { describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import { progressAnswerOf } from '../../controller/backends/records.ts';
import { mergeProgress, progressMoved, progressPart, progressTargets } from '../../controller/core/live-progress.ts';
import { JobLanes } from '../../controller/loop/lanes.ts';
import { run } from './job-fixtures.ts';

const T = '2026-03-01T10:00:00.000Z';

function status(over: Partial<JobStatus> = {}): JobStatus {
  return {
    phase: 'Running',
    observedGeneration: 1,
    attempt: 1,
    runId: 'a-abcd1234-a1',
    nodes: [],
    createdAt: T,
    conditions: [],
    progress: { step: 10, loss: 1 },
    ...over,
  };
}

describe('which run dirs the watcher reads', () => {
  const a = run('a', 'abcd1234', 1, ['gpu-master', 'gpu1'], { createdAt: T });
  const b = run('b', 'abcd1234', 2, ['gpu1'], { createdAt: T });
  const old = run('b', 'abcd1234', 1, ['gpu1'], { createdAt: T });
  const c = run('c', 'abcd1234', 1, ['gpu2'], { createdAt: T });

  it('the live parts of the run each Starting or Running job shows, per host, sorted; nothing else', () => {
    const statuses: Record<string, Pick<JobStatus, 'phase' | 'runId'>> = {
      a: { phase: 'Running', runId: a.runId },
      b: { phase: 'Starting', runId: b.runId },
      c: { phase: 'Succeeded', runId: c.runId },
    };
    const t = progressTargets(
      [b.part('gpu1'), a.part('gpu1'), a.part('gpu-master'), old.part('gpu1'), c.part('gpu2', { exit: 0 })],
      (j) => statuses[j],
      () => false,
    );
    expect(Object.fromEntries(t)).toEqual({
      'gpu-master': [{ job: 'a', runId: a.runId, dir: a.dir, nodeRank: 0 }],
      gpu1: [
        { job: 'a', runId: a.runId, dir: a.dir, nodeRank: 1 },
        { job: 'b', runId: b.runId, dir: b.dir, nodeRank: 0 },
      ],
    });
  });

  it('nothing when nothing runs: no part alive, no status, a job Queued, or a skipped host (Slurm)', () => {
    const live = { phase: 'Running' as const, runId: a.runId };
    expect(
      progressTargets(
        [a.part('gpu1', { alive: false })],
        () => live,
        () => false,
      ).size,
    ).toBe(0);
    expect(
      progressTargets(
        [a.part('gpu1')],
        () => undefined,
        () => false,
      ).size,
    ).toBe(0);
    expect(
      progressTargets(
        [a.part('gpu1')],
        () => ({ ...live, phase: 'Queued' }),
        () => false,
      ).size,
    ).toBe(0);
    expect(
      progressTargets(
        [a.part('gpu1')],
        () => live,
        (h) => h === 'gpu1',
      ).size,
    ).toBe(0);
    expect(
      progressTargets(
        [],
        () => live,
        () => false,
      ).size,
    ).toBe(0);
  });
});

describe("a run's progress and a status", () => {
  it('the lowest node rank that has a metrics line is the run', () => {
    const r = run('a', 'abcd1234', 1, ['gpu-master', 'gpu1', 'gpu2'], { createdAt: T });
    const p1 = r.part('gpu1', { metrics: { step: 5 } });
    const p2 = r.part('gpu2', { metrics: { step: 9 } });
    expect(progressPart([p2, p1, r.part('gpu-master')])).toBe(p1);
    expect(progressPart([r.part('gpu-master')])).toBeUndefined();
  });

  it('a newer step of the shown run goes in; the same step, another run or a finished job do not', () => {
    const s = status();
    expect(mergeProgress(s, { runId: s.runId!, metrics: { step: 11, loss: 0.9 } })).toEqual({
      ...s,
      progress: { step: 11, loss: 0.9 },
    });
    // A step may go back (a script counting per epoch): still a move.
    expect(mergeProgress(s, { runId: s.runId!, metrics: { step: 1 } })?.progress).toEqual({ step: 1 });
    expect(mergeProgress(s, { runId: s.runId!, metrics: { step: 10, loss: 0.5 } })).toBeUndefined();
    expect(mergeProgress(s, { runId: 'a-abcd1234-a2', metrics: { step: 11 } })).toBeUndefined();
    for (const phase of ['Succeeded', 'Failed', 'Queued', 'Cancelled', 'Suspended', 'Invalid'] as const)
      expect(mergeProgress(status({ phase }), { runId: s.runId!, metrics: { step: 11 } }), phase).toBeUndefined();
    expect(
      mergeProgress(status({ phase: 'Starting', progress: undefined }), { runId: s.runId!, metrics: { step: 0 } })
        ?.progress,
    ).toEqual({ step: 0 });
  });

  it('a line without a step moves when any value in it changed', () => {
    expect(progressMoved({ loss: 1 }, { loss: 1 })).toBe(false);
    expect(progressMoved({ loss: 1 }, { loss: 0.5 })).toBe(true);
    expect(progressMoved(undefined, { epoch: 1 })).toBe(true);
  });
});

describe("progress.sh's answer (records.ts)", () => {
  const dir = 'a.abcd1234.1';
  it('changed dirs with signature and sanitized line; hostile or cut-off blocks left out', () => {
    const text =
      `@@progress ${dir}\nsig=12.345.1700000000\nmetrics={"step":3,"x":{"nested":1},"loss":0.5}\n@@end\n` +
      '@@progress b.abcd1234.1\nsig=1.2.3\nmetrics={"step":\n@@end\n' +
      '@@progress ../../etc\nsig=1.2.3\nmetrics={"step":1}\n@@end\n' +
      '@@progress c.abcd1234.1\nsig=1;2\nmetrics={"step":1}\n@@end\n' +
      '@@progress d.abcd1234.1\nsig=1.2.3\nmetrics={"step":1}\n' +
      '@@progress-read\nasked=5\n@@end\n';
    expect(progressAnswerOf(text)).toEqual([
      { dir, sig: '12.345.1700000000', metrics: { step: 3, loss: 0.5 } },
      { dir: 'b.abcd1234.1', sig: '1.2.3' },
    ]);
  });

  it('an answer without its closing @@progress-read, or an @@error, is an error', () => {
    expect(progressAnswerOf(`@@progress ${dir}\nsig=1.2.3\nmetrics={}\n@@end\n`)).toEqual({
      error: expect.stringMatching(/cut short/),
    });
    expect(progressAnswerOf('@@error\nwhy=DIR must be a run dir name\n@@end\n')).toEqual({
      error: 'DIR must be a run dir name',
    });
  });
});

describe('job lanes', () => {
  const gate = () => {
    let open!: () => void;
    const p = new Promise<void>((r) => {
      open = r;
    });
    return { p, open };
  };

  it("what is put in a job's lane runs after what came before, other jobs' lanes do not wait", async () => {
    const lanes = new JobLanes();
    const order: string[] = [];
    const g = gate();
    const first = lanes.run('a', async () => {
      await g.p;
      order.push('a1');
    });
    const second = lanes.run('a', async () => {
      order.push('a2');
    });
    await lanes.run('b', async () => {
      order.push('b1');
    });
    expect(order).toEqual(['b1']);
    g.open();
    await Promise.all([first, second]);
    expect(order).toEqual(['b1', 'a1', 'a2']);
  });

  it('a failure in the lane does not block what comes after it', async () => {
    const lanes = new JobLanes();
    await expect(lanes.run('a', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await lanes.run('a', async () => 7)).toBe(7);
  });

  it('latest: offers made while one waits become one call with the newest; idle waits for all', async () => {
    const lanes = new JobLanes();
    const g = gate();
    const got: number[] = [];
    void lanes.run('a', () => g.p);
    for (const v of [1, 2, 3]) lanes.latest('a', v, async (x) => void got.push(x));
    let idle = false;
    const waiting = lanes.idle().then(() => {
      idle = true;
    });
    await Promise.resolve();
    expect(idle).toBe(false);
    g.open();
    await waiting;
    expect(got).toEqual([3]);
    lanes.latest('a', 4, async (x) => void got.push(x));
    await lanes.idle();
    expect(got).toEqual([3, 4]);
  });
});
