/**
 * Scaling efficiency of mixed-speed hosts (issue 19), a benchmark: it prints numbers and never
 * fails on them.
 *
 *   npm run bench:balance      (builds dist/, takes the lab lock; BENCH_BALANCE_STEPS, default 60;
 *                              BENCH_BALANCE_GLOBAL, the global batch, default 960)
 *
 * The lab's hosts get CPU quotas in the seed's ratios 1.0/0.7/0.6 (`lab speed H F --cores 0.6`:
 * 0.6, 0.42, 0.36 of a core; 1.38 of this machine's 2, so the quotas and not the machine set the
 * speeds), then 0.6/1.0/1.0 (SPEED_SETS). train.py's compute-mlp (work grows with the samples)
 * on a global batch of 960, for each set of speeds:
 *   alone    each host alone (one node, a third of the global batch: its share): its samples/s
 *   even, memory, speed   the 3-host job with that balance; samples/s against the sum of the three
 *            alone figures (the scaling efficiency; goal: speed >= 0.9 and above memory). speed
 *            is measured on its last attempt: the one after it re-split itself, when it did (it
 *            does when the split by measured speed would save 5% of a step or more).
 *   throttle gpu1 slowed from 0.7 to 0.3 during a speed job: seconds from `lab speed` to the
 *            controller's stop for the re-split (`rebalanced`) and to the next attempt's ranks
 *            running, and samples/s on the old split once slowed against the new one.
 * Samples/s are train.py's metrics lines (its own step times: start-up excluded), the first line
 * of each run left out. What this machine cannot show: real GPUs (the work is CPU matmuls under a
 * CPU quota, all-reduce over veth between namespaces on one kernel) and quiet: other processes on
 * the 2 cores move the figures by a few percent.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../../config/cluster.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import {
  CLUSTER_FILE,
  newJobsDir,
  ROOT,
  readStatus,
  runDirOf,
  startController,
  stopController,
  waitFor,
  writeJob,
} from '../lab/controller-harness.ts';

const HOSTS = ['gpu-master', 'gpu1', 'gpu2'];
const FACTORS = [1, 0.7, 0.6];
/**
 * The seed's cards, whose memory (12/8/8 GB: 0.43/0.29/0.29 of the batch) nearly matches their
 * speed (0.43/0.30/0.26), so the memory split is close to right; and a lab whose 12 GB card is
 * the slow one (a 3060 12 GB beside two faster 8 GB cards), where memory puts the most on it.
 */
const SPEED_SETS = [
  { label: "the seed's cards", factors: FACTORS },
  { label: 'the 12 GB card the slowest', factors: [0.6, 1, 1] },
];
const STEPS = Math.max(20, Number(process.env.BENCH_BALANCE_STEPS ?? 60));
/**
 * The global batch. Large enough that a step's compute outweighs its all-reduce (compute-mlp's
 * 0.5 M parameters, about 2 MB over veth) and the noise: at 96 (the lab test's) the memory and
 * speed splits' samples/s differed by -9% to +8% over three runs, either way.
 */
const GLOBAL = Math.max(3, Number(process.env.BENCH_BALANCE_GLOBAL ?? 960));
/**
 * Each host alone runs a third of the global batch: what it does in the 3-host job. (With the
 * whole 960 alone, a sample cost more, its activations no longer fitting the caches: the 3-host
 * job then did 1.1-1.24x "the sum", a baseline that flattered every split.)
 */
const ALONE = Math.max(1, Math.round(GLOBAL / 3));
const cluster = loadCluster(CLUSTER_FILE);
const runsOf = (h: string) => cluster.hosts.find((x) => x.name === h)!.paths.runs;

