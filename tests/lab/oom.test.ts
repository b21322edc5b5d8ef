/**
 * Out of memory on the lab (issue 19): gpu2's processes get a real memory limit (`lab mem`, a cgroup
 * v1 memory cgroup), sized so that the reference train.py's wide-mlp runs a micro batch of 14 but
 * not one of 28. A 2-node job with a global batch of 56 gives gpu2 a share of 28: its rank is
 * OOM-killed by the kernel at the first step, rank.sh records the cgroup's oom_kill count rising,
 * the controller classes the failure as out of memory, halves gpu2's micro batch (28 -> 14,
 * accumulation 1 -> 2), the gang restarts and Succeeds. The gradient of that split is checked in
 * train-batch.test.ts (one process on the whole batch, within 1e-5).
 *
 * UGRO_OOM_MEASURE=1 instead measures the peak memory of gpu2's cgroup for a run at micro batch 28
 * and at 14 with no limit (the figures behind LIMIT_MIB, README "Out of memory").
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
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
  waitPhase,
  writeJob,
} from './controller-harness.ts';
import { lab, labNominal } from './helpers.ts';

/**
 * gpu2's limit. Measured (UGRO_OOM_MEASURE, 3 runs each, no limit; sshd, the runner, torchrun and the
 * rank together): at micro batch 28 the cgroup peaked at 725-749 MiB, 678-704 MiB of it anonymous
 * (total_rss, sampled every 50 ms); at 14, 565-589 MiB, 493-530 anonymous. Page cache is reclaimed
 * before the OOM killer acts, so 640 MiB kills 28 (its anonymous memory alone is over) and fits 14.
 */
const LIMIT_MIB = 640;
const MEM = '/sys/fs/cgroup/memory/ugro-lab/gpu2';
const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
const measuring = !!process.env.UGRO_OOM_MEASURE;
let ctl: ReturnType<typeof startController> | undefined;
let jobsDir = '';

const oomKills = () => Number(/oom_kill (\d+)/.exec(readFileSync(`${MEM}/memory.oom_control`, 'utf8'))![1]);

/** A short run of the wide model (activations grow with the micro batch) on gpu1 + gpu2, 28 samples each. */
function spec(extra: Record<string, unknown> = {}) {
  return {
    script: 'train.py',
    args: ['--model', 'wide-mlp', '--lr', '1e-6', '--epochs', '1', '--steps-per-epoch', '4', '--checkpoint-every', '2'],
    hosts: ['gpu1', 'gpu2'],
    nodes: 2,
    batch: { global: 56 },
    restartPolicy: { maxRestarts: 0 },
    ...extra,
  };
}

/** This file's run dirs and checkpoints on gpu1 and gpu2 (jobs oom, oom-m*), nobody else's. */
async function clean(): Promise<void> {
  await Promise.all(
    ['gpu1', 'gpu2'].map((name) => {
      const h = cluster.hosts.find((x) => x.name === name)!;
      return pool.exec(name, [
        'sh',
        '-c',
        'rm -rf -- "$1"/oom.* "$1"/oom-m* "$2"/oom "$2"/oom-m*',
        'x',
        h.paths.runs,
        h.paths.checkpoints,
      ]);
    }),
  );
}

/**
 * A controller that another lab test killed leaves its host leases (`<runs>/.ugro-lease`) for up
 * to 60 s: this test's controller would wait them out as Unschedulable. Wait here instead.
 */
async function leasesFree(): Promise<void> {
  const expired = async (name: string) => {
    const h = cluster.hosts.find((x) => x.name === name)!;
    const r = await pool.exec(name, [
      'sh',
      '-c',
      'e=$(sed -n "s/^expires=//p" "$1/.ugro-lease" 2>/dev/null); [ "${e:-0}" -le "$(date +%s)" ]',
      'x',
      h.paths.runs,
    ]);
    return r.code === 0;
  };
  await waitFor(
    'no other controller leasing gpu1 or gpu2',
    async () => (await expired('gpu1')) && expired('gpu2'),
    70_000,
    500,
  );
}

