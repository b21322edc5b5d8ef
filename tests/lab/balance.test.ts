/**
 * Batches balanced by measured speed on the lab (issue 19). The three hosts get real CPU quotas in
 * the seed's ratios 1.0/0.7/0.6 (`lab speed H F --cores 0.6`: 0.6, 0.42 and 0.36 of a core, 1.38 of
 * this machine's 2, so the quotas and not the machine set the speeds). A 3-node job with
 * `batch: {global: 96, balance: speed}` running train.py's compute-mlp (its work grows with the
 * samples) starts split by GPU memory (41/28/27: gpu-master's stand-in GPU has 12 GB, the others
 * 8), measures each rank's busy time a step, re-splits at its next checkpoint (stop reason
 * `rebalanced`, no failure); gpu1 slowed mid-run (0.3) gets a smaller share at the next
 * checkpoint. The step times and samples/s of both splits are printed, not asserted: at a global
 * batch of 96 a step's compute is small next to its all-reduce and the noise of two shared
 * cores. `npm run bench:balance` measures them (at 960: the speed split at 0.95 of the sum of the
 * hosts alone, memory 0.88). The gradient across a re-split is checked in train-batch.test.ts.
 *
 * Always restores `speed H 1` (afterAll). Run alone, under the lab lock.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  newJobsDir,
  readStatus,
  runDirOf,
  startController,
  stopController,
  ugro,
  waitFor,
  writeJob,
} from './controller-harness.ts';
import { lab, labNominal } from './helpers.ts';

const HOSTS = ['gpu-master', 'gpu1', 'gpu2'];
const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
let ctl: ReturnType<typeof startController> | undefined;
let jobsDir = '';

function setSpeeds(f: number[]): void {
  for (const [i, h] of HOSTS.entries()) lab('speed', h, String(f[i]), '--cores', '0.6');
}

/** This file's run dirs and checkpoints (job bal), nobody else's. */
async function clean(): Promise<void> {
  await Promise.all(
    HOSTS.map((name) => {
      const h = cluster.hosts.find((x) => x.name === name)!;
      return pool.exec(name, ['sh', '-c', 'rm -rf -- "$1"/bal.* "$2"/bal', 'x', h.paths.runs, h.paths.checkpoints]);
    }),
  );
}

interface Line {
  step: number;
  samples_per_s: number;
  rank_ms?: string;
  rank_n?: string;
}

/** The metrics lines of one attempt (rank 0's host has them). */
async function lines(s: Pick<JobStatus, 'runId'>): Promise<Line[]> {
  const out: Line[] = [];
  for (const name of HOSTS) {
    const h = cluster.hosts.find((x) => x.name === name)!;
    const r = await pool.exec(name, [
      'sh',
      '-c',
      'cat -- "$1/metrics.jsonl" 2>/dev/null',
      'x',
      `${h.paths.runs}/${runDirOf(s)}`,
    ]);
    for (const l of r.stdout.split('\n')) if (l.trim()) out.push(JSON.parse(l) as Line);
  }
  return out.filter((l) => l.rank_ms);
}

const busy = (l: Line) => l.rank_ms!.split(',').map(Number);
/** (slowest - fastest) / slowest busy time of a line: how unevenly the ranks' steps take. */
const spread = (l: Line) => (Math.max(...busy(l)) - Math.min(...busy(l))) / Math.max(...busy(l));
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const shareOf = (s: JobStatus, host: string) => s.balance!.ranks.find((r) => r.host === host)!.batch;

/** Deletes the job: the controller stops its run and removes its status (no training left behind). */
async function gone(): Promise<void> {
  if (!jobsDir || !existsSync(join(jobsDir, 'bal.yaml'))) return;
  rmSync(join(jobsDir, 'bal.yaml'));
  await waitFor('job bal deleted', () => !existsSync(join(jobsDir, 'bal.status.yaml')), 60_000);
}

beforeAll(async () => {
  labNominal();
  await clean();
}, 60_000);
afterAll(async () => {
  for (const h of HOSTS) lab('speed', h, '1'); // always: the other lab tests need full-speed hosts
  if (ctl) await gone().catch((e) => console.error(e));
  if (ctl) await stopController(ctl);
  await clean();
  pool.close();
}, 60_000);

