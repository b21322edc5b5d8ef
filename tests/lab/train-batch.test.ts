/**
 * Uneven batches, exact gradients. scripts/train.py with UGRO_GLOBAL_BATCH under a real local torchrun
 * (gloo on CPU, Debian's torch 1.13), each rank taking its UGRO_RANK_BATCH / _OFFSET / UGRO_MICRO_BATCH /
 * UGRO_GRAD_ACCUM from the real scripts/runtime/rank.sh by LOCAL_RANK, exactly as on a host. One optimizer
 * step (--max-steps 1, --dump-grads) on a split of the global batch across ranks, with or without gradient
 * accumulation, must give the gradient of ONE process on the whole global batch: the samples depend on
 * (seed, step, global index) only, and each rank's loss is weighted W/B. No lab hosts needed.
 *
 * Then the lab (it must be up): `lab gpus` gives gpu-master two stand-in GPUs
 * and `ugro health` lists both.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../controller/backends/health.ts';
import { main } from '../../controller/cli/main.ts';
import { batchSplit, capMicro, oomOverride, splitBatch } from '../../controller/core/batch.ts';
import { freePort } from '../support/net.ts';
import { job as jobOf } from '../unit/job-fixtures.ts';
import { captureIo, LAB_CLUSTER_FILE, lab, labNominal } from './helpers.ts';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const PYTHON = '/usr/bin/python3';
const TRAIN = join(ROOT, 'scripts/train.py');
const RANK_SH = join(ROOT, 'scripts/runtime/rank.sh');
const B = 28;
const TOLERANCE = 1e-5;

/** Per local rank: share, offset, micro batch, accumulation steps (what the controller puts in the env). */
interface Split {
  batch: number[];
  offset: number[];
  micro: number[];
  accum: number[];
}

/** Contiguous shares in rank order; micro batches of at most `cap` (the last one smaller), or the whole share. */
function split(shares: number[], cap?: number): Split {
  const offset = shares.map((_, i) => shares.slice(0, i).reduce((a, b) => a + b, 0));
  const micro = shares.map((b) => (cap ? Math.min(cap, b) : b));
  return { batch: shares, offset, micro, accum: shares.map((b, i) => Math.ceil(b / micro[i])) };
}

interface Dump {
  step: number;
  world: number;
  global_batch: number;
  grads: Record<string, number[]>;
}

interface Result {
  code: number | null;
  out: string;
  ms: number;
  runDir: string;
  dump?: Dump;
  metrics: { step: number; total_steps: number; loss: number; world: number }[];
}

let tmp = '';
let seq = 0;

/**
 * One step of train.py under torchrun with one local rank per entry of the split, through rank.sh
 * (--no_python), in its own process group, SIGKILLed after timeoutMs. The ranks' output is rank.sh's
 * rank-R.log files; it comes back after torchrun's own.
 */
