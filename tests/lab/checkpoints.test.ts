/**
 * Checkpoints you can find, keep and promote, on the lab (issue 18): a job with
 * `checkpoint.keep: {last: 2}` that checkpoints every 3 steps ends with exactly its newest two on
 * its host, and an event says what was deleted and the disk freed; `ugro checkpoints` lists them
 * with the sha256 that sha256sum gives on the host; `ugro promote --replicas 2` copies one to a
 * second host (its sha256sum there matches) and `ugro models` lists v1 on both hosts.
 * Across a controller restart (SIGTERM mid-run, a new controller on the same jobs dir): the run goes
 * on (adopted, attempt 1), the checkpoints written while no controller ran are pruned by the new
 * one, and a checkpoint promoted meanwhile (--replicas 2) survives retention on both hosts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  newJobsDir,
  readStatus,
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
const RESTART_JOB = 'ckpt-restart';
const dirOn = (h: string, job = JOB) => `${host(h).paths.checkpoints}/${job}`;
let ctl: ReturnType<typeof startController> | undefined;

async function sh(h: string, script: string, ...args: string[]): Promise<string> {
  const r = await pool.exec(h, ['sh', '-c', script, 'sh', ...args]);
  return r.stdout;
}

/** These jobs' checkpoints and run dirs on every host (old run dirs would raise its attempt numbers). */
const clean = () =>
  Promise.all(
    cluster.hosts.flatMap((h) =>
      [JOB, RESTART_JOB].map((j) =>
        sh(h.name, 'rm -rf -- "$1" "$2"/"$3".*', dirOn(h.name, j), h.paths.runs, j).catch(() => ''),
      ),
    ),
  );

/** The messages of a job's CheckpointsPruned events (the controller's event log, oldest first). */
function prunedEvents(jobsDir: string, job: string): string[] {
  let text = '';
  try {
    text = readFileSync(join(jobsDir, '.ugro', 'events.jsonl'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { job: string; reason: string; message: string })
    .filter((e) => e.job === job && e.reason === 'CheckpointsPruned')
    .map((e) => e.message);
}

/** The checkpoint files (`step-N.pt`) of a job on a host, by step. */
async function stepsOn(h: string, job: string): Promise<number[]> {
  const ls = await sh(h, 'cd "$1" 2>/dev/null && ls -1 -- *.pt 2>/dev/null || true', dirOn(h, job));
  return [...ls.matchAll(/^step-(\d+)\.pt$/gm)].map((m) => Number(m[1])).sort((a, b) => a - b);
}

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

  it('across a controller restart keeps exactly keep {last: 2} and a checkpoint promoted meanwhile', async () => {
    const STEPS = 90;
    const jobsDir = newJobsDir();
    // A running job is reconciled (and so pruned) at each resync: 2 s here, not the default 60 s.
    const resync = ['--resync', '2'];
    ctl = startController(jobsDir, resync);
    writeJob(jobsDir, RESTART_JOB, {
      script: 'train.py',
      args: [
        ...['--epochs', '1', '--steps-per-epoch', String(STEPS), '--sleep', '0.25'],
        ...['--checkpoint-every', '3', '--metrics-every', '3'],
      ],
      nodes: 1,
      hosts: ['gpu1'],
      checkpoint: { keep: { last: 2 } },
    });
    await waitFor('the first controller to prune', () => prunedEvents(jobsDir, RESTART_JOB).length > 0, 90_000);
    const first = readStatus(jobsDir, RESTART_JOB)!;
    expect(first.phase).toBe('Running');
    await stopController(ctl);
    ctl = undefined;
    // No controller: the run goes on and its checkpoints pile up past the policy.
    const piled = await waitFor(
      'five checkpoints on gpu1 with no controller',
      async () => {
        const s = await stepsOn('gpu1', RESTART_JOB);
        return s.length >= 5 ? s : undefined;
      },
      60_000,
    );
    // One that retention would delete, promoted while the run still writes more.
    const kept = piled[0];
    const promote = ugro(
      jobsDir,
      ...['promote', RESTART_JOB, '--checkpoint', `step-${kept}`, '--as', 'restart-model', '--replicas', '2'],
    );
    expect(promote.code, promote.err).toBe(0);
    const model = (
      JSON.parse(ugro(jobsDir, 'models', '-o', 'json').out).models as {
        model: string;
        sha256: string;
        copies: { host: string; path: string }[];
      }[]
    ).find((m) => m.model === 'restart-model')!;
    expect(model.copies.map((c) => c.host)).toContain('gpu1');
    const replica = model.copies.find((c) => c.host !== 'gpu1')!;
    expect(replica).toBeDefined();
    const before = await stepsOn('gpu1', RESTART_JOB);
    expect(before.at(-1), 'the run ended while no controller ran: nothing left to go on').toBeLessThan(STEPS);
    const extra = before.filter((s) => s !== kept).slice(0, -2);
    expect(extra.length).toBeGreaterThanOrEqual(1);
    ctl = startController(jobsDir, resync);
    const st = await waitPhase(jobsDir, RESTART_JOB, ['Succeeded', 'Failed'], 120_000);
    expect(st.phase, ctl.logText()).toBe('Succeeded');
    // The new controller adopted the run: the same attempt went on to the end.
    expect(st.runId).toBe(first.runId);
    expect(st.attempt).toBe(1);
    const want = [kept, STEPS - 3, STEPS].sort((a, b) => a - b);
    const left = await waitFor(
      `retention to leave ${want.join(', ')} on gpu1`,
      async () => {
        const s = await stepsOn('gpu1', RESTART_JOB);
        return s.join() === want.join() ? s : undefined;
      },
      60_000,
    ).catch(async (e: Error) => {
      e.message += `\nleft on gpu1: ${(await stepsOn('gpu1', RESTART_JOB)).join(', ')}`;
      throw e;
    });
    expect(left).toEqual(want);
    // What piled up before the restart went in the new controller's passes.
    // (`N deleted on gpu1 (step-3, step-6), 1.2 kB freed; kept …`: the names in the parentheses.)
    const deleted = prunedEvents(jobsDir, RESTART_JOB)
      .flatMap((m) => [...m.matchAll(/deleted on gpu1 \(([^)]*)\)/g)].map((d) => d[1]))
      .flatMap((list) => [...list.matchAll(/\bstep-(\d+)\b/g)].map((n) => Number(n[1])));
    expect(deleted).toEqual(expect.arrayContaining(extra));
    expect(deleted).not.toContain(kept);
    // The promoted one stays on both hosts, each copy with the sha256 registered.
    for (const c of model.copies) {
      const sum = await sh(c.host, 'sha256sum "$1"', c.path);
      expect(sum.split(' ')[0], `${c.host}:${c.path}`).toBe(model.sha256);
    }
    expect(await stepsOn(replica.host, RESTART_JOB)).toEqual([kept]);
  });
});
