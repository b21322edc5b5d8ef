/**
 * Bench section "throughput": training steps/s of the same scripts/train.py job on the 3 lab
 * hosts, (a) through the controller (a TrainingJob: launch.sh's runner, rank.sh, heartbeats,
 * metrics lines, the controller watching the hosts) and (b) bare torchrun, started over ssh on
 * each host by hand as tests/lab/lab.sh smoke does (`python3 -m torch.distributed.run`, c10d
 * rendezvous on gpu-master, GLOO_SOCKET_IFNAME=eth0), with the same train.py arguments.
 *
 * Measured the same way for both: rank 0 writes one metrics line per step (--metrics-every 1)
 * with its time (train.py's UGRO_METRICS_FILE; the controller sets it, the bare run is given one
 * by hand: the measuring instrument, nothing else of UGRO's), and steps/s is taken over the
 * steady state: from step WARMUP (start-up, DDP's first steps) to the last step. One epoch, no
 * --checkpoint-every: the only checkpoint (the controller's run) comes after the last step.
 * Samples alternate (a, b), (b, a), ... after one warm-up run of each; each pair gives a ratio.
 * The lab's hosts share this machine's 2 cores with the controller and the bench: the figures
 * are noisy, and anything else running shows in the min..max.
 */
import { rmSync, unlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import { newJobsDir, readStatus, runDirOf, startController, stopController } from '../lab/controller-harness.ts';
import {
  type Controller,
  controllerStarted,
  diag,
  type Lab,
  log,
  onCleanup,
  PREFIX,
  pad,
  writeJobAtomic,
} from './context.ts';
import { markedPids, poll, readText, round, type Summary, sleep, summarize, table } from './lib.ts';

/** Steps at the start left out of the rate (python/torch warm-up, DDP's first iterations). */
const WARMUP = 20;
/** The rendezvous port of the bare runs (the controller's start at 29500; lab smoke uses 29477). */
const BARE_PORT = 29660;

export const THROUGHPUT_GOAL = 0.99;

export function throughputArgs(steps: number): string[] {
  return [
    '--model',
    'small-mlp',
    '--batch-size',
    '64',
    '--epochs',
    '1',
    '--steps-per-epoch',
    String(steps),
    '--metrics-every',
    '1',
  ];
}

interface Rate {
  stepsPerS: number;
  /** Steps and seconds the rate is over. */
  steps: number;
  seconds: number;
}

/** Steady-state steps/s from rank 0's metrics lines (`step`, `time` in s). */
export function steadyRate(text: string, warmup = WARMUP): Rate | undefined {
  const pts: { step: number; t: number }[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const m = JSON.parse(line) as { step?: number; time?: number };
      if (typeof m.step === 'number' && typeof m.time === 'number') pts.push({ step: m.step, t: m.time });
    } catch {
      /* a line being written */
    }
  }
  const from = pts.find((p) => p.step >= warmup);
  const to = pts[pts.length - 1];
  if (!from || !to || to.step <= from.step) return undefined;
  const seconds = to.t - from.t;
  return { stepsPerS: (to.step - from.step) / seconds, steps: to.step - from.step, seconds };
}

/** (a) One TrainingJob through the controller, to Succeeded; its rank 0's metrics. */
async function viaController(lab: Lab, jobsDir: string, ctl: Controller, name: string, steps: number) {
  writeJobAtomic(jobsDir, name, { script: 'train.py', args: throughputArgs(steps), nodes: 3 });
  try {
    const s = await poll(
      `${name}: Succeeded`,
      () => {
        const st = readStatus(jobsDir, name);
        if (st?.phase === 'Failed') throw new Error(`${name} failed\n${diag(lab, jobsDir, ctl, name)}`);
        return st?.phase === 'Succeeded' ? st : undefined;
      },
      300_000,
      100,
    );
    const host0 = s.nodes.find((n) => n.nodeRank === 0)!.host;
    const dir = join(lab.hosts.find((h) => h.name === host0)!.paths.runs, runDirOf(s));
    const rate = steadyRate(readText(join(dir, 'metrics.jsonl')) ?? '');
    if (!rate) throw new Error(`${name}: no metrics lines in ${dir}`);
    return rate;
  } finally {
    unlinkSync(join(jobsDir, `${name}.yaml`));
    await poll(`${name}: status removed`, () => !readStatus(jobsDir, name), 60_000, 100).catch((e: Error) =>
      log(`warning: ${e.message}`),
    );
  }
}

