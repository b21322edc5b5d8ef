/**
 * Batches balanced by measured speed (issue 19), the pure parts: the split by speed within each
 * GPU's memory (core/batch.ts), a metrics line's per-rank timing read and judged (core/balance.ts:
 * the gain of a re-split, a straggler), and the reconcile around it (core/steps/at-checkpoint.ts):
 * a first run split by memory, a re-split planned from its measurement, made at the next
 * checkpoint (stop reason `rebalanced`, never a failure), the next attempt split by speed, the
 * speeds kept in the status (a restart starts balanced), a plan dropped when the next measurement
 * no longer agrees.
 */
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { CheckpointInfo, Metrics } from '../../controller/api/run.ts';
import { type JobStatus, parseJobStatus } from '../../controller/api/status.ts';
import { describeJob } from '../../controller/cli/render/describe.ts';
import {
  assess,
  balanceWake,
  MIN_GAIN,
  parseTimings,
  predictedMs,
  requiredGain,
  worthRebalancing,
} from '../../controller/core/balance.ts';
import { batchSplit, DEFAULT_BALANCE, splitBatch } from '../../controller/core/batch.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import type { LaunchAction, LaunchPart, ReconcileInput, ReconcileResult } from '../../controller/core/types.ts';
import { job, rank, run, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const THREE = ['gpu-master', 'gpu1', 'gpu2'];
const MEM = [12227, 8152, 8152]; // RTX 5070 Ti 12 GB, RTX 4070 8 GB, RTX 3070 Ti 8 GB (stand-ins' figures)
/** The seed's three cards' relative speeds, as samples/s of one rank's own work. */
const SPEED = [1000, 700, 600];

const parts3 = (): LaunchPart[] =>
  THREE.map((host, i) => ({ host, nodeRank: i, nproc: 1, gpus: [{ index: 0, name: 'x', memoryMiB: MEM[i] }] }));
const sharesOf = (ps: LaunchPart[]) => ps.map((p) => p.batches![0].batch);

/** A metrics line as train.py writes it: each rank's share and busy ms at these speeds (samples/s). */
function line(step: number, shares: number[], speeds: number[] = SPEED): Metrics {
  const ms = shares.map((b, i) => ((b * 1000) / speeds[i]).toFixed(1));
  return { step, total_steps: 100, loss: 1, rank_ms: ms.join(','), rank_n: shares.join(','), step_ms: 50 };
}

describe('the split: memory, even, speed within each GPU memory', () => {
  it('memory is the default; 12/8/8 GB give 41/28/27 of 96, even 32/32/32', () => {
    expect(DEFAULT_BALANCE).toBe('memory');
    const mem = batchSplit(job('t', { script: 't.py', nodes: 3, batch: { global: 96 } }), parts3());
    expect([sharesOf(mem.parts), mem.basis]).toEqual([[41, 28, 27], 'memory']);
    const even = batchSplit(job('t', { script: 't.py', nodes: 3, batch: { global: 96, balance: 'even' } }), parts3());
    expect([sharesOf(even.parts), even.basis]).toEqual([[32, 32, 32], 'even']);
    // Even gives the 8 GB cards more than their memory share: micro batches of at most 28 and 27.
    expect(even.parts.map((p) => [p.batches![0].micro, p.batches![0].accum])).toEqual([
      [32, 1],
      [16, 2],
      [16, 2],
    ]);
  });

  it('speed without a measurement for every rank is split by memory (the first run measures)', () => {
    const j = job('t', { script: 't.py', nodes: 3, batch: { global: 96, balance: 'speed' } });
    const some = [{ host: 'gpu-master', localRank: 0, gpu: 0, samplesPerS: 1000, attempt: 1 }];
    const r = batchSplit(j, parts3(), [], some);
    expect([sharesOf(r.parts), r.basis]).toEqual([[41, 28, 27], 'memory']);
  });

  it('speed 1.0/0.7/0.6: 42/29/25, and no micro batch above the memory share (42 on 12 GB: 21 x 2)', () => {
    const j = job('t', { script: 't.py', nodes: 3, batch: { global: 96, balance: 'speed' } });
    const speeds = THREE.map((host, i) => ({ host, localRank: 0, gpu: 0, samplesPerS: SPEED[i], attempt: 1 }));
    const r = batchSplit(j, parts3(), [], speeds);
    expect(r.basis).toBe('speed');
    expect(r.parts.map((p) => p.batches![0])).toEqual([
      { batch: 42, offset: 0, micro: 21, accum: 2 },
      { batch: 29, offset: 42, micro: 15, accum: 2 },
      { batch: 25, offset: 71, micro: 25, accum: 1 },
    ]);
    // Every rank's step takes nearly the same time: 42, 41.4, 41.7 ms against 45 ms for the memory split.
    expect(predictedMs([42, 29, 25], SPEED)).toBeCloseTo(42, 5);
    expect(predictedMs([41, 28, 27], SPEED)).toBeCloseTo(45, 5);
  });

  it('a speed of another GPU on the same host is not this one: the memory split', () => {
    const j = job('t', { script: 't.py', nodes: 3, batch: { global: 96, balance: 'speed' } });
    const speeds = THREE.map((host, i) => ({ host, localRank: 0, gpu: 1, samplesPerS: SPEED[i], attempt: 1 }));
    expect(batchSplit(j, parts3(), [], speeds).basis).toBe('memory');
  });

  it('an out-of-memory cap still applies under a speed split (the share stays)', () => {
    const j = job('t', { script: 't.py', nodes: 3, batch: { global: 96, balance: 'speed' } });
    const speeds = THREE.map((host, i) => ({ host, localRank: 0, gpu: 0, samplesPerS: SPEED[i], attempt: 1 }));
    const r = batchSplit(j, parts3(), [{ host: 'gpu2', localRank: 0, maxMicro: 13, attempt: 1 }], speeds);
    expect(r.parts[2].batches![0]).toEqual({ batch: 25, offset: 71, micro: 13, accum: 2 });
  });
});

describe('measuring: a metrics line read, a re-split judged, a straggler named', () => {
  it('parses rank_ms / rank_n / step_ms; refuses mismatched, truncated or non-numeric ones', () => {
    expect(parseTimings({ rank_ms: '41.0,40.0,45.0', rank_n: '41,28,27', step_ms: 50, step: 10 })).toEqual({
      ranks: [
        { rank: 0, batch: 41, busyMs: 41 },
        { rank: 1, batch: 28, busyMs: 40 },
        { rank: 2, batch: 27, busyMs: 45 },
      ],
      stepMs: 50,
      step: 10,
    });
    expect(parseTimings({ rank_ms: '41.0,40.0', rank_n: '41,28,27' })).toBeUndefined();
    expect(parseTimings({ rank_ms: '41.0,4', rank_n: '41,28,27' })).toBeUndefined();
    expect(parseTimings({ rank_ms: '41,x,3', rank_n: '41,28,27' })).toBeUndefined();
    expect(parseTimings({ rank_ms: '41,0,3', rank_n: '41,28,27' })).toBeUndefined(); // no time for a share
    expect(parseTimings({ rank_ms: '-1,2,3', rank_n: '41,28,27' })).toBeUndefined();
    expect(parseTimings({ step: 3 })).toBeUndefined();
    expect(parseTimings(undefined)).toBeUndefined();
  });

  it('the memory split at 1.0/0.7/0.6: a re-split saves 7% of a step (over MIN_GAIN), no straggler', () => {
    const a = assess(parseTimings(line(10, [41, 28, 27]))!)!;
    expect(a.shares).toEqual([42, 29, 25]);
    expect(a.currentMs).toBeCloseTo(45, 5);
    expect(a.nextMs).toBeCloseTo(42, 5);
    expect(a.gain).toBeGreaterThan(MIN_GAIN);
    expect(a.straggler).toBeUndefined(); // 45 ms against a median of 40.5: within 15%
    expect(worthRebalancing(a)).toBe(true);
  });

  it('the speed split measured: nothing to gain (no restart); gpu1 throttled to half: a straggler', () => {
    expect(worthRebalancing(assess(parseTimings(line(10, [42, 29, 25]))!))).toBe(false);
    const slow = assess(parseTimings(line(10, [42, 29, 25], [1000, 350, 600]))!)!;
    expect(slow.straggler).toMatchObject({ rank: 1 });
    expect(slow.straggler!.busyMs).toBeCloseTo(82.9, 1);
    expect(slow.shares[1]).toBeLessThan(29);
    expect(slow.gain).toBeGreaterThan(0.3);
  });

  it('balanceWake: only a speed job with no plan whose newest line says a re-split is worth it', () => {
    const b = { mode: 'speed' as const, basis: 'memory' as const, ranks: [] };
    expect(balanceWake({ balance: b, progress: line(10, [41, 28, 27]) }, 0)).toBe(true);
    expect(balanceWake({ balance: b, progress: line(10, [42, 29, 25]) }, 0)).toBe(false);
    expect(balanceWake({ balance: { ...b, mode: 'memory' }, progress: line(10, [41, 28, 27]) }, 0)).toBe(false);
    const planned = { since: iso(0), step: 10, why: 'x' };
    expect(balanceWake({ balance: { ...b, planned }, progress: line(20, [41, 28, 27]) }, 0)).toBe(false);
    expect(balanceWake({ progress: line(10, [41, 28, 27]) }, 0)).toBe(false);
  });
});

describe('reconcile: measure, plan, re-split at the next checkpoint, start balanced', () => {
  const SPEC = {
    script: 'train.py',
    nodes: 3,
    hosts: THREE,
    batch: { global: 96, balance: 'speed' },
    restartPolicy: { maxRestarts: 0 },
  };
  const spec = validSpec('bal', SPEC);
  const cluster = view({
    gpus: new Map(THREE.map((h, i) => [h, [{ index: 0, name: 'x', memoryTotalMiB: MEM[i] }]])),
  });
  const rec = (over: Partial<ReconcileInput>): ReconcileResult =>
    reconcile({ name: 'bal', spec, now: at(0), parts: [], unreachable: new Map(), cluster, ...over });
  const launches = (r: ReconcileResult) => r.actions.filter((a): a is LaunchAction => a.type === 'launch');
  const ckpt = (step: number, s: number): CheckpointInfo => ({
    host: 'gpu-master',
    name: `step-${step}`,
    step,
    sizeBytes: 100,
    mtimeMs: T0 + s * 1000,
  });
  const events = (r: ReconcileResult) => r.events.map((e) => `${e.reason}: ${e.message}`);

  /** Attempt `a`, running on the three hosts since `created` s, rank 0's newest metrics line `m`. */
  function running(a: number, m: Metrics | undefined, created = 0, o: { cancelled?: string } = {}) {
    const R = run('bal', spec.hash, a, THREE, { createdAt: iso(created) });
    return THREE.map((h, i) =>
      R.part(h, {
        ...(o.cancelled ? { exit: 143, cancelled: o.cancelled, alive: false } : {}),
        ranks: [rank(i, 0)],
        launchedAtMs: T0 + created * 1000,
        ...(i === 0 && m ? { metrics: m } : {}),
      }),
    ).map((p, i) => ({ ...p, meta: { ...p.meta, gpus: [{ index: 0, name: 'x', memoryMiB: MEM[i] }] } }));
  }

  let s0: JobStatus;
  let planned: ReconcileResult;

  it('attempt 1 starts with the memory split (no speeds yet): status.balance says so', () => {
    const r = rec({});
    const [l] = launches(r);
    expect(sharesOf(l.parts)).toEqual([41, 28, 27]);
    expect(r.status!.balance).toMatchObject({ mode: 'speed', basis: 'memory' });
    expect(r.status!.balance!.ranks.map((x) => [x.host, x.batch])).toEqual([
      ['gpu-master', 41],
      ['gpu1', 28],
      ['gpu2', 27],
    ]);
    s0 = { ...r.status!, phase: 'Running', reason: 'Running' };
  });

  it('its first measurement: step and idle times in the status, speeds kept, a re-split planned', () => {
    planned = rec({ status: s0, now: at(20), parts: running(1, line(10, [41, 28, 27])), checkpoints: [ckpt(5, 10)] });
    const b = planned.status!.balance!;
    expect(b.ranks.map((x) => [x.host, x.rank, x.stepMs, x.idleMs])).toEqual([
      ['gpu-master', 0, 41, 4],
      ['gpu1', 1, 40, 5],
      ['gpu2', 2, 45, 0],
    ]);
    expect(b.speeds!.map((x) => [x.host, Math.round(x.samplesPerS)])).toEqual([
      ['gpu-master', 1000],
      ['gpu1', 700],
      ['gpu2', 600],
    ]);
    expect(b.planned).toMatchObject({ step: 10, after: 'step-5' });
    expect(events(planned)).toContainEqual(
      'RebalancePlanned: by measured speed the split would be gpu-master 42, gpu1 29, gpu2 25 (was gpu-master 41, ' +
        'gpu1 28, gpu2 27; 45 -> 42 ms a step predicted): re-splitting at the next checkpoint',
    );
    expect(planned.actions.filter((a) => a.type === 'stop')).toEqual([]);
    expect(planned.requeueAfterMs).toBeLessThanOrEqual(5000);
  });

  it('no newer checkpoint yet: waits, the plan kept', () => {
    const r = rec({
      status: planned.status!,
      now: at(25),
      parts: running(1, line(20, [41, 28, 27])),
      checkpoints: [ckpt(5, 10)],
    });
    expect(r.actions).toEqual([]);
    expect(r.status!.balance!.planned).toEqual(planned.status!.balance!.planned);
  });

  it('the next checkpoint with a newer measurement that agrees: stopped on purpose (rebalanced)', () => {
    const r = rec({
      status: planned.status!,
      now: at(30),
      parts: running(1, line(20, [41, 28, 27])),
      checkpoints: [ckpt(5, 10), ckpt(20, 29)],
    });
    expect(r.actions).toEqual([expect.objectContaining({ type: 'stop', reason: 'rebalanced' })]);
    expect(events(r)).toContainEqual(
      expect.stringMatching(
        /^Rebalancing: checkpoint step-20 written: restarting attempt 1 split gpu-master 42, gpu1 29, gpu2 25 /,
      ),
    );
    expect(r.status!.phase).toBe('Running');

    // Stopped: attempt 2 resumes from step-20 split by the measured speeds; not a failure.
    const next = rec({
      status: r.status!,
      now: at(35),
      parts: running(1, line(20, [41, 28, 27]), 0, { cancelled: 'rebalanced' }),
      checkpoints: [ckpt(5, 10), ckpt(20, 29)],
    });
    const [l] = launches(next);
    expect(l).toMatchObject({ attempt: 2, resumeFrom: 'step-20' });
    expect(l.parts.map((p) => p.batches![0])).toEqual([
      { batch: 42, offset: 0, micro: 21, accum: 2 },
      { batch: 29, offset: 42, micro: 15, accum: 2 },
      { batch: 25, offset: 71, micro: 25, accum: 1 },
    ]);
    expect(next.status!.balance).toMatchObject({ mode: 'speed', basis: 'speed', resplits: [iso(30)] });
    expect(next.status!.balance!.planned).toBeUndefined();
    expect(next.status!.restarts ?? { training: 0, infra: 0 }).toMatchObject({ training: 0, infra: 0 });
    expect(next.status!.failures ?? []).toEqual([]);
    expect(events(next)).toContainEqual(
      expect.stringMatching(/^Resuming: attempt 1 was rebalanced; starting attempt 2/),
    );

    // The speeds are in the status file: a controller that reads it back launches the same split.
    const back = parseJobStatus(parse(stringify(next.status)))!;
    const again = rec({ status: { ...back, attempt: 2, runId: undefined }, now: at(36) });
    expect(launches(again).map((a) => sharesOf(a.parts))).toEqual([[42, 29, 25]]);
  });

  it('a plan whose next measurement no longer agrees is dropped (RebalanceDropped), nothing stopped', () => {
    const r = rec({
      status: planned.status!,
      now: at(30),
      parts: running(1, { ...line(20, [41, 28, 27], [1000, 700, 670]) }),
      checkpoints: [ckpt(5, 10), ckpt(20, 29)],
    });
    expect(r.actions).toEqual([]);
    expect(r.status!.balance!.planned).toBeUndefined();
    expect(events(r)).toContainEqual(
      expect.stringMatching(/^RebalanceDropped: measured again at step 20: a re-split would gain [0-4]%/),
    );
  });

  // bench:balance: a job re-split five times in three minutes on predicted gains of 5-10% each.
  it('each re-split in the last hour doubles the gain the next must promise', () => {
    expect(requiredGain(undefined, T0)).toBe(MIN_GAIN);
    expect(requiredGain([iso(0), iso(60)], T0 + 120_000)).toBeCloseTo(MIN_GAIN * 4, 10);
    expect(requiredGain([iso(0)], T0 + 3_600_000)).toBe(MIN_GAIN); // an hour on: forgotten
    // One re-split a minute ago: 7% is not enough to plan another (10% needed) ...
    const once = { ...s0, balance: { ...s0.balance!, resplits: [iso(-40)] } };
    const r = rec({ status: once, now: at(20), parts: running(1, line(10, [41, 28, 27])), checkpoints: [ckpt(5, 10)] });
    expect(r.status!.balance!.planned).toBeUndefined();
    expect(events(r).filter((e) => e.startsWith('Rebalance'))).toEqual([]);
    expect(balanceWake({ balance: once.balance, progress: line(10, [41, 28, 27]) }, T0 + 20_000)).toBe(false);
    // ... a rank slowed to half is (a gain of over 30%).
    const slow = rec({
      status: once,
      now: at(20),
      parts: running(1, line(10, [42, 29, 25], [1000, 350, 600])),
      checkpoints: [ckpt(5, 10)],
    });
    expect(slow.status!.balance!.planned).toBeDefined();
    // A plan made before the bar rose is dropped at the checkpoint, saying what is needed.
    const late = { ...planned.status!, balance: { ...planned.status!.balance!, resplits: [iso(-40)] } };
    const d = rec({
      status: late,
      now: at(30),
      parts: running(1, line(20, [41, 28, 27])),
      checkpoints: [ckpt(5, 10), ckpt(20, 29)],
    });
    expect(d.actions).toEqual([]);
    expect(events(d)).toContainEqual(expect.stringMatching(/would gain 7% \(10% needed after recent re-splits\)/));
  });

  it('a checkpoint but no newer measurement: the plan waits for the checkpoint after it', () => {
    const r = rec({
      status: planned.status!,
      now: at(30),
      parts: running(1, line(10, [41, 28, 27])),
      checkpoints: [ckpt(5, 10), ckpt(8, 29)],
    });
    expect(r.actions).toEqual([]);
    expect(r.status!.balance!.planned).toMatchObject({ step: 10, after: 'step-8' });
  });

  it('a straggler mid-run (gpu1 at half speed on the speed split) is named in the plan', () => {
    const r = rec({
      status: {
        ...s0,
        balance: {
          ...s0.balance!,
          basis: 'speed',
          ranks: s0.balance!.ranks.map((x, i) => ({ ...x, batch: [42, 29, 25][i] })),
        },
      },
      now: at(20),
      parts: running(1, line(10, [42, 29, 25], [1000, 350, 600])),
      checkpoints: [ckpt(5, 10)],
    });
    expect(events(r)).toContainEqual(
      expect.stringMatching(
        new RegExp(
          "^RebalancePlanned: rank 1 on gpu1 is a straggler \\(83 ms of work a step, the others' median 42 ms\\); " +
            'by measured speed the split would be gpu-master \\d+, gpu1 (1\\d|20), gpu2 \\d+ ',
        ),
      ),
    );
  });

  it('balance memory: measured and shown, never re-split', () => {
    const m = validSpec('bal', { ...SPEC, batch: { global: 96, balance: 'memory' } });
    const first = reconcile({ name: 'bal', spec: m, now: at(0), parts: [], unreachable: new Map(), cluster });
    const R = run('bal', m.hash, 1, THREE, { createdAt: iso(0) });
    const parts = THREE.map((h, i) => ({
      ...R.part(h, { ranks: [rank(i, 0)], launchedAtMs: T0, ...(i === 0 ? { metrics: line(10, [41, 28, 27]) } : {}) }),
    }));
    const r = reconcile({
      name: 'bal',
      spec: m,
      status: { ...first.status!, phase: 'Running' },
      now: at(20),
      parts,
      unreachable: new Map(),
      cluster,
      checkpoints: [ckpt(5, 10), ckpt(10, 19)],
    });
    expect(r.actions).toEqual([]);
    expect(r.status!.balance!.ranks.map((x) => x.idleMs)).toEqual([4, 5, 0]);
    expect(r.status!.balance!.planned).toBeUndefined();
  });
});

it('splitBatch by speed keeps the shares whole, >= 1 and summing to the global batch', () => {
  for (let g = 3; g < 200; g += 7) {
    const s = splitBatch(g, [1000, 700, 600]);
    expect(s.reduce((a, b) => a + b.batch, 0)).toBe(g);
    expect(s.every((b) => b.batch >= 1)).toBe(true);
  }
});

it('ugro describe job shows the split, each rank step and idle ms, and a planned re-split', () => {
  const st = {
    phase: 'Running',
    observedGeneration: 1,
    attempt: 1,
    nodes: [],
    createdAt: iso(0),
    conditions: [],
    balance: {
      mode: 'speed',
      basis: 'memory',
      step: 40,
      stepMs: 52.5,
      ranks: [
        { host: 'gpu-master', localRank: 0, rank: 0, batch: 41, micro: 41, accum: 1, stepMs: 41, idleMs: 4 },
        { host: 'gpu1', localRank: 0, rank: 1, batch: 28, micro: 28, accum: 1, stepMs: 40, idleMs: 5 },
        { host: 'gpu2', localRank: 0, rank: 2, batch: 27, micro: 27, accum: 1, stepMs: 45, idleMs: 0 },
      ],
      planned: { since: iso(0), step: 40, why: 'by measured speed the split would be gpu-master 42' },
    },
  } as JobStatus;
  const out = describeJob({ name: 'bal', spec: validSpec('bal'), status: st, events: [] });
  expect(out).toContain('Batch split:  speed (split by memory until measured), measured at step 40: 52.5 ms a step');
  expect(out).toMatch(/^ {2}gpu2 +0 +2 +27 +27 x 1 +45\.0 +0\.0$/m);
  expect(out).toMatch(/^ {2}gpu1 +0 +1 +28 +28 x 1 +40\.0 +5\.0$/m);
  expect(out).toContain('Re-split:     planned: by measured speed the split would be gpu-master 42');
  expect(out).not.toContain('OOM caps');
  // After an out-of-memory restart, the micro batch cap it keeps.
  const capped = { ...st, batchOverrides: [{ host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 2 }] } as JobStatus;
  expect(describeJob({ name: 'bal', spec: validSpec('bal'), status: capped, events: [] })).toContain(
    'OOM caps:     gpu2 local rank 0: micro batch <= 14 (since attempt 2)',
  );
});
