/**
 * Recovery on the lab (issue 8): real faults on real hosts, one per test: a cut network, a host
 * whose sshd and processes are killed, kill -9 and kill -STOP of a rank, kill -9 of a runner, a
 * fatal exit code, a restart whose rank 0 moves (the checkpoint copied host to host), and a
 * flapping link. A real `ugro controller`, real sshd, real torchrun with the reference train.py.
 * Every fault is undone in `finally`, so a failure here does not leave the lab broken for the rest.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  markedProcesses,
  newJobsDir,
  rankPid,
  readStatus,
  startController,
  stopController,
  ugro,
  waitFor,
  waitPhase,
  writeJob,
} from './controller-harness.ts';
import { lab } from './helpers.ts';

const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
const hosts = cluster.hosts.map((h) => h.name);
let ctl: ReturnType<typeof startController> | undefined;
let jobsDir: string;

beforeAll(async () => {
  lab('up'); // nominal: every host running, linked, GPU ok
  // (Two execs: `pkill -f` inside `sh -c '…torch.distributed.run…'` would kill that very shell.)
  await Promise.all(cluster.hosts.map((h) => pool.exec(h.name, ['pkill', '-KILL', '-f', 'torch.distributed.run'])));
  await Promise.all(
    cluster.hosts.map((h) => pool.exec(h.name, ['rm', '-rf', '--', h.paths.runs, h.paths.checkpoints])),
  );
});
afterEach(async () => {
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(() => pool.close());

/** A training run long enough to be hit mid-way, checkpointing every `every` steps. */
const train = (o: { epochs?: number; every?: number; sleep?: number; extra?: string[] } = {}) => [
  '--epochs',
  String(o.epochs ?? 10),
  '--steps-per-epoch',
  '10',
  '--sleep',
  String(o.sleep ?? 0.2),
  '--checkpoint-every',
  String(o.every ?? 5),
  '--metrics-every',
  '5',
  ...(o.extra ?? []),
];

/**
 * The step the run has reached, from rank 0's metrics file on its host (the lab hosts share this
 * machine's file system): status.progress is only as fresh as the last reconcile.
 */