function lab(...args: string[]): void {
  const r = spawnSync('bash', [join(ROOT, 'tests/lab/lab.sh'), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`lab ${args.join(' ')}: ${r.stderr}`);
}

interface Line {
  step: number;
  samples_per_s: number;
  rank_ms?: string;
  /** When the line was written (train.py: seconds since the epoch). */
  time?: number;
}

/** An attempt's metrics lines (rank 0's host has them; the hosts' files are readable here). */
function lines(s: Pick<JobStatus, 'runId'>): Line[] {
  for (const h of HOSTS) {
    try {
      const text = readFileSync(join(runsOf(h), runDirOf(s), 'metrics.jsonl'), 'utf8');
      return text
        .split('\n')
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as Line);
    } catch {
      // not this host
    }
  }
  return [];
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const rate = (ls: Line[]) => mean(ls.slice(1).map((l) => l.samples_per_s));

const args = (steps: number) => [
  '--model',
  'compute-mlp',
  '--lr',
  '1e-5',
  '--steps-per-epoch',
  String(steps),
  '--metrics-every',
  '5',
  '--checkpoint-every',
  '10',
];

let seq = 0;
/** A job to its end (Succeeded); its status. */
async function runJob(dir: string, spec: Record<string, unknown>): Promise<JobStatus> {
  const name = `bench-bal-${++seq}`;
  writeJob(dir, name, { script: 'train.py', restartPolicy: { maxRestarts: 0 }, ...spec });
  const s = await waitFor(
    `${name} done`,
    () => {
      const x = readStatus(dir, name);
      return x && ['Succeeded', 'Failed'].includes(x.phase) ? x : undefined;
    },
    600_000,
    500,
  );
  if (s.phase !== 'Succeeded') throw new Error(`${name}: ${s.phase}: ${s.message}`);
  return s;
}

async function main(): Promise<void> {
  const dir = newJobsDir();
  const ctl = startController(dir);
  const out: string[] = [];
  try {
    for (const set of SPEED_SETS) {
      for (const [i, h] of HOSTS.entries()) lab('speed', h, String(set.factors[i]), '--cores', '0.6');
      out.push(`speeds ${set.factors.join('/')} (${set.label}):`);
      const alone: number[] = [];
      for (const h of HOSTS) {
        const s = await runJob(dir, { args: args(STEPS), hosts: [h], nodes: 1, batch: { global: ALONE } });
        alone.push(rate(lines(s)));
      }
      const sum = alone.reduce((a, b) => a + b, 0);
      const each = HOSTS.map((h, i) => `${h} ${alone[i].toFixed(0)}`).join(', ');
      out.push(`  alone (samples/s, a batch of ${ALONE} each): ${each}; sum ${sum.toFixed(0)}; global batch ${GLOBAL}`);
      for (const mode of ['even', 'memory', 'speed']) {
        const s = await runJob(dir, {
          args: args(STEPS),
          hosts: HOSTS,
          nodes: 3,
          batch: { global: GLOBAL, balance: mode },
        });
        const ls = lines(s);
        const r = rate(ls);
        const split = s.balance?.ranks.map((x) => x.batch).join('/');
        const last = ls.at(-1)?.rank_ms;
        out.push(
          `  ${mode.padEnd(6)}: ${r.toFixed(0)} samples/s, efficiency ${(r / sum).toFixed(3)} of the sum ` +
            `(split ${split}, attempt ${s.attempt}; busy ms a step by rank ${last})`,
        );
      }
    }
    for (const [i, h] of HOSTS.entries()) lab('speed', h, String(FACTORS[i]), '--cores', '0.6');
    // Throttled mid-run: time to the re-split.
    const name = 'bench-bal-throttle';
    writeJob(dir, name, {
      script: 'train.py',
      args: args(100_000),
      hosts: HOSTS,
      nodes: 3,
      batch: { global: GLOBAL, balance: 'speed' },
    });
    const a2 = await waitFor(
      'throttle job on its speed split',
      () => {
        const x = readStatus(dir, name);
        return x?.balance?.basis === 'speed' && x.phase === 'Running' && (x.balance.step ?? 0) >= 15 ? x : undefined;
      },
      300_000,
      200,
    );
    const t0 = Date.now();
    lab('speed', 'gpu1', '0.3', '--cores', '0.6');
    const stop = await waitFor(
      'the rebalanced stop',
      () => {
        const x = readStatus(dir, name);
        return x?.reason === 'Rebalancing' || (x && x.attempt > a2.attempt) ? Date.now() : undefined;
      },
      300_000,
      100,
    );
    const next = await waitFor(
      'the next attempt running',
      () => {
        const x = readStatus(dir, name);
        return x && x.attempt > a2.attempt && x.phase === 'Running' ? x : undefined;
      },
      300_000,
      100,
    );
    const ran = Date.now();
    // samples/s on the old split with gpu1 slowed (its lines after the throttle) against the new split.
    const after = await waitFor(
      'three lines of the next attempt',
      () => {
        const ls = lines(next);
        return ls.length >= 4 ? ls : undefined;
      },
      300_000,
      500,
    );
    const slowed = lines(a2).filter((l) => (l.time ?? 0) * 1000 > t0 + 1000);
    const share = (x: JobStatus) => x.balance?.ranks.map((r) => r.batch).join('/');
    out.push(
      `throttle: gpu1 0.7 -> 0.3: re-split stop after ${((stop - t0) / 1000).toFixed(1)} s, next attempt ` +
        `running after ${((ran - t0) / 1000).toFixed(1)} s; split ${share(a2)} -> ${share(next)}; samples/s ` +
        `${mean(slowed.map((l) => l.samples_per_s)).toFixed(0)} on the old split once slowed (${slowed.length} ` +
        `lines) -> ${rate(after).toFixed(0)} on the new one`,
    );
    // Deleted: the controller stops its run and removes its status (nothing left on the hosts).
    rmSync(join(dir, `${name}.yaml`));
    await waitFor('the throttle job gone', () => !existsSync(join(dir, `${name}.status.yaml`)), 120_000, 200);
  } finally {
    for (const h of HOSTS) lab('speed', h, '1');
    // A job left running (a failed wait above) would train on: the controller stops its runs only
    // when the job is deleted, not when the controller itself stops.
    for (const f of readdirSync(dir)) if (f.endsWith('.yaml') && !f.endsWith('.status.yaml')) rmSync(join(dir, f));
    await waitFor(
      'every job gone',
      () => !readdirSync(dir).some((f) => f.endsWith('.status.yaml')),
      120_000,
      200,
    ).catch((e) => console.error(e));
    await stopController(ctl);
  }
  console.log(out.join('\n'));
}

await main();
