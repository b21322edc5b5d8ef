/**
 * scripts/train.py under a real local torchrun (2 ranks, gloo on CPU, Debian's torch 1.13): the
 * contract with the controller. Checkpoints (complete or absent, `latest`), resume (rank 0 reads,
 * every rank continues at the same step, the loss curve continues), a missing checkpoint fails
 * loudly, graceful SIGTERM (every rank stops after the same step, with a checkpoint), heartbeat,
 * metrics and the collective timeout. Needs /usr/bin/python3 with torch; no SSH, no lab hosts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../support/net.ts';

const ROOT = resolve(new URL('../..', import.meta.url).pathname);
const PYTHON = '/usr/bin/python3';
const TRAIN = join(ROOT, 'scripts/train.py');

interface Run {
  child: ChildProcess;
  out: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; ms: number }>;
}

const live = new Set<ChildProcess>();
let seq = 0;
let tmp = '';

function killGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  try {
    process.kill(-c.pid!, sig);
  } catch {
    // already gone
  }
}

/** torchrun (2 local ranks) on train.py in its own process group; SIGKILLed after timeoutMs. */
async function startTrain(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<Run> {
  const port = await freePort();
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(UGRO_|RANK$|WORLD_SIZE$|LOCAL_RANK$|MASTER_)/.test(k)),
  );
  const argv = [
    '-m',
    'torch.distributed.run',
    '--nnodes=1',
    '--nproc_per_node=2',
    '--rdzv_backend=c10d',
    `--rdzv_endpoint=127.0.0.1:${port}`,
    `--rdzv_id=trainpy-${process.pid}-${++seq}`,
    '--max_restarts=0',
    '--monitor_interval=0.5', // torchrun notices ended workers within 0.5 s, not 5 s
    TRAIN,
    ...args,
  ];
  const t0 = Date.now();
  const child = spawn(PYTHON, argv, { cwd: tmp, env: { ...clean, ...env }, detached: true, stdio: 'pipe' });
  live.add(child);
  let log = '';
  child.stdout!.on('data', (b) => (log += b));
  child.stderr!.on('data', (b) => (log += b));
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), timeoutMs);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; ms: number }>((res) =>
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      killGroup(child, 'SIGKILL'); // any rank left behind
      live.delete(child);
      res({ code, signal, out: log, ms: Date.now() - t0 });
    }),
  );
  return { child, out: () => log, done };
}

async function train(args: string[], env: Record<string, string>, timeoutMs?: number) {
  return (await startTrain(args, env, timeoutMs)).done;
}

async function until(what: string, cond: () => boolean, timeoutMs: number, log: () => string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; output:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The pid of the torchrun worker with RANK=rank among the children of agentPid (Linux /proc). */
function workerPid(agentPid: number, rank: number): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== agentPid) continue;
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`RANK=${rank}`)) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

interface Metric {
  epoch: number;
  step: number;
  total_steps: number;
  loss: number;
  samples_per_s: number;
  world: number;
  time: number;
  epoch_end?: boolean;
}

const metricsOf = (f: string): Metric[] =>
  readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Metric);

/** rank 0's "epoch E loss L" lines: E -> L. */
function epochLosses(out: string): Map<number, number> {
  return new Map([...out.matchAll(/^rank 0: epoch (\d+) loss ([\d.]+)/gm)].map((m) => [Number(m[1]), Number(m[2])]));
}

const stopLines = (out: string) =>
  [...out.matchAll(/^rank (\d+): stopping on SIGTERM after step (\d+)$/gm)].map((m) => ({
    rank: Number(m[1]),
    step: Number(m[2]),
  }));

const ckptFiles = (dir: string) => readdirSync(dir).sort();
const latest = (dir: string) => readFileSync(join(dir, 'latest'), 'utf8');

