/**
 * Checkpoints you can find, keep and promote, on the lab (issue 18): a job with
 * `checkpoint.keep: {last: 2}` that checkpoints every 3 steps ends with exactly its newest two on
 * its host, and an event says what was deleted and the disk freed; `ugro checkpoints` lists them
 * with the sha256 that sha256sum gives on the host; `ugro promote --replicas 2` copies one to a
 * second host (its sha256sum there matches) and `ugro models` lists v1 on both hosts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  newJobsDir,
  startController,
  stopController,
  ugro,
  waitFor,
  waitPhase,
  writeJob,
} from './controller-harness.ts';

const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
const host = (n: string) => cluster.hosts.find((h) => h.name === n)!;
const JOB = 'ckpt-keep';
const dirOn = (h: string) => `${host(h).paths.checkpoints}/${JOB}`;
let ctl: ReturnType<typeof startController> | undefined;

async function sh(h: string, script: string, ...args: string[]): Promise<string> {
  const r = await pool.exec(h, ['sh', '-c', script, 'sh', ...args]);
  return r.stdout;
}

/** This job's checkpoints and run dirs on every host (old run dirs would raise its attempt numbers). */
const clean = () =>
  Promise.all(
    cluster.hosts.map((h) =>
      sh(h.name, 'rm -rf -- "$1" "$2"/"$3".*', dirOn(h.name), h.paths.runs, JOB).catch(() => ''),
    ),
  );

beforeAll(clean);
afterEach(async () => {
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(async () => {
  await clean();
  pool.close();
});

describe('checkpoints on the lab', () => {
  it('keep {last: 2} leaves the newest two; checkpoints lists their sha256; promote --replicas 2; models', async () => {
    const jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, JOB, {
      script: 'train.py',
      args: [
        ...['--epochs', '2', '--steps-per-epoch', '10', '--sleep', '0.05'],
        ...['--checkpoint-every', '3', '--metrics-every', '4'],
      ],
      nodes: 1,
      hosts: ['gpu1'],
      checkpoint: { keep: { last: 2 } },
    });
    const st = await waitPhase(jobsDir, JOB, ['Succeeded', 'Failed'], 120_000);
    expect(st.phase, ctl.logText()).toBe('Succeeded');
    // Checkpoints at steps 3, 6, 9, 10 (epoch end), 12, 15, 18, 20: the newest two stay.
    const left = await waitFor(
      'retention to leave two checkpoints on gpu1',
      async () => {
        const ls = (await sh('gpu1', 'cd "$1" && ls -1 -- *.pt', dirOn('gpu1'))).trim().split('\n').sort();
        return ls.length === 2 ? ls : undefined;
      },
      60_000,
    );
    expect(left).toEqual(['step-18.pt', 'step-20.pt']);
    const events = await waitFor('a CheckpointsPruned event', () => {
      const e = ugro(jobsDir, 'events', JOB, '--limit', '200').out;
      return /CheckpointsPruned/.test(e) ? e : undefined;
    });
    expect(events).toMatch(/CheckpointsPruned\s+\d+ deleted on gpu1 \(.*step-3.*\), [\d.]+ [kMG]?B freed/);

    const list = ugro(jobsDir, 'checkpoints', JOB, '-o', 'json');
    expect(list.code, list.err).toBe(0);
    const rows = JSON.parse(list.out).checkpoints as {
      name: string;
      step: number;
      sha256: string;
      copies: { host: string }[];
      writer?: { attempt: number; specHash: string };
      metrics?: { loss?: number; step?: number };
    }[];
    expect(rows.map((r) => r.name)).toEqual(['step-20', 'step-18']);
    const sums = await sh('gpu1', 'cd "$1" && sha256sum step-20.pt step-18.pt', dirOn('gpu1'));
    for (const r of rows) {
      expect(sums).toContain(`${r.sha256}  ${r.name}.pt`);
      expect(r.copies.map((c) => c.host)).toEqual(['gpu1']);
      expect(r.writer).toMatchObject({ attempt: 1, specHash: st.specHash });
      expect(typeof r.metrics?.loss).toBe('number');
    }
    // Metrics lines every 4 steps: step-18's is the line of step 16, the nearest before it.
    expect(rows.map((r) => r.metrics?.step)).toEqual([20, 16]);
    const table = ugro(jobsDir, 'checkpoints', JOB);
    expect(table.out).toMatch(/^20\s+step-20\s+gpu1\*/m);

    const promote = ugro(jobsDir, 'promote', JOB, '--checkpoint', 'step-18', '--as', 'keep-model', '--replicas', '2');
    expect(promote.code, promote.err).toBe(0);
    expect(promote.out).toMatch(/model\/keep-model:v1 registered/);
    const models = JSON.parse(ugro(jobsDir, 'models', '-o', 'json').out).models as {
      model: string;
      version: number;
      sha256: string;
      step: number;
      copies: { host: string; path: string }[];
    }[];
    expect(models).toHaveLength(1);
    expect(models[0]).toMatchObject({ model: 'keep-model', version: 1, step: 18, sha256: rows[1].sha256 });
    expect(models[0].copies).toHaveLength(2);
    const other = models[0].copies.find((c) => c.host !== 'gpu1')!;
    const there = await sh(other.host, 'sha256sum "$1"', other.path);
    expect(there.split(' ')[0]).toBe(rows[1].sha256);
    expect(ugro(jobsDir, 'models').out).toMatch(/^keep-model:v1\s+ckpt-keep\s+step-18/m);
  });
});