/** (b) The same job as bare torchrun over ssh on each host, started at once; rank 0's metrics. */
async function bare(lab: Lab, name: string, steps: number) {
  const metricsOf = (h: Host) => posix.join(h.paths.project, `${name}.metrics.jsonl`);
  const runs = lab.hosts.map((h, i) =>
    lab.pool.exec(
      h.name,
      [
        'env',
        // A marker only, for the bench's cleanup (scrubHosts): train.py does not read it.
        `UGRO_RUN_ID=${name}`,
        'GLOO_SOCKET_IFNAME=eth0',
        ...(i === 0 ? [`UGRO_METRICS_FILE=${metricsOf(h)}`] : []),
        h.python,
        '-m',
        'torch.distributed.run',
        '--nnodes=3',
        '--nproc_per_node=1',
        `--node_rank=${i}`,
        '--rdzv_backend=c10d',
        `--rdzv_endpoint=${lab.hosts[0].address}:${BARE_PORT}`,
        `--rdzv_id=${name}`,
        `--rdzv_conf=is_host=${i === 0 ? 1 : 0},join_timeout=60`,
        posix.join(h.paths.scripts, 'train.py'),
        ...throughputArgs(steps),
      ],
      { cwd: h.paths.project, timeoutMs: 300_000 },
    ),
  );
  const res = await Promise.all(runs);
  const bad = res.findIndex((r) => r.code !== 0);
  if (bad >= 0)
    throw new Error(
      `${name}: bare torchrun on ${lab.hosts[bad].name} exited ${res[bad].code}:\n` +
        `${res[bad].stdout.slice(-2000)}${res[bad].stderr.slice(-2000)}`,
    );
  const file = metricsOf(lab.hosts[0]);
  const rate = steadyRate(readText(file) ?? '');
  rmSync(file, { force: true });
  if (!rate) throw new Error(`${name}: no metrics lines in ${file}`);
  return rate;
}

export interface ThroughputReport {
  steps: number;
  warmupSteps: number;
  pairs: number;
  trainArgs: string[];
  ugroStepsPerS: Summary;
  bareStepsPerS: Summary;
  /** Per pair: UGRO / bare. */
  ratio: Summary;
  /** p50 UGRO / p50 bare. */
  ratioOfMedians: number;
  goal: number;
  met: boolean;
  samples: { pair: number; order: string; ugro: Rate; bare: Rate; ratio: number }[];
}

/** The section: its own controller on a fresh jobs dir; one warm-up of each kind, then `pairs` pairs. */
export async function throughputSection(lab: Lab, pairs: number, steps: number): Promise<ThroughputReport> {
  const jobsDir = newJobsDir();
  onCleanup(`remove ${jobsDir}`, () => rmSync(jobsDir, { recursive: true, force: true }));
  const ctl = startController(jobsDir);
  onCleanup('stop controller (throughput)', () => stopController(ctl));
  await controllerStarted(ctl);
  const gone = (id: string) =>
    poll(`${id}: no process left`, () => markedPids(id, true).length === 0, 60_000, 100).catch((e: Error) =>
      log(`warning: ${e.message}`),
    );
  const one = async (kind: 'ugro' | 'bare', i: number | 'warm') => {
    const name = `${PREFIX}tp-${kind}-${i === 'warm' ? 'warm' : pad(i)}`;
    const r = kind === 'ugro' ? await viaController(lab, jobsDir, ctl, name, steps) : await bare(lab, name, steps);
    await gone(name);
    await sleep(500);
    return r;
  };
  // The warm-up also deploys scripts/ to the hosts (the bare runs use the deployed train.py).
  await one('ugro', 'warm');
  await one('bare', 'warm');
  const samples: ThroughputReport['samples'] = [];
  for (let i = 1; i <= pairs; i++) {
    const order = i % 2 ? (['ugro', 'bare'] as const) : (['bare', 'ugro'] as const);
    const got: Partial<Record<'ugro' | 'bare', Rate>> = {};
    for (const k of order) got[k] = await one(k, i);
    const ratio = got.ugro!.stepsPerS / got.bare!.stepsPerS;
    samples.push({ pair: i, order: order.join(','), ugro: got.ugro!, bare: got.bare!, ratio });
    log(
      `throughput ${i}/${pairs}: UGRO ${round(got.ugro!.stepsPerS, 1)} steps/s, bare ${round(got.bare!.stepsPerS, 1)}` +
        ` steps/s, ratio ${round(ratio, 3)}`,
    );
  }
  await stopController(ctl);
  const ugro = summarize(samples.map((s) => s.ugro.stepsPerS));
  const bareS = summarize(samples.map((s) => s.bare.stepsPerS));
  const ratio = summarize(samples.map((s) => s.ratio));
  return {
    steps,
    warmupSteps: WARMUP,
    pairs,
    trainArgs: throughputArgs(steps),
    ugroStepsPerS: ugro,
    bareStepsPerS: bareS,
    ratio,
    ratioOfMedians: ugro.p50 / bareS.p50,
    goal: THROUGHPUT_GOAL,
    met: ratio.p50 >= THROUGHPUT_GOAL,
    samples,
  };
}

export function throughputLines(t: ThroughputReport): string[] {
  const r = (x: Summary, d = 1) => [round(x.p50, d), `${round(x.min, d)}..${round(x.max, d)}`];
  return [
    `   train.py ${t.trainArgs.join(' ')} on 3 hosts; steps/s from rank 0's metrics lines, steps ` +
      `${t.warmupSteps}..${t.steps}; ${t.pairs} alternating pairs after a warm-up of each`,
    '   bare = python3 -m torch.distributed.run over ssh on each host (as lab.sh smoke), same train.py arguments',
    table(
      ['', 'p50', 'min..max'],
      [
        ['UGRO (TrainingJob) steps/s', ...r(t.ugroStepsPerS)],
        ['bare torchrun steps/s', ...r(t.bareStepsPerS)],
        ['UGRO / bare, per pair', ...r(t.ratio, 3)],
      ],
    ),
    `   UGRO / bare: p50 of the pairs ${round(t.ratio.p50, 3)}x (of the medians ${round(t.ratioOfMedians, 3)}x); ` +
      `goal >= ${t.goal}x: ${t.met ? 'MET' : 'NOT MET'}`,
  ];
}
