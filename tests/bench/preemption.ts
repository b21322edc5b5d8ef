/**
 * Preemption latency on the lab (issue 10): a low-priority `train.py` holds gpu1; a high-priority
 * job for gpu1 is written. Per sample it prints, from the controller's own events and the run
 * directories (the lab hosts share this machine's clock and file system):
 *   decide   job file written -> the victim's Preempted event (the decision)
 *   free     decision -> every process of the victim's run gone (its ranks checkpoint on SIGTERM)
 *   launch   decision -> the preemptor's Scheduled event (launched on the freed GPU)
 * `free` is also how much of the victim's preemption.graceSeconds (20 s) its checkpoint took.
 *
 *   flock /run/lock/ugro-labtests.lock node --import tsx tests/bench/preemption.ts
 *   (BENCH_PREEMPTIONS samples, default 3; needs `npm run lab up` and a built dist/)
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  newJobsDir,
  readStatus,
  runDirOf,
  startController,
  stopController,
  trainArgs,
  waitFor,
  writeJob,
} from '../lab/controller-harness.ts';
import { round, summarize } from './lib.ts';

const GRACE_S = 20;

interface Sample {
  decideMs: number;
  freeMs: number;
  launchMs: number;
}

function eventTime(jobsDir: string, job: string, reason: string): number | undefined {
  let text = '';
  try {
    text = readFileSync(join(jobsDir, '.ugro', 'events.jsonl'), 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as { time: string; job: string; reason: string };
    if (e.job === job && e.reason === reason) return Date.parse(e.time);
  }
  return undefined;
}

/** When the victim's run ended on gpu1 (stop.sh records the finish time in the run dir). */
function finishedAt(runsPath: string, s: JobStatus): number | undefined {
  try {
    const t = readFileSync(join(runsPath, runDirOf(s), 'finished_at'), 'utf8').trim();
    return /^\d+$/.test(t) ? Number(t) * (t.length > 13 ? 1e-6 : t.length > 10 ? 1 : 1000) : undefined;
  } catch {
    return undefined;
  }
}

async function sample(i: number, pool: SshPool, runsPath: string): Promise<Sample> {
  await pool.exec('gpu1', ['pkill', '-KILL', '-f', 'torch.distributed.run']).catch(() => undefined);
  const jobsDir = newJobsDir();
  const ctl = startController(jobsDir);
  try {
    const low = `bench-low-${i}`;
    const high = `bench-high-${i}`;
    writeJob(jobsDir, low, {
      script: 'train.py',
      args: trainArgs(30),
      nodes: 1,
      hosts: ['gpu1'],
      priority: 'low',
      preemption: { graceSeconds: GRACE_S, minRuntimeSeconds: 0 },
    });
    const running = await waitFor(
      `${low} running`,
      () => {
        const s = readStatus(jobsDir, low);
        return s?.phase === 'Running' ? s : undefined;
      },
      120_000,
    );
    await new Promise((r) => setTimeout(r, 3000)); // a few steps and checkpoints
    const written = Date.now();
    writeJob(jobsDir, high, { script: 'train.py', args: trainArgs(1), nodes: 1, hosts: ['gpu1'], priority: 'high' });
    const decided = await waitFor('Preempted event', () => eventTime(jobsDir, low, 'Preempted'), 60_000);
    const launched = await waitFor('preemptor scheduled', () => eventTime(jobsDir, high, 'Scheduled'), 120_000);
    const free = await waitFor('victim gone', () => finishedAt(runsPath, running), 60_000).catch(() => undefined);
    return {
      decideMs: decided - written,
      freeMs: (free ?? launched) - decided,
      launchMs: launched - decided,
    };
  } finally {
    await stopController(ctl);
    await pool.exec('gpu1', ['pkill', '-KILL', '-f', 'torch.distributed.run']).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const cluster = labCluster();
  const pool = new SshPool(cluster.hosts);
  const runsPath = cluster.hosts.find((h) => h.name === 'gpu1')!.paths.runs;
  const n = Math.max(1, Number(process.env.BENCH_PREEMPTIONS ?? 3) || 3);
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = await sample(i, pool, runsPath);
      samples.push(s);
      console.log(
        `preemption ${i + 1}/${n}: decide ${round(s.decideMs)} ms, victim's GPU free ${round(s.freeMs)} ms ` +
          `after the decision (grace ${GRACE_S} s allowed), preemptor launched ${round(s.launchMs)} ms after it`,
      );
    }
  } finally {
    pool.close();
  }
  for (const k of ['decideMs', 'freeMs', 'launchMs'] as const) {
    const sum = summarize(samples.map((s) => s[k]));
    console.log(`${k.padEnd(9)} p50 ${round(sum.p50)} ms  min ${round(sum.min)}  max ${round(sum.max)}  (n=${n})`);
  }
}

await main();