function step(s: JobStatus | undefined): number {
  const n = s?.nodes.find((x) => x.nodeRank === 0);
  const h = n && cluster.hosts.find((x) => x.name === n.host);
  if (!s?.runId || !h) return 0;
  try {
    const lines = readFileSync(join(h.paths.runs, dirOf(s), 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n');
    return Number((JSON.parse(lines[lines.length - 1]) as { step?: number }).step ?? 0);
  } catch {
    return 0;
  }
}
const cond = (s: JobStatus | undefined, type: string) => s?.conditions.find((c) => c.type === type);
/** The job's status once it is Running and rank 0 has reached `steps` (up to 2 minutes). */
const runningPast = (job: string, steps: number, what = 'running') =>
  waitFor(
    what,
    () => {
      const s = readStatus(jobsDir, job);
      return s?.phase === 'Running' && step(s) >= steps ? s : undefined;
    },
    120_000,
  );

async function noneLeft(runId: string, on: string[] = hosts): Promise<boolean> {
  return (await Promise.all(on.map((h) => markedProcesses(pool, h, runId)))).flat().length === 0;
}

async function rankLog(host: string, dir: string, rank: number): Promise<string> {
  const h = cluster.hosts.find((x) => x.name === host)!;
  const r = await pool.exec(host, ['cat', '--', `${h.paths.runs}/${dir}/rank-${rank}.log`]);
  return r.stdout;
}

const dirOf = (s: JobStatus) => s.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2');

describe('recovery on the lab', () => {
  it(
    'cut gpu2 mid-run (nodes 2..3): NodeLost within nodeLostSeconds + 2 s, ' +
      'restarted on 2 hosts from the checkpoint, Succeeds',
    async () => {
      jobsDir = newJobsDir();
      ctl = startController(jobsDir);
      writeJob(jobsDir, 'cut', { script: 'train.py', args: train(), nodes: { min: 2, max: 3 } });
      const first = await waitFor(
        '3 ranks running past a checkpoint',
        () => {
          const s = readStatus(jobsDir, 'cut');
          return s?.phase === 'Running' && s.nodes.length === 3 && step(s) >= 15 ? s : undefined;
        },
        120_000,
      );
      const before = Date.now();
      try {
        lab('cut', 'gpu2');
        // The link is down when the verb returns (it takes a moment to run).
        const t0 = Date.now();
        console.log(`lab cut took ${t0 - before} ms`);
        const lost = await waitFor(
          'NodeLost',
          () => {
            const c = cond(readStatus(jobsDir, 'cut'), 'NodeLost');
            return c?.status === 'True' ? c : undefined;
          },
          30_000,
          100,
        );
        const detectedMs = Date.parse(lost.lastTransitionTime) - t0;
        console.log(`cut gpu2 -> NodeLost: ${detectedMs} ms`);
        expect(lost.message).toContain('node gpu2 lost');
        expect(detectedMs).toBeLessThanOrEqual((5 + 2) * 1000);
        const second = await waitFor(
          'attempt 2 running on 2 hosts',
          () => {
            const s = readStatus(jobsDir, 'cut');
            return s?.attempt === 2 && s.phase === 'Running' ? s : undefined;
          },
          60_000,
        );
        expect(second.nodes.map((n) => n.host).sort()).toEqual(['gpu-master', 'gpu1']);
        const rank0 = second.nodes.find((n) => n.nodeRank === 0)!.host;
        const log0 = await waitFor(
          'rank 0 resumed',
          async () => {
            const t = await rankLog(rank0, dirOf(second), 0);
            return /resumed from/.test(t) ? t : undefined;
          },
          30_000,
          300,
        );
        const resumed = /resumed from step-(\d+) \(step (\d+), epoch (\d+)\)/.exec(log0);
        expect(resumed, log0).toBeTruthy();
        expect(Number(resumed![2])).toBeGreaterThan(0);
        const done = await waitPhase(jobsDir, 'cut', ['Succeeded', 'Failed'], 120_000);
        expect(done.phase, done.message).toBe('Succeeded');
        expect(done.restarts).toEqual({ infra: 1, training: 0, oom: 0 });
      } finally {
        lab('heal', 'gpu2');
      }
      // gpu2 is back: what was left of attempt 1 there is stopped (never two generations).
      await waitFor('no process of attempt 1 on gpu2', async () => noneLeft(first.runId!, ['gpu2']), 30_000, 500);
    },
  );

  it('stop-host gpu1, start-host 20 s later (nodes 3): WaitingForNodes, ' +
    'then restarted on 3 hosts; nothing of attempt 1 on gpu1', {
    timeout: 300_000,
  }, async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'gone', { script: 'train.py', args: train({ epochs: 6 }), nodes: 3 });
    const first = await runningPast('gone', 10, 'running past a checkpoint');
    const t0 = Date.now();
    try {
      lab('stop-host', 'gpu1');
      const waiting = await waitFor(
        'WaitingForNodes',
        () => {
          const s = readStatus(jobsDir, 'gone');
          return s?.phase === 'Queued' && s.reason === 'WaitingForNodes' ? s : undefined;
        },
        30_000,
      );
      expect(waiting.message).toContain('gpu1');
      await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - t0))));
    } finally {
      lab('start-host', 'gpu1');
    }
    const second = await waitFor(
      'attempt 2 on 3 hosts',
      () => {
        const s = readStatus(jobsDir, 'gone');
        return s && s.attempt >= 2 && s.phase === 'Running' && s.nodes.length === 3 ? s : undefined;
      },
      90_000,
    );
    expect(second.nodes.map((n) => n.host).sort()).toEqual([...hosts].sort());
    expect(await noneLeft(first.runId!, ['gpu1'])).toBe(true);
    ugro(jobsDir, 'delete', 'job', 'gone', '--wait');
  });

  it('kill -9 of one rank: the gang is stopped within 2 s, restarted, and maxRestarts counts it', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'crash', {
      script: 'train.py',
      args: train({ epochs: 4 }),
      nodes: 3,
      restartPolicy: { maxRestarts: 1, backoffSeconds: 1 },
    });
    const first = await runningPast('crash', 5);
    const pid = await waitFor('rank 1 pid', () => rankPid(first.runId!, 1), 10_000);
    const t0 = Date.now();
    process.kill(pid, 'SIGKILL');
    await waitFor('the gang gone', async () => noneLeft(first.runId!), 15_000, 50);
    const goneMs = Date.now() - t0;
    console.log(`kill -9 rank 1 -> nothing of the run left: ${goneMs} ms`);
    expect(goneMs).toBeLessThanOrEqual(2000);
    const done = await waitPhase(jobsDir, 'crash', ['Succeeded', 'Failed'], 150_000);
    expect(done.phase, done.message).toBe('Succeeded');
    expect(done.attempt).toBe(2);
    expect(done.restarts).toEqual({ infra: 0, training: 1, oom: 0 });
    expect(done.failures).toMatchObject([
      { attempt: 1, class: 'training', reason: 'RankFailed', rank: 1, exitCode: 137 },
    ]);
  });

  it('kill -STOP of one rank: ProgressStalled naming that rank within progressDeadlineSeconds + 2 s', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'hang', {
      script: 'train.py',
      args: train({ epochs: 50 }),
      nodes: 3,
      failurePolicy: { progressDeadlineSeconds: 6 },
    });
    const first = await runningPast('hang', 5);
    const pid = await waitFor('rank 2 pid', () => rankPid(first.runId!, 2), 10_000);
    const t0 = Date.now();
    process.kill(pid, 'SIGSTOP');
    try {
      const stalled = await waitFor(
        'ProgressStalled',
        () => {
          const s = readStatus(jobsDir, 'hang');
          return s?.failures?.find((f) => f.reason === 'ProgressStalled');
        },
        30_000,
        100,
      );
      const ms = Date.parse(stalled.time) - t0;
      console.log(`kill -STOP rank 2 -> ProgressStalled: ${ms} ms`);
      expect(stalled).toMatchObject({ rank: 2, host: first.nodes.find((n) => n.globalRanks.includes(2))?.host });
      expect(ms).toBeLessThanOrEqual((6 + 2) * 1000);
      const failed = await waitPhase(jobsDir, 'hang', ['Failed'], 30_000);
      expect(failed.reason).toBe('ProgressStalled');
      await waitFor('the gang gone', async () => noneLeft(first.runId!), 20_000, 200);
    } finally {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });

  it('kill -9 of the runner on one host: RunnerVanished, its orphans stopped, restarted', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'orphan', { script: 'train.py', args: train({ epochs: 4 }), nodes: 3 });
    const first = await runningPast('orphan', 5);
    const gpu1 = cluster.hosts.find((h) => h.name === 'gpu1')!;
    const runner = Number(readFileSync(join(gpu1.paths.runs, dirOf(first), 'pid'), 'utf8').trim());
    process.kill(runner, 'SIGKILL');
    const vanished = await waitFor(
      'RunnerVanished',
      () => readStatus(jobsDir, 'orphan')?.failures?.find((f) => f.reason === 'RunnerVanished'),
      20_000,
      100,
    );
    expect(vanished).toMatchObject({ class: 'infra', host: 'gpu1' });
    await waitFor('attempt 1 fully gone (orphans too)', async () => noneLeft(first.runId!), 20_000, 200);
    const done = await waitPhase(jobsDir, 'orphan', ['Succeeded', 'Failed'], 150_000);
    expect(done.phase, done.message).toBe('Succeeded');
    expect(done.restarts).toEqual({ infra: 1, training: 0, oom: 0 });
  });

  it('an exit code listed as fatal: Failed at once, no restart', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'fatal', {
      script: 'train.py',
      args: ['--fail-rank', '1', '--exit-code', '3'],
      nodes: 3,
      restartPolicy: { maxRestarts: 5, exitCodes: { fatal: [3] } },
    });
    const st = await waitPhase(jobsDir, 'fatal', ['Failed', 'Succeeded'], 90_000);
    expect(st).toMatchObject({ phase: 'Failed', reason: 'FatalExitCode', attempt: 1, exitCode: 3, failedRank: 1 });
  });

  it(
    'a restart whose rank 0 moves to another host: ' +
      'the checkpoint is copied (checksums equal) and it resumes past step 0',
    async () => {
      jobsDir = newJobsDir();
      ctl = startController(jobsDir);
      writeJob(jobsDir, 'moves', {
        script: 'train.py',
        args: train({ epochs: 5 }),
        nodes: { min: 2, max: 2 },
        restartPolicy: { maxRestarts: 1, backoffSeconds: 3 },
      });
      const first = await runningPast('moves', 15, 'running on gpu-master + gpu1 past a checkpoint');
      expect(first.nodes.map((n) => n.host)).toEqual(['gpu-master', 'gpu1']);
      // Another job waits for gpu-master; it gets it the moment the first attempt ends.
      writeJob(jobsDir, 'blocker', {
        script: 'train.py',
        args: train({ epochs: 30 }),
        nodes: 1,
        hosts: ['gpu-master'],
      });
      await waitPhase(jobsDir, 'blocker', ['Queued']);
      const pid = await waitFor('rank 1 pid', () => rankPid(first.runId!, 1), 10_000);
      process.kill(pid, 'SIGKILL');
      const second = await waitFor(
        'attempt 2 running',
        () => {
          const s = readStatus(jobsDir, 'moves');
          return s?.attempt === 2 && s.phase === 'Running' ? s : undefined;
        },
        90_000,
      );
      const rank0 = second.nodes.find((n) => n.nodeRank === 0)!.host;
      expect(rank0).not.toBe('gpu-master');
      const ev = ugro(jobsDir, 'events', 'moves').out;
      const copied =
        /CheckpointCopied\s+(step-\d+) copied from gpu-master to (\S+): (\d+) bytes .* sha256 ([0-9a-f]{64})/.exec(ev);
      expect(copied, ev).toBeTruthy();
      expect(copied![2]).toBe(`${rank0}`);
      const sum = async (host: string) => {
        const h = cluster.hosts.find((x) => x.name === host)!;
        const r = await pool.exec(host, ['sha256sum', '--', `${h.paths.checkpoints}/moves/${copied![1]}.pt`]);
        return r.stdout.split(' ')[0];
      };
      expect(await sum('gpu-master')).toBe(copied![4]);
      expect(await sum(rank0)).toBe(copied![4]);
      const log0 = await waitFor(
        'rank 0 resumed',
        async () => {
          const t = await rankLog(rank0, dirOf(second), 0);
          return /resumed from/.test(t) ? t : undefined;
        },
        30_000,
        300,
      );
      const resumed = /resumed from (step-\d+) \(step (\d+)/.exec(log0);
      expect(resumed, log0).toBeTruthy();
      expect(resumed![1]).toBe(copied![1]);
      expect(Number(resumed![2])).toBeGreaterThan(0);
      ugro(jobsDir, 'delete', 'job', 'blocker');
      const done = await waitPhase(jobsDir, 'moves', ['Succeeded', 'Failed'], 120_000);
      expect(done.phase, done.message).toBe('Succeeded');
      await waitFor('blocker gone', () => !readStatus(jobsDir, 'blocker'), 30_000);
    },
  );

  it('a flapping link (cut 1 s, healed): no restart', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'flap', { script: 'train.py', args: train({ epochs: 3 }), nodes: 3 });
    await runningPast('flap', 5);
    try {
      lab('cut', 'gpu2');
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      lab('heal', 'gpu2');
    }
    const done = await waitPhase(jobsDir, 'flap', ['Succeeded', 'Failed'], 120_000);
    expect(done.phase, done.message).toBe('Succeeded');
    expect(done.attempt).toBe(1);
    expect(done.failures).toBeUndefined();
    expect(cond(done, 'NodeLost')?.status).not.toBe('True');
  });
});