beforeAll(async () => {
  labNominal();
  lab('mem', 'gpu2', 'off');
  await clean();
  await leasesFree();
}, 90_000);
afterEach(async () => {
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(async () => {
  lab('mem', 'gpu2', 'off'); // always: the other lab tests need gpu2 whole
  await clean();
  pool.close();
});

describe.skipIf(measuring)('out of memory on the lab', () => {
  it('gpu2 OOM-killed at micro batch 28: restarted at 14 x 2 (global batch 56 kept), Succeeds', async () => {
    lab('mem', 'gpu2', String(LIMIT_MIB));
    const kills = oomKills();
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'oom', spec());
    const done = await waitPhase(jobsDir, 'oom', ['Succeeded', 'Failed'], 85_000);
    expect(done.phase, done.message).toBe('Succeeded');
    expect(oomKills()).toBe(kills + 1); // one real OOM kill in gpu2's cgroup
    expect(done.attempt).toBe(2);
    expect(done.restarts).toMatchObject({ oom: 1, training: 0, infra: 0 });
    expect(done.failures).toEqual([
      expect.objectContaining({ attempt: 1, class: 'oom', reason: 'OutOfMemory', host: 'gpu2', exitCode: 137 }),
    ]);
    expect(done.failures![0].message).toMatch(
      new RegExp(
        "^rank \\d on gpu2 ran out of memory \\(killed by the kernel's OOM killer: SIGKILL while oom_kill went " +
          '\\d+ -> \\d+ in /sys/fs/cgroup/memory/ugro-lab/gpu2/memory\\.oom_control\\) with micro batch 28$',
      ),
    );
    expect(done.batchOverrides).toEqual([{ host: 'gpu2', localRank: 0, maxMicro: 14, attempt: 1 }]);
    const events = ugro(jobsDir, 'events', 'oom').out;
    console.info(events); // the timeline, when it is slow
    expect(events).toContain('gpu2 out of memory: micro batch 28 -> 14, accumulation 1 -> 2');
    // What the ranks of attempt 2 ran: gpu2 in two micro batches of 14, gpu1 as before.
    const log = async (host: string) => {
      const h = cluster.hosts.find((x) => x.name === host)!;
      const r = await pool.exec(host, ['sh', '-c', 'cat -- "$1"/rank-*.log', 'x', `${h.paths.runs}/${runDirOf(done)}`]);
      return r.stdout;
    };
    expect(await log('gpu2')).toMatch(
      /^rank \d: batch 28 of global 56 at offset \d+, 2 micro batch\(es\) of at most 14 \(UGRO_GRAD_ACCUM 2\)$/m,
    );
    expect(await log('gpu1')).toMatch(
      /^rank \d: batch 28 of global 56 at offset \d+, 1 micro batch\(es\) of at most 28 \(UGRO_GRAD_ACCUM 1\)$/m,
    );
    expect(await log('gpu2')).toMatch(/^rank \d: done$/m);
  }, 90_000);
});

describe.skipIf(!measuring)('measure: the peak memory of gpu2 at micro batch 28 and 14 (no limit)', () => {
  it('prints max_usage_in_bytes of gpu2 cgroup per run', async () => {
    lab('mem', 'gpu2', '100000'); // a cgroup that holds gpu2's processes, with no limit that matters
    const out: string[] = [];
    for (const [i, micro] of [28, 14, 28, 14, 28, 14].entries()) {
      writeFileSync(`${MEM}/memory.max_usage_in_bytes`, '0');
      jobsDir = newJobsDir();
      ctl = startController(jobsDir);
      const name = `oom-m${i}`;
      writeJob(jobsDir, name, spec({ batch: { global: 56, maxMicroBatch: micro } }));
      // The anonymous memory (total_rss) too: page cache counts in the peak but the kernel reclaims it first.
      let rss = 0;
      const sample = setInterval(() => {
        const m = /^total_rss (\d+)$/m.exec(readFileSync(`${MEM}/memory.stat`, 'utf8'));
        rss = Math.max(rss, Number(m?.[1] ?? 0));
      }, 50);
      const s = await waitPhase(jobsDir, name, ['Succeeded', 'Failed'], 120_000).finally(() => clearInterval(sample));
      const peak = Number(readFileSync(`${MEM}/memory.max_usage_in_bytes`, 'utf8')) / 1048576;
      out.push(
        `micro ${micro}: ${s.phase}, gpu2 cgroup peak ${peak.toFixed(0)} MiB, ` +
          `anonymous (total_rss, sampled every 50 ms) ${(rss / 1048576).toFixed(0)} MiB`,
      );
      await stopController(ctl);
      ctl = undefined;
      expect(readStatus(jobsDir, name)?.phase).toBe('Succeeded');
    }
    console.info(out.join('\n'));
  }, 600_000);
});