describe('scripts/train.py under torchrun (2 local ranks, gloo)', () => {
  let ckA = '';
  let runALosses = new Map<number, number>();
  let runBLosses = new Map<number, number>();

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'ugro-trainpy-'));
    ckA = join(tmp, 'ck-a');
  });
  afterEach(() => {
    for (const c of live) killGroup(c, 'SIGKILL');
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('a. 2 epochs x 5 steps: step-5.pt, step-10.pt, latest = step-10; metrics; heartbeat per rank', async () => {
    const t0 = Date.now();
    const r = await train(['--epochs', '2', '--steps-per-epoch', '5', '--metrics-every', '2'], {
      UGRO_CHECKPOINT_DIR: ckA,
      UGRO_METRICS_FILE: join(tmp, 'metrics-a.jsonl'),
      UGRO_HEARTBEAT_FILE: join(tmp, 'hb-a-%r'),
      UGRO_RESTART_COUNT: '0',
    });
    const t1 = Date.now();
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^rank 0: done$/m);
    expect(r.out).toMatch(/^rank 1: done$/m);
    expect(r.out).toMatch(/^rank 1: restart count 0$/m);
    // Complete checkpoints only: no temporary file is left behind.
    expect(ckptFiles(ckA)).toEqual(['latest', 'step-10.pt', 'step-5.pt']);
    expect(latest(ckA)).toBe('step-10\n');

    const m = metricsOf(join(tmp, 'metrics-a.jsonl'));
    expect(m.map((l) => l.step)).toEqual([2, 4, 5, 6, 8, 10]);
    expect(m.filter((l) => l.epoch_end).map((l) => [l.epoch, l.step])).toEqual([
      [0, 5],
      [1, 10],
    ]);
    for (const l of m) {
      expect(l).toMatchObject({ total_steps: 10, world: 2 });
      expect(l.loss).toBeGreaterThan(0);
      expect(l.samples_per_s).toBeGreaterThan(0);
      expect(l.time * 1000).toBeGreaterThanOrEqual(t0 - 1000);
    }
    runALosses = epochLosses(r.out);
    expect(runALosses.size).toBe(2);

    for (const rank of [0, 1]) {
      const hb = join(tmp, `hb-a-${rank}`);
      expect(existsSync(hb), `heartbeat of rank ${rank}`).toBe(true);
      const { mtimeMs } = statSync(hb);
      expect(mtimeMs).toBeGreaterThanOrEqual(t0 - 1000);
      expect(mtimeMs).toBeLessThanOrEqual(t1 + 1000);
    }
  });

  it('b. resume from step-10: every rank resumes at step 10, the loss curve goes on, latest = step-20', async () => {
    expect(existsSync(join(ckA, 'step-10.pt')), 'needs the checkpoint of test a').toBe(true);
    const metrics = join(tmp, 'metrics-b.jsonl');
    const r = await train(['--epochs', '4', '--steps-per-epoch', '5', '--metrics-every', '2'], {
      UGRO_CHECKPOINT_DIR: ckA,
      UGRO_METRICS_FILE: metrics,
      UGRO_RESUME_FROM: 'step-10',
      UGRO_RESTART_COUNT: '1',
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^rank 0: resumed from step-10 \(step 10, epoch 1\)$/m);
    expect(r.out).toMatch(/^rank 1: resumed from step-10 \(step 10, epoch 1\)$/m);
    expect(r.out).toMatch(/^rank 0: restart count 1$/m);
    expect(r.out).not.toMatch(/^rank \d: epoch [01] /m); // epochs 0 and 1 are not trained again

    const m = metricsOf(metrics);
    expect(m[0].step).toBe(12);
    expect(m.map((l) => l.step)).toEqual([12, 14, 15, 16, 18, 20]);
    expect(latest(ckA)).toBe('step-20\n');
    expect(ckptFiles(ckA)).toEqual(['latest', 'step-10.pt', 'step-15.pt', 'step-20.pt', 'step-5.pt']);

    // The curve continues: epoch 2 is below run a's first epoch, near where run a ended, not
    // back at the initial loss.
    runBLosses = epochLosses(r.out);
    expect([...runBLosses.keys()]).toEqual([2, 3]);
    expect(runBLosses.get(2)!).toBeLessThan(runALosses.get(0)!);
    expect(runBLosses.get(2)!).toBeLessThan(runALosses.get(1)! * 1.5);
  });

  it('c. only rank 0 reads the checkpoint: rank 1 looks in an empty dir, still resumes at the same step', async () => {
    // --ckpt-dir-per-rank (test-only): rank 1 uses $UGRO_CHECKPOINT_DIR/rank-1, which stays empty;
    // had rank 1 opened its own copy, it would have failed with "does not exist".
    const ck = join(tmp, 'ck-c');
    mkdirSync(join(ck, 'rank-1'), { recursive: true });
    copyFileSync(join(ckA, 'step-5.pt'), join(ck, 'step-5.pt'));
    const r = await train(
      ['--epochs', '4', '--steps-per-epoch', '5', '--ckpt-dir-per-rank', '--checkpoint-every', '3'],
      {
        UGRO_CHECKPOINT_DIR: ck,
        UGRO_RESUME_FROM: 'step-5',
      },
    );
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^rank 0: resumed from step-5 \(step 5, epoch 0\)$/m);
    expect(r.out).toMatch(/^rank 1: resumed from step-5 \(step 5, epoch 0\)$/m);
    expect(readdirSync(join(ck, 'rank-1'))).toEqual([]);
    // Every 3 global steps and at every epoch's end (step 15 is both: saved once).
    const steps = ckptFiles(ck)
      .filter((f) => f.endsWith('.pt'))
      .map((f) => Number(f.slice(5, -3)))
      .sort((x, y) => x - y);
    expect(steps).toEqual([5, 6, 9, 10, 12, 15, 18, 20]);
    expect(r.out.match(/saved checkpoint step-15$/gm)).toHaveLength(1);
    expect(latest(ck)).toBe('step-20\n');

    // Model, momentum and step are restored exactly on every rank: resuming from step-5 retraces
    // run a's epoch 1 and run b's epochs 2 and 3 (the batches depend on rank and step only).
    const losses = epochLosses(r.out);
    expect(losses.get(1)).toBeCloseTo(runALosses.get(1)!, 4);
    expect(losses.get(2)).toBeCloseTo(runBLosses.get(2)!, 4);
    expect(losses.get(3)).toBeCloseTo(runBLosses.get(3)!, 4);
  });

  it('c2. resume from mid-epoch step-12 (5-step epochs): on at step 13 in epoch 2, same losses', async () => {
    const ck = join(tmp, 'ck-c2');
    mkdirSync(ck);
    copyFileSync(join(tmp, 'ck-c', 'step-12.pt'), join(ck, 'step-12.pt'));
    const metrics = join(tmp, 'metrics-c2.jsonl');
    const r = await train(['--epochs', '4', '--steps-per-epoch', '5', '--metrics-every', '2'], {
      UGRO_CHECKPOINT_DIR: ck,
      UGRO_METRICS_FILE: metrics,
      UGRO_RESUME_FROM: 'step-12',
    });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/^rank 0: resumed from step-12 \(step 12, epoch 2\)$/m);
    expect(r.out).toMatch(/^rank 1: resumed from step-12 \(step 12, epoch 2\)$/m);
    const m = metricsOf(metrics);
    expect(m.map((l) => [l.epoch, l.step])).toEqual([
      [2, 14],
      [2, 15],
      [3, 16],
      [3, 18],
      [3, 20],
    ]);
    expect(ckptFiles(ck)).toEqual(['latest', 'step-12.pt', 'step-15.pt', 'step-20.pt']);
    // step-12.pt carries epoch 2's loss sums of steps 11-12: epoch 2's loss is run b's (over steps
    // 11-15), not the mean of steps 13-15 alone (which it was before checkpoints held the sums).
    const losses = epochLosses(r.out);
    expect(losses.get(2)).toBeCloseTo(runBLosses.get(2)!, 4);
    expect(losses.get(3)).toBeCloseTo(runBLosses.get(3)!, 4);
  });

  it('d. UGRO_RESUME_FROM names a missing file: every rank exits 2, rank 0 names the file', async () => {
    const ck = join(tmp, 'ck-d');
    mkdirSync(ck);
    const r = await train(['--epochs', '2', '--steps-per-epoch', '5'], {
      UGRO_CHECKPOINT_DIR: ck,
      UGRO_RESUME_FROM: 'step-99',
    });
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toContain(`${join(ck, 'step-99.pt')} does not exist on rank 0's host`);
    expect(r.out).toContain('rank 0 must have the checkpoint file');
    expect(r.out).toMatch(/^rank 1: cannot resume from step-99: rank 0 could not load it/m);
    // torchrun's failure report: the ranks' own exit codes.
    const codes = [...r.out.matchAll(/exitcode\s*:\s*(-?\d+)/g)].map((m) => Number(m[1]));
    expect(codes.length, r.out).toBeGreaterThan(0);
    expect(new Set(codes)).toEqual(new Set([2]));
    expect(r.out).not.toMatch(/epoch \d+ loss/);
    expect(readdirSync(ck)).toEqual([]);
  });

  it('e. SIGTERM to the whole group: both ranks stop after the same step S, latest = step-S, within 10 s', async () => {
    const ck = join(tmp, 'ck-e');
    const run = await startTrain(['--epochs', '1000', '--steps-per-epoch', '5', '--sleep', '0.05'], {
      UGRO_CHECKPOINT_DIR: ck,
      UGRO_HEARTBEAT_FILE: join(tmp, 'hb-e-%r'),
    });
    await until('rank 1 up', () => /^rank 1: restart count/m.test(run.out()), 45_000, run.out);
    const tInit = Date.now();
    await until('step-20 saved', () => run.out().includes('saved checkpoint step-20'), 45_000, run.out);
    const t = Date.now();
    killGroup(run.child, 'SIGTERM');
    const r = await run.done;
    expect(Date.now() - t, r.out).toBeLessThan(10_000);
    const stops = stopLines(r.out);
    expect(stops.map((s) => s.rank).sort(), r.out).toEqual([0, 1]);
    expect(stops[0].step).toBe(stops[1].step);
    const s = stops[0].step;
    expect(s).toBeGreaterThanOrEqual(10);
    expect(latest(ck)).toBe(`step-${s}\n`);
    expect(existsSync(join(ck, `step-${s}.pt`))).toBe(true);
    expect(ckptFiles(ck).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(r.out).not.toMatch(/^rank \d: done$/m);
    // The heartbeat went on after init: touched at every step, up to the last.
    for (const rank of [0, 1]) expect(statSync(join(tmp, `hb-e-${rank}`)).mtimeMs).toBeGreaterThan(tInit + 500);
  });

  it('e2. SIGTERM to rank 1 alone: rank 0 stops after the same step too (the flag is all-reduced)', async () => {
    const ck = join(tmp, 'ck-e2');
    const run = await startTrain(['--epochs', '1000', '--steps-per-epoch', '5', '--sleep', '0.05'], {
      UGRO_CHECKPOINT_DIR: ck,
    });
    await until('step-5 saved', () => run.out().includes('saved checkpoint step-5'), 45_000, run.out);
    const pid = workerPid(run.child.pid!, 1);
    expect(pid, 'rank 1 worker pid').toBeDefined();
    process.kill(pid!, 'SIGTERM');
    const r = await run.done;
    const stops = stopLines(r.out);
    expect(stops.map((x) => x.rank).sort(), r.out).toEqual([0, 1]);
    expect(stops[0].step).toBe(stops[1].step);
    expect(latest(ck)).toBe(`step-${stops[0].step}\n`);
    // Both ranks exited 143; with --max-restarts=0 torchrun reports the failure and exits 1.
    expect(r.code).not.toBe(0);
    const codes = [...r.out.matchAll(/exitcode\s*:\s*(-?\d+)/g)].map((m) => Number(m[1]));
    expect(new Set(codes), r.out).toEqual(new Set([143]));
  });

  it('f. UGRO_COLLECTIVE_TIMEOUT_SECONDS=5 and a stuck rank: rank 0 fails after 5 s instead of hanging', async () => {
    // --hang-rank 1 (test-only): rank 1 stays alive but joins no collective, so rank 0 waits in
    // DDP's first collective; gloo gives up after the timeout, and torchrun then stops rank 1.
    const r = await train(['--epochs', '2', '--steps-per-epoch', '5', '--hang-rank', '1'], {
      UGRO_COLLECTIVE_TIMEOUT_SECONDS: '5',
    });
    expect(r.out).toMatch(/^rank 1: hanging on purpose/m);
    expect(r.out).toMatch(/Timed out waiting 5000ms/);
    expect(r.code, r.out).not.toBe(0);
    expect(r.ms).toBeLessThan(40_000);
    expect(r.out).not.toMatch(/epoch \d+ loss/);
  });
});
