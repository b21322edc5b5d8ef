/**
 * Out of memory, the pure parts (issue 19): a rank that ran out of memory (rank.sh's evidence, as
 * observe reports it) is its own failure class with its own budget; the gang restarts with that
 * rank's micro batch halved and its accumulation raised (the share, the global batch and so the
 * gradient unchanged), the event says so, and every later attempt keeps it, across a controller
 * restart (status.batchOverrides), until the spec changes. A micro batch of 1 that still runs out of
 * memory, or a job without spec.batch, is a plain training failure that says why.
 */
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { RankOom } from '../../controller/api/run.ts';
import { type BatchOverride, parseJobStatus, salvageJobStatus } from '../../controller/api/status.ts';
import { capMicro, halvedMicro, oomOverride, splitBatch, withBatches } from '../../controller/core/batch.ts';
import { budgetOf, classifyRun, DEFAULT_MAX_OOM_RESTARTS } from '../../controller/core/failures.ts';
import { notificationOf } from '../../controller/core/notifications.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import { groupRuns } from '../../controller/core/run-view.ts';
import type { LaunchAction, LaunchPart, ReconcileInput, ReconcileResult } from '../../controller/core/types.ts';
import { job, rank, run, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();
const ms = (s: number) => T0 + s * 1000;
const TWO = ['gpu1', 'gpu2'];

function rec(over: Partial<ReconcileInput> & Pick<ReconcileInput, 'spec'>): ReconcileResult {
  return reconcile({ name: 'train', now: at(0), parts: [], unreachable: new Map(), cluster: view(), ...over });
}
const launches = (r: ReconcileResult) => r.actions.filter((a): a is LaunchAction => a.type === 'launch');
const batchesOf = (parts: LaunchPart[]) => Object.fromEntries(parts.map((p) => [p.host, p.batches]));
const KERNEL = "the kernel's OOM killer: SIGKILL while oom_kill went 0 -> 1 in /sys/fs/cgroup/memory/ugro-lab/gpu2";
const kernel = (batch: number, micro: number, accum: number): RankOom => ({
  kind: 'kernel',
  evidence: KERNEL,
  batch,
  micro,
  accum,
});

/** Attempt `a` of S on gpu1 + gpu2: gpu2's rank 1 ran out of memory at 50 s, gpu1's rank 0 failed after it. */
function oomRun(hash: string, a: number, oom: RankOom | undefined, createdAt = iso(a * 100 - 100)) {
  const R = run('train', hash, a, TWO, { createdAt });
  const t = a * 100 - 50;
  return [
    R.part('gpu1', {
      exit: 1,
      finishedAtMs: ms(t + 1),
      ranks: [rank(0, 0, { exitCode: 1, exitedAt: ms(t + 0.3), logTail: ['RuntimeError: Connection closed by peer'] })],
    }),
    R.part('gpu2', {
      exit: 1,
      finishedAtMs: ms(t + 1),
      ranks: [rank(1, 0, { exitCode: 137, exitedAt: ms(t), ...(oom ? { oom } : {}) })],
    }),
  ];
}

describe('classifyRun: out-of-memory evidence', () => {
  const opts = { missing: [], gaveUp: false, rdzvTimeoutSeconds: 300, batch: true };
  const classify = (oom: RankOom | undefined, o: Partial<typeof opts> = {}) =>
    classifyRun(groupRuns(oomRun('abcd1234', 1, oom))[0], { ...opts, ...o });

  it("the kernel's OOM killer: class oom, reason OutOfMemory, the rank, its host and the batch it ran", () => {
    const r = classify(kernel(28, 28, 1));
    expect(r).toEqual({
      kind: 'failed',
      failure: {
        class: 'oom',
        reason: 'OutOfMemory',
        message: `rank 1 on gpu2 ran out of memory (killed by ${KERNEL}) with micro batch 28`,
        host: 'gpu2',
        rank: 1,
        exitCode: 137,
        oom: { host: 'gpu2', localRank: 0, batch: 28, micro: 28, accum: 1 },
      },
    });
  });

  it("CUDA's error: the same class, the log line named; the out-of-memory rank wins over an earlier exit", () => {
    const cuda: RankOom = { kind: 'cuda', evidence: 'torch.cuda.OutOfMemoryError: CUDA out of memory.', ...size(14) };
    const parts = oomRun('abcd1234', 1, cuda);
    // gpu1's rank exited first (by its clock); gpu2's evidence still names the cause.
    parts[0].ranks[0].exitedAt = ms(10);
    const r = classifyRun(groupRuns(parts)[0], opts);
    expect(r).toMatchObject({
      kind: 'failed',
      failure: {
        class: 'oom',
        host: 'gpu2',
        rank: 1,
        message:
          'rank 1 on gpu2 ran out of memory (CUDA: torch.cuda.OutOfMemoryError: CUDA out of memory.) ' +
          'with micro batch 14',
      },
    });
  });

  it('a SIGKILL without evidence is a plain training failure (RankFailed), as before', () => {
    expect(classify(undefined)).toMatchObject({
      kind: 'failed',
      failure: { class: 'training', reason: 'RankFailed', host: 'gpu2', exitCode: 137 },
    });
  });

  it('a micro batch of 1, a job without spec.batch, a record without sizes: plain training failures saying why', () => {
    expect(classify(kernel(28, 1, 28))).toMatchObject({
      failure: {
        class: 'training',
        reason: 'OutOfMemory',
        message: expect.stringMatching(/micro batch of 1, nothing left to halve: a plain failure$/),
      },
    });
    expect(classify(kernel(28, 28, 1), { batch: false })).toMatchObject({
      failure: {
        class: 'training',
        reason: 'OutOfMemory',
        message: expect.stringMatching(/without spec\.batch UGRO cannot shrink its micro batch/),
      },
    });
    expect(classify({ kind: 'kernel', evidence: KERNEL })).toMatchObject({
      failure: { class: 'training', reason: 'OutOfMemory', message: expect.stringMatching(/micro batch is unknown/) },
    });
  });

  it('maxOomRestarts: its own budget, 3 when unset (no default in the schema: existing spec hashes stay)', () => {
    expect(budgetOf(job('t'), 'oom')).toBe(DEFAULT_MAX_OOM_RESTARTS);
    expect(DEFAULT_MAX_OOM_RESTARTS).toBe(3);
    expect(job('t').spec.restartPolicy).not.toHaveProperty('maxOomRestarts');
    const j = job('t', { script: 't.py', restartPolicy: { maxOomRestarts: 1, maxRestarts: 5 } });
    expect([budgetOf(j, 'oom'), budgetOf(j, 'training')]).toEqual([1, 5]);
  });
});

function size(micro: number, batch = 28) {
  return { batch, micro, accum: Math.ceil(batch / micro) };
}

describe('halving a micro batch keeps the share, the global batch and the offsets', () => {
  it('28 -> 14 x 2, 27 -> 14 x 2, 14 -> 7 x 4, 3 -> 2 x 2, 2 -> 1 x 2; 1: nothing to halve', () => {
    expect(halvedMicro({ batch: 28, micro: 28 })).toEqual({ micro: 14, accum: 2 });
    expect(halvedMicro({ batch: 27, micro: 27 })).toEqual({ micro: 14, accum: 2 });
    expect(halvedMicro({ batch: 28, micro: 14 })).toEqual({ micro: 7, accum: 4 });
    expect(halvedMicro({ batch: 3, micro: 3 })).toEqual({ micro: 2, accum: 2 });
    expect(halvedMicro({ batch: 2, micro: 2 })).toEqual({ micro: 1, accum: 2 });
    expect(halvedMicro({ batch: 5, micro: 1 })).toBeUndefined();
  });

  it('any share and micro batch: a smaller micro, micro x accum covers the share, no empty micro batch', () => {
    for (let batch = 1; batch <= 64; batch++) {
      for (let micro = 2; micro <= batch; micro++) {
        const h = halvedMicro({ batch, micro })!;
        expect(h.micro, `${batch}/${micro}`).toBeLessThan(micro);
        expect(h.micro * h.accum).toBeGreaterThanOrEqual(batch);
        expect((h.accum - 1) * h.micro).toBeLessThan(batch);
      }
    }
  });

  it('withBatches with an override: only that rank changes; shares, offsets and the global batch do not', () => {
    const j = job('train', { script: 't.py', nodes: 3, batch: { global: 96 } });
    const parts = ['gpu-master', 'gpu1', 'gpu2'].map((host, i) => ({
      host,
      nodeRank: i,
      nproc: 1,
      gpus: [{ index: 0, name: 'x', memoryMiB: [12227, 8152, 8152][i] }],
    }));
    const plain = withBatches(j, parts);
    const o: BatchOverride[] = [{ host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 1 }];
    const over = withBatches(j, parts, o);
    expect(plain.map((p) => p.batches![0])).toEqual([
      { batch: 41, offset: 0, micro: 41, accum: 1 },
      { batch: 28, offset: 41, micro: 28, accum: 1 },
      { batch: 27, offset: 69, micro: 27, accum: 1 },
    ]);
    expect(over.map((p) => p.batches![0])).toEqual([
      plain[0].batches![0],
      plain[1].batches![0],
      { batch: 27, offset: 69, micro: 14, accum: 2 },
    ]);
    expect(over.flatMap((p) => p.batches!).reduce((n, b) => n + b.batch, 0)).toBe(96);
    // A cap at or above the micro batch changes nothing; the cap applies under maxMicroBatch too.
    expect(capMicro({ batch: 8, offset: 0, micro: 8, accum: 1 }, 8)).toEqual({
      batch: 8,
      offset: 0,
      micro: 8,
      accum: 1,
    });
    expect(splitBatch(56, [1, 1], 20).map((b) => capMicro(b, 7))).toEqual([
      { batch: 28, offset: 0, micro: 7, accum: 4 },
      { batch: 28, offset: 28, micro: 7, accum: 4 },
    ]);
  });

  it('oomOverride: the event text, one override per rank (replaced), once per attempt', () => {
    const r = { host: 'gpu2', localRank: 0, batch: 28, micro: 28, accum: 1 };
    const first = oomOverride(undefined, r, 1)!;
    expect(first.message).toBe('gpu2 out of memory: micro batch 28 -> 14, accumulation 1 -> 2');
    expect(first.overrides).toEqual([{ host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 1 }]);
    expect(oomOverride(first.overrides, r, 1)).toBeUndefined(); // the same failure seen again
    const second = oomOverride(first.overrides, { ...r, micro: 14, accum: 2 }, 2)!;
    expect(second.message).toBe('gpu2 out of memory: micro batch 14 -> 7, accumulation 2 -> 4');
    expect(second.overrides).toEqual([{ host: 'gpu2', localRank: 0, maxMicro: 7, attempt: 2 }]);
    expect(oomOverride(undefined, { ...r, localRank: 1 }, 1, 2)!.message).toMatch(/^gpu2 \(local rank 1\) out of/);
    expect(oomOverride(undefined, { ...r, micro: 1 }, 1)).toBeUndefined();
  });
});

describe('the restart after out of memory (reconcile)', () => {
  const spec = {
    script: 't.py',
    hosts: TWO,
    nodes: 2,
    batch: { global: 56 },
    restartPolicy: { maxOomRestarts: 1 },
  };
  const S = validSpec('train', spec);
  const launched = rec({ spec: S }).status!;

  it('attempt 1: gpu1 and gpu2 each run 28 samples in one micro batch', () => {
    expect(batchesOf(launches(rec({ spec: S }))[0].allParts)).toEqual({
      gpu1: [{ batch: 28, offset: 0, micro: 28, accum: 1 }],
      gpu2: [{ batch: 28, offset: 28, micro: 28, accum: 1 }],
    });
  });

  const a1 = oomRun(S.hash, 1, kernel(28, 28, 1));
  const failed = rec({ spec: S, status: launched, now: at(51), parts: a1 });

  it('gpu2 killed by the OOM killer: OutOfMemory event, override recorded, counted as oom, 1 s backoff', () => {
    expect(failed.events).toContainEqual({
      reason: 'OutOfMemory',
      message: 'gpu2 out of memory: micro batch 28 -> 14, accumulation 1 -> 2',
      type: 'Warning',
    });
    expect(failed.status).toMatchObject({
      phase: 'Queued',
      reason: 'BackoffRestart',
      restarts: { infra: 0, training: 0, oom: 1 },
      failedHost: 'gpu2',
      failedRank: 1,
      exitCode: 137,
      batchOverrides: [{ host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 1 }],
      nextRetryAt: iso(52),
    });
    expect(failed.status!.failures).toEqual([
      expect.objectContaining({ attempt: 1, class: 'oom', reason: 'OutOfMemory', host: 'gpu2', rank: 1 }),
    ]);
    expect(failed.status!.message).toMatch(/^attempt 1 failed: rank 1 on gpu2 ran out of memory .*restart 1 of 1/);
    // Seen again during the backoff: no second event, the same override.
    const again = rec({ spec: S, status: failed.status!, now: at(51.5), parts: a1 });
    expect(again.events.filter((e) => e.reason === 'OutOfMemory')).toEqual([]);
    expect(again.status!.batchOverrides).toEqual(failed.status!.batchOverrides);
  });

  const restarted = rec({ spec: S, status: failed.status!, now: at(52.5), parts: a1 });

  it('attempt 2: gpu2 runs 14 x 2, gpu1 is unchanged; the global batch is still 56', () => {
    const [l] = launches(restarted);
    expect(l.attempt).toBe(2);
    expect(batchesOf(l.allParts)).toEqual({
      gpu1: [{ batch: 28, offset: 0, micro: 28, accum: 1 }],
      gpu2: [{ batch: 28, offset: 28, micro: 14, accum: 2 }],
    });
    expect(restarted.events.find((e) => e.reason === 'Restarting')?.message).toMatch(
      /^attempt 2, from the start, on gpu1,gpu2 \(attempt 1 failed: rank 1 on gpu2 ran out of memory/,
    );
  });

  it('the override survives a controller restart: the status file (YAML, schema) launches the same split', () => {
    const reread = parseJobStatus(parse(stringify(failed.status)))!;
    expect(reread.batchOverrides).toEqual([{ host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 1 }]);
    const r = rec({ spec: S, status: reread, now: at(52.5), parts: a1 });
    expect(batchesOf(launches(r)[0].allParts)).toEqual(batchesOf(launches(restarted)[0].allParts));
    // The attempt it launched, running, read back after a restart too: still there.
    const R2 = run('train', S.hash, 2, TWO, { createdAt: iso(52.5) });
    const live = TWO.map((h, i) => R2.part(h, { ranks: [rank(i)], launchedAtMs: ms(53) }));
    const status = parseJobStatus(parse(stringify(restarted.status)))!;
    const running = rec({ spec: S, status, now: at(60), parts: [...a1, ...live] });
    expect(running.status).toMatchObject({ phase: 'Running', batchOverrides: reread.batchOverrides });
  });

  it('a notification counts the out-of-memory restart among the restarts', () => {
    const n = notificationOf('train', launched, failed.status, iso(51));
    expect(n).toMatchObject({ kind: 'Restarting', restarts: 1 });
  });

  it('a status with a bad override keeps the good ones (salvaged item by item)', () => {
    const raw = {
      ...failed.status,
      batchOverrides: [
        { host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 1 },
        { host: 'gpu1', localRank: -3, maxMicro: 0, attempt: 1 },
      ],
    };
    expect(parseJobStatus(raw)).toBeUndefined();
    expect(salvageJobStatus(raw, iso(60))!.batchOverrides).toEqual([
      { host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 1 },
    ]);
  });

  it('out of memory again at 14: halved again, but maxOomRestarts 1 is spent: Failed, saying how to go on', () => {
    const a2 = oomRun(S.hash, 2, kernel(28, 14, 2), iso(52.5));
    const r = rec({ spec: S, status: restarted.status!, now: at(151), parts: [...a1, ...a2] });
    expect(r.status).toMatchObject({ phase: 'Failed', reason: 'OutOfMemory', restarts: { oom: 2 } });
    expect(r.status!.message).toBe(
      `rank 1 on gpu2 ran out of memory (killed by ${KERNEL}) with micro batch 14 ` +
        '(after 1 out-of-memory restart): raise spec.restartPolicy.maxOomRestarts, or set spec.batch.maxMicroBatch',
    );
    expect(launches(r)).toEqual([]);
    // With budget left, the second halving: 14 -> 7 x 4.
    const S2 = validSpec('train', { ...spec, restartPolicy: { maxOomRestarts: 2 } });
    const b1 = oomRun(S2.hash, 1, kernel(28, 28, 1));
    const st1 = rec({ spec: S2, status: rec({ spec: S2 }).status!, now: at(51), parts: b1 });
    const st2 = rec({ spec: S2, status: st1.status!, now: at(52.5), parts: b1 });
    const b2 = oomRun(S2.hash, 2, kernel(28, 14, 2), iso(52.5));
    const st3 = rec({ spec: S2, status: st2.status!, now: at(151), parts: [...b1, ...b2] });
    expect(st3.events).toContainEqual({
      reason: 'OutOfMemory',
      message: 'gpu2 out of memory: micro batch 14 -> 7, accumulation 2 -> 4',
      type: 'Warning',
    });
    const st4 = rec({ spec: S2, status: st3.status!, now: at(160), parts: [...b1, ...b2] });
    expect(batchesOf(launches(st4)[0].allParts).gpu2).toEqual([{ batch: 28, offset: 28, micro: 7, accum: 4 }]);
  });

  it('a micro batch of 1 out of memory: a plain training failure (maxRestarts 0: Failed at once)', () => {
    const S1 = validSpec('train', { ...spec, batch: { global: 56, maxMicroBatch: 1 } });
    const r = rec({
      spec: S1,
      status: rec({ spec: S1 }).status!,
      now: at(51),
      parts: oomRun(S1.hash, 1, kernel(28, 1, 28)),
    });
    expect(r.status).toMatchObject({ phase: 'Failed', reason: 'OutOfMemory', restarts: { training: 1, oom: 0 } });
    expect(r.status!.message).toMatch(/micro batch of 1, nothing left to halve: a plain failure$/);
    expect(r.events.map((e) => e.message).filter((m) => m.startsWith('gpu2 out of memory:'))).toEqual([]);
    expect(r.status!.batchOverrides).toBeUndefined();
  });

  it('a changed spec starts without the overrides (its own split)', () => {
    const S3 = validSpec('train', { ...spec, args: ['--lr', '0.001'] });
    const r = rec({ spec: S3, status: restarted.status!, now: at(60), parts: a1 });
    expect(r.status!.batchOverrides).toBeUndefined();
    expect(batchesOf(launches(r)[0].allParts).gpu2).toEqual([{ batch: 28, offset: 28, micro: 28, accum: 1 }]);
  });
});