async function trainStep(
  s: Split,
  opts: { args?: string[]; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Result> {
  const port = await freePort();
  const runDir = join(tmp, `run-${++seq}`);
  mkdirSync(runDir);
  const dumpFile = join(runDir, 'grads.json');
  const metricsFile = join(runDir, 'metrics.jsonl');
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(UGRO_|RANK$|WORLD_SIZE$|LOCAL_RANK$|MASTER_)/.test(k)),
  );
  const env = {
    ...clean,
    UGRO_RUN_DIR: runDir,
    UGRO_METRICS_FILE: metricsFile,
    UGRO_GLOBAL_BATCH: String(B),
    UGRO_RANK_BATCHES: s.batch.join(','),
    UGRO_RANK_OFFSETS: s.offset.join(','),
    UGRO_MICRO_BATCHES: s.micro.join(','),
    UGRO_GRAD_ACCUMS: s.accum.join(','),
    ...opts.env,
  };
  const argv = [
    '-m',
    'torch.distributed.run',
    '--nnodes=1',
    `--nproc_per_node=${s.batch.length}`,
    '--rdzv_backend=c10d',
    `--rdzv_endpoint=127.0.0.1:${port}`,
    `--rdzv_id=trainbatch-${process.pid}-${seq}`,
    '--max_restarts=0',
    '--monitor_interval=0.5',
    '--no_python',
    'sh',
    RANK_SH,
    PYTHON,
    TRAIN,
    ...(opts.args ?? ['--max-steps', '1', '--dump-grads', dumpFile]),
  ];
  const t0 = Date.now();
  const child = spawn(PYTHON, argv, { cwd: runDir, env, detached: true, stdio: 'pipe' });
  let log = '';
  child.stdout!.on('data', (b) => (log += b));
  child.stderr!.on('data', (b) => (log += b));
  const kill = () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(kill, opts.timeoutMs ?? 150_000);
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  clearTimeout(timer);
  kill(); // any rank left behind
  const ms = Date.now() - t0;
  for (const f of readdirSync(runDir)
    .filter((n) => /^rank-\d+\.log$/.test(n))
    .sort())
    log += `\n--- ${f}\n${readFileSync(join(runDir, f), 'utf8')}`;
  const dump = existsSync(dumpFile) ? (JSON.parse(readFileSync(dumpFile, 'utf8')) as Dump) : undefined;
  const metrics = existsSync(metricsFile)
    ? readFileSync(metricsFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
    : [];
  return { code, out: log, ms, runDir, dump, metrics };
}

/** max |a - b| over every parameter's gradient; the parameter names and sizes must match. */
function maxAbsDiff(a: Dump, b: Dump): number {
  expect(Object.keys(b.grads)).toEqual(Object.keys(a.grads));
  let max = 0;
  for (const [name, ga] of Object.entries(a.grads)) {
    const gb = b.grads[name];
    expect(gb.length, name).toBe(ga.length);
    for (let i = 0; i < ga.length; i++) max = Math.max(max, Math.abs(ga[i] - gb[i]));
  }
  return max;
}

const maxAbs = (d: Dump) => Math.max(...Object.values(d.grads).flatMap((g) => g.map(Math.abs)));

describe('uneven global batch split: one step on any split gives the single-process gradient', () => {
  let ref: Result;

  /** The same step, checked against the reference: exit 0, every rank done, gradient within 1e-5. */
  async function expectSameGradient(s: Split, label: string): Promise<number> {
    const r = await trainStep(s);
    expect(r.code, r.out).toBe(0);
    for (let rank = 0; rank < s.batch.length; rank++) {
      expect(r.out).toMatch(new RegExp(`^rank ${rank}: done$`, 'm'));
      expect(r.out).toContain(
        `rank ${rank}: batch ${s.batch[rank]} of global ${B} at offset ${s.offset[rank]}, ` +
          `${s.accum[rank]} micro batch(es) of at most ${s.micro[rank]} (UGRO_GRAD_ACCUM ${s.accum[rank]})`,
      );
    }
    expect(r.dump, r.out).toBeDefined();
    expect(r.dump).toMatchObject({ step: 1, world: s.batch.length, global_batch: B });
    const diff = maxAbsDiff(ref.dump!, r.dump!);
    console.info(`${label}: max |grad - reference grad| = ${diff.toExponential(2)} (${r.ms} ms)`);
    expect(diff).toBeLessThan(TOLERANCE);
    // The logged loss is the mean over the whole global batch, whatever the split.
    expect(r.metrics).toHaveLength(1);
    expect(r.metrics[0]).toMatchObject({ step: 1, total_steps: 1, world: s.batch.length });
    expect(r.metrics[0].loss).toBeCloseTo(ref.metrics[0].loss, 5);
    return diff;
  }

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'ugro-trainbatch-'));
    // The reference: one process on the whole global batch (W=1, b=28 at offset 0, one pass).
    ref = await trainStep(split([B]));
    expect(ref.code, ref.out).toBe(0);
    expect(ref.dump, ref.out).toMatchObject({ step: 1, world: 1, global_batch: B });
    expect(
      ref.metrics.map((m) => [m.step, m.total_steps, m.world]),
      ref.out,
    ).toEqual([[1, 1, 1]]);
    expect(maxAbs(ref.dump!)).toBeGreaterThan(1e-2); // a real gradient, not zeros
    console.info(`reference (W=1, b=28): ${ref.ms} ms`);
  }, 180_000);
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('one process in micro batches of at most 5 (k=6, the last of 3) equals one pass over all 28', async () => {
    await expectSameGradient(split([B], 5), 'W=1, m=5 k=6');
  });

  it('12/8/8 GB GPUs: shares 12, 8, 8 at offsets 0, 12, 20 of B=28 equal one process on all 28', async () => {
    const s = split([12, 8, 8]);
    expect(s.offset).toEqual([0, 12, 20]);
    await expectSameGradient(s, 'W=3, 12/8/8');
  });

  it('12/8/8 with micro batches of at most 5 (k = 3, 2, 2: unequal accumulation) equal one process', async () => {
    const s = split([12, 8, 8], 5);
    expect([s.micro, s.accum]).toEqual([
      [5, 5, 5],
      [3, 2, 2],
    ]);
    await expectSameGradient(s, 'W=3, 12/8/8, m=5');
  });

  it("the controller's split, large share on rank 1 (8/12/8; micro 4 x 2, 4 x 3, 4 x 2) equals it", async () => {
    // core/schedule.ts: accum = ceil(b / maxMicro), micro = ceil(b / accum) (maxMicro 5).
    const s: Split = { batch: [8, 12, 8], offset: [0, 8, 20], micro: [4, 4, 4], accum: [2, 3, 2] };
    await expectSameGradient(s, 'W=3, 8/12/8, balanced m=4');
  });

  it("the out-of-memory restart's split (core/batch.ts: 14/14, rank 1 halved: 7 x 2) equals one process", async () => {
    // What the controller launches after rank 1 ran out of memory at its first split (issue 19).
    const first = splitBatch(B, [8152, 8152]);
    const oom = oomOverride(undefined, { host: 'gpu2', localRank: 0, ...first[1] }, 1)!;
    expect(oom.message).toBe('gpu2 out of memory: micro batch 14 -> 7, accumulation 1 -> 2');
    const next = [first[0], capMicro(first[1], oom.overrides[0].maxMicro)];
    const s: Split = {
      batch: next.map((b) => b.batch),
      offset: next.map((b) => b.offset),
      micro: next.map((b) => b.micro),
      accum: next.map((b) => b.accum),
    };
    expect(s).toEqual({ batch: [14, 14], offset: [0, 14], micro: [14, 7], accum: [1, 2] });
    await expectSameGradient(s, 'W=2, 14/14 after OOM: 14 x 1, 7 x 2');
  });

  it('resumed from step-5 of a 12/8/8 run on another split (20/8): steps 6 and 7 have its losses', async () => {
    // The samples depend on (seed, step, global index) only, and the gradient not on the split: a run
    // resumed on other GPUs retraces the one it continues.
    const ck = join(tmp, 'ck-resume');
    const args = ['--epochs', '2', '--steps-per-epoch', '5', '--max-steps', '7', '--metrics-every', '1'];
    const a = await trainStep(split([12, 8, 8], 5), { args, env: { UGRO_CHECKPOINT_DIR: ck } });
    expect(a.code, a.out).toBe(0);
    expect(readFileSync(join(ck, 'latest'), 'utf8')).toBe('step-7\n'); // --max-steps keeps its last step
    const ck2 = join(tmp, 'ck-resume-2');
    mkdirSync(ck2);
    copyFileSync(join(ck, 'step-5.pt'), join(ck2, 'step-5.pt'));
    const b = await trainStep(split([20, 8]), { args, env: { UGRO_CHECKPOINT_DIR: ck2, UGRO_RESUME_FROM: 'step-5' } });
    expect(b.code, b.out).toBe(0);
    expect(b.out).toMatch(/^rank 1: resumed from step-5 \(step 5, epoch 0\)$/m);
    const after5 = (r: Result) => r.metrics.filter((m) => m.step > 5).map((m) => [m.step, m.total_steps]);
    expect(after5(a)).toEqual([
      [6, 7],
      [7, 7],
    ]);
    expect(after5(b)).toEqual(after5(a));
    for (const step of [6, 7]) {
      const la = a.metrics.find((m) => m.step === step)!.loss;
      const lb = b.metrics.find((m) => m.step === step)!.loss;
      expect(Math.abs(la - lb), `step ${step}: ${la} vs ${lb}`).toBeLessThan(1e-4 * Math.max(1, la));
    }
  }, 300_000); // two runs

  it('across a re-split by speed (12/8/8 to step 5, then 12/9/7 at 1.0/0.7/0.6): step 6 is one process', async () => {
    // What the controller launches after a `rebalanced` stop (core/batch.ts, balance: speed): the
    // shares by measured speed, no micro batch above the memory share, resumed from the checkpoint.
    const j = jobOf('t', { script: 't.py', nodes: 3, batch: { global: B, balance: 'speed' } });
    const parts = ['a', 'b', 'c'].map((host, i) => ({
      host,
      nodeRank: i,
      nproc: 1,
      gpus: [{ index: 0, name: 'x', memoryMiB: [12227, 8152, 8152][i] }],
    }));
    const speeds = [1000, 700, 600].map((samplesPerS, i) => ({
      host: parts[i].host,
      localRank: 0,
      gpu: 0,
      samplesPerS,
      attempt: 1,
    }));
    const mem = batchSplit(j, parts).parts.map((p) => p.batches![0]);
    const fast = batchSplit(j, parts, [], speeds);
    const next = fast.parts.map((p) => p.batches![0]);
    expect([fast.basis, mem.map((b) => b.batch), next.map((b) => b.batch)]).toEqual(['speed', [12, 8, 8], [12, 9, 7]]);
    expect(next[1]).toMatchObject({ micro: 5, accum: 2 }); // 9 on an 8 GB card: above its memory share
    const ck = join(tmp, 'ck-resplit');
    const first = await trainStep(split(mem.map((b) => b.batch)), {
      args: ['--steps-per-epoch', '5', '--max-steps', '5', '--metrics-every', '1'],
      env: { UGRO_CHECKPOINT_DIR: ck },
    });
    expect(first.code, first.out).toBe(0);
    // The memory split's lines carry each rank's busy time (rank_ms) and share (rank_n): what is measured.
    expect(first.metrics.at(-1)).toMatchObject({
      rank_n: '12,8,8',
      rank_ms: expect.stringMatching(/^[\d.]+,[\d.]+,[\d.]+$/),
    });
    const resumedStep = async (s: Split, label: string) => {
      const dump = join(tmp, `resplit-${label}.json`);
      const r = await trainStep(s, {
        args: ['--steps-per-epoch', '6', '--max-steps', '6', '--dump-grads', dump],
        env: { UGRO_CHECKPOINT_DIR: ck, UGRO_RESUME_FROM: 'step-5' },
      });
      expect(r.code, r.out).toBe(0);
      return JSON.parse(readFileSync(dump, 'utf8')) as Dump;
    };
    const one = await resumedStep(split([B]), 'one');
    const re = await resumedStep(
      {
        batch: next.map((b) => b.batch),
        offset: next.map((b) => b.offset),
        micro: next.map((b) => b.micro),
        accum: next.map((b) => b.accum),
      },
      'speed',
    );
    expect([one.step, re.step]).toEqual([6, 6]);
    const diff = maxAbsDiff(one, re);
    console.info(
      `re-split 12/8/8 -> 12/9/7 (9 as 5 x 2) at step-5: max |grad - one process| at step 6 = ${diff.toExponential(2)}`,
    );
    expect(diff).toBeLessThan(TOLERANCE);
  }, 300_000); // three runs

  it('shares that do not tile the global batch (12 + 8 + 7 of 28): every rank exits 2, saying why', async () => {
    const r = await trainStep(split([12, 8, 7]));
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toMatch(/^rank 0: bad batch split: the shares add up to 27, not UGRO_GLOBAL_BATCH 28$/m);
    const exits = [0, 1, 2].map((rank) => readFileSync(join(r.runDir, `rank-${rank}.exit`), 'utf8').trim());
    expect(exits).toEqual(['2', '2', '2']);
    expect(r.dump).toBeUndefined();
  });
});