describe('batches balanced by measured speed on the lab', () => {
  it('1.0/0.7/0.6: memory split first, re-split by speed at a checkpoint; one slowed mid-run gets less', async () => {
    setSpeeds([1, 0.7, 0.6]);
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    const t0 = Date.now();
    writeJob(jobsDir, 'bal', {
      script: 'train.py',
      args: [
        '--model',
        'compute-mlp',
        '--lr',
        '1e-5',
        '--steps-per-epoch',
        '100000',
        '--metrics-every',
        '4',
        '--checkpoint-every',
        '8',
      ],
      hosts: HOSTS,
      nodes: 3,
      batch: { global: 96, balance: 'speed' },
      restartPolicy: { maxRestarts: 0 },
    });
    // Attempt 2, split by speed, measured (at least two lines: the first after the warm-up).
    const a2 = await waitFor(
      'attempt 2 split by speed and measured',
      () => {
        const s = readStatus(jobsDir, 'bal');
        return s?.attempt === 2 && s.balance?.basis === 'speed' && (s.balance.step ?? 0) >= 12 ? s : undefined;
      },
      90_000,
    );
    const rebalancedAt = Date.now() - t0;
    const events = ugro(jobsDir, 'events', 'bal').out;
    expect(events).toMatch(
      /RebalancePlanned .*by measured speed the split would be gpu-master \d+, gpu1 \d+, gpu2 \d+/,
    );
    expect(events).toMatch(/Rebalancing .*checkpoint step-\d+ written: restarting attempt 1 split/);
    expect(a2.restarts ?? { training: 0, infra: 0 }).toMatchObject({ training: 0, infra: 0 });
    expect(a2.failures ?? []).toEqual([]);
    const first = `run ${a2.runId}`;
    const a1lines = await lines({ runId: a2.runId!.replace(/-a2$/, '-a1') });
    const a2lines = (await lines(a2)).slice(1); // the first may overlap the memory split's tail: no
    console.info(
      `rebalanced after ${(rebalancedAt / 1000).toFixed(1)} s; attempt 1 (memory ${a1lines[0]?.rank_n}): ` +
        a1lines.map((l) => `${l.rank_ms} ${l.samples_per_s}/s`).join(' | ') +
        `\nattempt 2 (speed ${a2lines[0]?.rank_n}, ${first}): ` +
        a2lines.map((l) => `${l.rank_ms} ${l.samples_per_s}/s`).join(' | '),
    );
    // The memory split (which 8 GB card gets 28 and which 27 follows the ranks' order).
    expect(
      (a1lines[0]?.rank_n ?? '')
        .split(',')
        .map(Number)
        .sort((x, y) => y - x),
    ).toEqual([41, 28, 27]);
    // How even the steps are and samples/s, printed, not asserted: on this shared 2-core machine
    // one window's noise is larger than the effect (npm run bench:balance measures it over many).
    console.info(
      `spread memory ${mean(a1lines.map(spread)).toFixed(3)} -> speed ${mean(a2lines.map(spread)).toFixed(3)}; ` +
        `samples/s ${mean(a1lines.map((l) => l.samples_per_s)).toFixed(0)} -> ` +
        `${mean(a2lines.map((l) => l.samples_per_s)).toFixed(0)}`,
    );
    // The status shows each rank's step and idle time; the slowest idles 0.
    expect(a2.balance!.ranks.every((r) => r.stepMs! > 0 && r.idleMs! >= 0)).toBe(true);
    expect(Math.min(...a2.balance!.ranks.map((r) => r.idleMs!))).toBe(0);

    // gpu1 slowed mid-run (thermal throttling, another process): a smaller share at the next checkpoint.
    const slowedAt = Date.now();
    lab('speed', 'gpu1', '0.3', '--cores', '0.6');
    const a3 = await waitFor(
      'a later attempt with gpu1 given less',
      () => {
        const s = readStatus(jobsDir, 'bal');
        return s && s.attempt > 2 && s.balance?.basis === 'speed' && shareOf(s, 'gpu1') < shareOf(a2, 'gpu1')
          ? s
          : undefined;
      },
      60_000,
    );
    console.info(
      `gpu1 slowed: re-split after ${((Date.now() - slowedAt) / 1000).toFixed(1)} s: ` +
        HOSTS.map((h) => `${h} ${shareOf(a2, h)} -> ${shareOf(a3, h)}`).join(', '),
    );
    // Planned again after the slowdown (as a gain, or naming gpu1 a straggler: which one the noise decides).
    expect(ugro(jobsDir, 'events', 'bal').out.match(/RebalancePlanned/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
    const d = ugro(jobsDir, 'describe', 'job', 'bal');
    expect(d.out).toMatch(/Batch split:\s+speed/);
    expect(d.out).toMatch(/gpu1\s+\d+\s+(\d+|-)\s+\d+\s+\d+ x \d+/);
    await gone();
  }, 200_000);
});
