/**
 * Scheduling on the lab (issue 10): GPUs as the unit (two jobs on one 2-GPU host, each seeing
 * only its own GPU from inside its ranks), a request no GPU can meet, preemption with a
 * checkpoint and a resume past step 0, a job that opted out of preemption, backfill preempted
 * when the head can start, and fair share between two owners. A real controller, real sshd,
 * real torchrun; the lab's stand-in nvidia-smi gives gpu-master two GPUs for the first test.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  newJobsDir,
  readStatus,
  startController,
  stopController,
  trainArgs,
  waitFor,
  waitPhase,
  writeJob,
} from './controller-harness.ts';
import { lab } from './helpers.ts';

const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
let ctl: ReturnType<typeof startController> | undefined;
let jobsDir: string;

beforeAll(async () => {
  lab('up');
  await Promise.all(cluster.hosts.map((h) => pool.exec(h.name, ['pkill', '-KILL', '-f', 'torch.distributed.run'])));
  await Promise.all(
    cluster.hosts.map((h) => pool.exec(h.name, ['rm', '-rf', '--', h.paths.runs, h.paths.checkpoints])),
  );
});
afterEach(async () => {
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(() => {
  pool.close();
  lab('up');
});

const dirOf = (s: JobStatus) => s.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2');
const host = (name: string) => cluster.hosts.find((h) => h.name === name)!;
const longTrain = (epochs = 30) => trainArgs(epochs);
function rankLog(s: JobStatus, rank = 0): string {
  const n = s.nodes.find((x) => x.globalRanks.includes(rank)) ?? s.nodes[0];
  try {
    return readFileSync(join(host(n.host).paths.runs, dirOf(s), `rank-${rank}.log`), 'utf8');
  } catch {
    return '';
  }
}
const running = (name: string, attempt?: number) =>
  waitFor(
    `${name} running`,
    () => {
      const s = readStatus(jobsDir, name);
      return s?.phase === 'Running' && (attempt === undefined || s.attempt === attempt) ? s : undefined;
    },
    120_000,
  );

describe('scheduling on the lab', () => {
  it('two jobs share a 2-GPU host: each rank sees only its own GPU (CUDA_VISIBLE_DEVICES)', async () => {
    lab('gpus', 'gpu-master', 'RTX 5070 Ti:12,RTX 4070:8');
    try {
      jobsDir = newJobsDir();
      ctl = startController(jobsDir);
      const show = ['sh', '-c', 'echo "CVD=$CUDA_VISIBLE_DEVICES"; sleep 20'];
      writeJob(jobsDir, 'left', { command: show, nodes: 1, hosts: ['gpu-master'] });
      writeJob(jobsDir, 'right', { command: show, nodes: 1, hosts: ['gpu-master'] });
      const [a, b] = [await running('left'), await running('right')];
      const seen = await waitFor(
        'both ranks printed their GPU',
        () => {
          const l = /CVD=(\S*)/.exec(rankLog(a))?.[1];
          const r = /CVD=(\S*)/.exec(rankLog(b))?.[1];
          return l !== undefined && r !== undefined ? [l, r] : undefined;
        },
        30_000,
      );
      expect(seen.sort()).toEqual(['0', '1']);
      expect([a.nodes[0].gpus, b.nodes[0].gpus].map((g) => g?.[0]?.index).sort()).toEqual([0, 1]);
    } finally {
      lab('gpus', 'gpu-master', 'default');
    }
  });

  it('a 16 GB request no GPU can meet is Failed/Unschedulable with the sentence', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'huge', { script: 'train.py', nodes: 1, resources: { minGpuMemoryGiB: 16 } });
    const st = await waitPhase(jobsDir, 'huge', ['Failed'], 60_000);
    expect(st.reason).toBe('Unschedulable');
    expect(st.message).toContain('asks for 16 GB GPUs; the biggest GPU in the cluster has 12 GB');
  });

  it('a high job preempts a low one, which checkpoints, waits as Preempted, then resumes past step 0', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'low', {
      script: 'train.py',
      args: longTrain(8),
      nodes: 1,
      hosts: ['gpu1'],
      priority: 'low',
      preemption: { graceSeconds: 20, minRuntimeSeconds: 0 },
    });
    await running('low');
    await new Promise((r) => setTimeout(r, 4000)); // a few checkpoints
    writeJob(jobsDir, 'high', { script: 'train.py', args: longTrain(2), nodes: 1, hosts: ['gpu1'], priority: 'high' });
    const preempted = await waitFor(
      'low preempted',
      () => {
        const s = readStatus(jobsDir, 'low');
        return s?.conditions.find((c) => c.type === 'Preempted' && c.status === 'True') ? s : undefined;
      },
      60_000,
    );
    expect(preempted.conditions.find((c) => c.type === 'Preempted')?.message).toContain('preempted by high');
    expect(preempted.restarts?.training ?? 0).toBe(0);
    expect((await waitPhase(jobsDir, 'high', ['Succeeded', 'Failed'], 120_000)).phase).toBe('Succeeded');
    const resumed = await running('low', 2);
    const log = await waitFor(
      'low resumed',
      () => (/resumed from/.test(rankLog(resumed)) ? rankLog(resumed) : undefined),
      60_000,
    );
    expect(Number(/resumed from step-(\d+) \(step (\d+)/.exec(log)?.[2])).toBeGreaterThan(0);
  });

  it('a job that opted out (preemptible: false) is not preempted: the high one waits', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'keep', {
      script: 'train.py',
      args: longTrain(3),
      nodes: 1,
      hosts: ['gpu2'],
      priority: 'low',
      preemptible: false,
    });
    await running('keep');
    writeJob(jobsDir, 'vip', { script: 'train.py', args: longTrain(1), nodes: 1, hosts: ['gpu2'], priority: 'high' });
    const q = await waitPhase(jobsDir, 'vip', ['Queued'], 30_000);
    expect(q.message).toContain('gpu2 busy with job keep');
    expect((await waitPhase(jobsDir, 'keep', ['Succeeded', 'Failed'], 120_000)).phase).toBe('Succeeded');
    expect((await waitPhase(jobsDir, 'vip', ['Succeeded', 'Failed'], 120_000)).phase).toBe('Succeeded');
  });

  it('backfill: a preemptible job uses an idle GPU while the head waits, preempted when it can start', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    // gpu2 is busy with a job that cannot be preempted; the head needs all three hosts.
    writeJob(jobsDir, 'busy', {
      script: 'train.py',
      args: longTrain(2),
      nodes: 1,
      hosts: ['gpu2'],
      preemptible: false,
    });
    await running('busy');
    writeJob(jobsDir, 'head', { script: 'train.py', args: longTrain(1), nodes: 3 });
    await waitPhase(jobsDir, 'head', ['Queued'], 30_000);
    writeJob(jobsDir, 'filler', {
      script: 'train.py',
      args: longTrain(40),
      nodes: 1,
      hosts: ['gpu-master'],
      preemption: { graceSeconds: 10, minRuntimeSeconds: 0 },
    });
    const f = await running('filler');
    expect(f.nodes[0].host).toBe('gpu-master');
    // busy ends; the head can start once the backfill is preempted.
    const fillerStopped = await waitFor(
      'filler preempted',
      () => {
        const s = readStatus(jobsDir, 'filler');
        return s?.conditions.find((c) => c.type === 'Preempted' && c.status === 'True') ? s : undefined;
      },
      120_000,
    );
    expect(fillerStopped.conditions.find((c) => c.type === 'Preempted')?.message).toContain('by head');
    expect((await waitPhase(jobsDir, 'head', ['Succeeded', 'Failed'], 150_000)).phase).toBe('Succeeded');
  });

  it('fair share: of two equal-priority jobs, the owner with less recent GPU time goes first', async () => {
    jobsDir = newJobsDir();
    // alice has used 100 GPU-hours recently, bob none (the controller keeps this in .ugro/usage.json).
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync(join(jobsDir, '.ugro'), { recursive: true });
    writeFileSync(
      join(jobsDir, '.ugro', 'usage.json'),
      JSON.stringify({ halfLifeHours: 24, owners: { alice: { gpuSeconds: 360_000, at: Date.now() } } }),
    );
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'gate', {
      script: 'train.py',
      args: longTrain(1),
      nodes: 1,
      hosts: ['gpu1'],
      preemptible: false,
    });
    await running('gate');
    const owned = (owner: string) => ({ annotations: { 'ugro.dev/owner': owner } });
    // alice's job is older; fair share still puts bob's first.
    writeJob(
      jobsDir,
      'alice-job',
      { script: 'train.py', args: longTrain(1), nodes: 1, hosts: ['gpu1'] },
      owned('alice'),
    );
    await waitPhase(jobsDir, 'alice-job', ['Queued'], 30_000);
    writeJob(jobsDir, 'bob-job', { script: 'train.py', args: longTrain(1), nodes: 1, hosts: ['gpu1'] }, owned('bob'));
    await waitPhase(jobsDir, 'bob-job', ['Queued'], 30_000);
    const bob = await waitPhase(jobsDir, 'bob-job', ['Running', 'Succeeded'], 120_000);
    const alice = readStatus(jobsDir, 'alice-job');
    expect(alice?.phase).toBe('Queued');
    expect(alice?.message).toContain('bob-job');
    expect(bob.owner).toBe('bob');
    await waitPhase(jobsDir, 'alice-job', ['Succeeded', 'Failed'], 150_000);
  });

  it('scaleUp: one host grows to two at the next checkpoint when the other frees, resuming past step 0', async () => {
    // Runs of the tests before (other controllers' now) would hold hosts: none are left.
    await Promise.all(cluster.hosts.map((h) => pool.exec(h.name, ['pkill', '-KILL', '-f', 'torch.distributed.run'])));
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'blocker', {
      script: 'train.py',
      args: longTrain(3),
      nodes: 1,
      hosts: ['gpu1'],
      priority: 'high',
    });
    await running('blocker');
    writeJob(jobsDir, 'elastic', {
      script: 'train.py',
      args: longTrain(20),
      nodes: { min: 1, max: 2 },
      hosts: ['gpu-master', 'gpu1'],
      scaleUp: true,
    });
    const a1 = await running('elastic');
    expect(a1.nodes.map((n) => n.host)).toEqual(['gpu-master']);
    expect((await waitPhase(jobsDir, 'blocker', ['Succeeded', 'Failed'], 120_000)).phase).toBe('Succeeded');
    const a2 = await running('elastic', 2);
    expect(a2.nodes.map((n) => n.host).sort()).toEqual(['gpu-master', 'gpu1']);
    expect(a2.restarts?.training ?? 0).toBe(0);
    const log = await waitFor(
      'elastic resumed',
      () => (/resumed from/.test(rankLog(a2)) ? rankLog(a2) : undefined),
      60_000,
    );
    expect(Number(/resumed from step-(\d+) \(step (\d+)/.exec(log)?.[2])).toBeGreaterThan(0);
  });
});