describe('lab: a two-GPU gpu-master (lab gpus) in ugro health', () => {
  const HOST = 'gpu-master';
  beforeAll(() => labNominal());
  afterAll(() => {
    lab('gpus', HOST, 'default');
  });

  it('`lab gpus gpu-master "RTX 5070 Ti:12,RTX 4070:8"`: nvidia-smi and ugro health list both GPUs', async () => {
    lab('gpus', HOST, 'RTX 5070 Ti:12,RTX 4070:8');
    try {
      expect(lab('ssh', HOST, 'nvidia-smi -L').trim().split('\n')).toEqual([
        'GPU 0: NVIDIA GeForce RTX 5070 Ti (UUID: GPU-5c1a7e2b-0000-4000-8000-000000000000)',
        'GPU 1: NVIDIA GeForce RTX 4070 (UUID: GPU-5c1a7e2b-0001-4000-8000-000000000000)',
      ]);
      const cap = captureIo();
      const code = await main(
        ['node', 'ugro', '--cluster', LAB_CLUSTER_FILE, 'health', HOST, '-o', 'json'],
        cap.io,
        process.env,
      );
      expect(cap.err()).toBe('');
      const [n] = JSON.parse(cap.out()) as NodeHealth[];
      expect([n.name, n.status, n.reasons, n.warnings]).toEqual([HOST, 'Ready', [], []]);
      expect(n.gpus.map((g) => [g.index, g.name, g.memoryTotalMiB, g.driver])).toEqual([
        [0, 'NVIDIA GeForce RTX 5070 Ti', 12227, '570.133.07'],
        [1, 'NVIDIA GeForce RTX 4070', 8152, '570.133.07'],
      ]);
      expect(code).toBe(0);
    } finally {
      lab('gpus', HOST, 'default');
    }
    // `default` brings the seed GPU back.
    expect(lab('ssh', HOST, 'nvidia-smi -L').trim().split('\n')).toEqual([
      'GPU 0: NVIDIA GeForce RTX 5070 Ti (UUID: GPU-5c1a7e2b-0000-4000-8000-000000000000)',
    ]);
  });
});
