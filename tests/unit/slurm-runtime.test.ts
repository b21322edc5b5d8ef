import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { type RunMeta, runDirName, runIdOf } from '../../controller/api/run.ts';
import type { LaunchRequest } from '../../controller/backends/api.ts';
import { SlurmBackend } from '../../controller/backends/slurm/backend.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { job } from './job-fixtures.ts';
import { fakeSlurm, LocalSlurmTransport, slurmCluster } from './slurm-fixtures.ts';

const settings = slurmCluster().slurm!.slurm;
const J = job('train-a', { script: 'train.py', nodes: 2 });
const HASH = '0123abcd';

function setup() {
  const fake = fakeSlurm();
  const root = mkdtempSync(join(tmpdir(), 'ugro-slurm-rt-'));
  const host = localHost(root, 'hpc', { slurm: { ...settings, pollMs: 50 }, role: 'worker' });
  const transport = new LocalSlurmTransport(fake.bin);
  const rt = new SlurmBackend(transport, new SshBackend(new LocalTransport()), { shareMs: 1000 });
  const req = (attempt = 1): LaunchRequest => {
    const meta: RunMeta = {
      job: 'train-a',
      runId: runIdOf('train-a', HASH, attempt),
      specHash: HASH,
      attempt,
      host: 'hpc',
      nodeRank: 0,
      nnodes: 1,
      nprocPerNode: 1,
      hosts: ['hpc'],
      rdzvEndpoint: '127.0.0.1:29500',
      masterPort: 29500,
      createdAt: '2026-11-30T01:00:00.000Z',
    };
    return {
      dir: runDirName('train-a', HASH, attempt),
      rdzvAddr: '127.0.0.1',
      meta,
      argv: ['/usr/bin/python3', '-m', 'torch.distributed.run', '--not-for-slurm'],
      ugroEnv: { UGRO_JOB: 'train-a', UGRO_RUN_ID: meta.runId },
      jobEnv: { NCCL_DEBUG: 'INFO' },
      training: { job: J, target: ['/usr/bin/python3', '-u', '/shared/train.py', "it's"], rdzvTimeoutSeconds: 120 },
    };
  };
  const runDir = (attempt = 1) => join(host.paths.runs, runDirName('train-a', HASH, attempt));
  const sbatches = () => fake.calls().filter((c) => c.startsWith('sbatch'));
  const squeues = () => fake.calls().filter((c) => c.startsWith('squeue | --me'));
  return { fake, root, host, transport, rt, req, runDir, sbatches, squeues };
}

let t: ReturnType<typeof setup>;
beforeEach(() => {
  t = setup();
});

describe('launch: sbatch once per run dir', () => {
  it('writes the batch script, submits it from the run dir, records the job id and meta.json', async () => {
    const r = await t.rt.launch(t.host, t.req());
    expect(r).toEqual({ pid: 100, existed: false });
    expect(t.sbatches()).toEqual(['sbatch | --parsable | job.sbatch']);
    expect(readFileSync(join(t.runDir(), 'slurm_job_id'), 'utf8')).toBe('100\n');
    expect(JSON.parse(readFileSync(join(t.runDir(), 'meta.json'), 'utf8'))).toMatchObject({ host: 'hpc', attempt: 1 });
    const script = readFileSync(join(t.fake.state, 'sbatch-100.sh'), 'utf8');
    expect(script).toContain('#SBATCH --job-name=train-a-0123abcd-a1');
    expect(script).toContain('#SBATCH --nodes=2');
    expect(script).toContain(`  /shared/train.py \\\n  'it'\\''s'`);
  });

  it('a second launch of the same dir, or one after a submit cut short, submits nothing', async () => {
    await t.rt.launch(t.host, t.req());
    expect(await t.rt.launch(t.host, t.req())).toEqual({ pid: 100, existed: true });
    // Attempt 2: sbatch ran, but the controller died before the id was written: found by name.
    mkdirSync(t.runDir(2), { recursive: true });
    t.fake.setQueue(['777|PENDING|Priority||train-a-0123abcd-a2']);
    expect(await t.rt.launch(t.host, t.req(2))).toEqual({ pid: 777, existed: true });
    expect(t.sbatches()).toHaveLength(1);
  });

  it("sbatch's refusal is the launch's error, and leaves no run the controller would adopt", async () => {
    writeFileSync(join(t.fake.state, 'sbatch-fails'), 'sbatch: error: invalid partition specified: gpu\n');
    await expect(t.rt.launch(t.host, t.req())).rejects.toThrow(/sbatch refused the job: .*invalid partition/);
    expect(existsSync(join(t.runDir(), 'meta.json'))).toBe(false);
    expect((await t.rt.observe(t.host, 'train-a')).parts).toEqual([]);
  });

  it('refuses a request without the job and its training command, or whose meta does not match its dir', async () => {
    const { training: _t, ...plain } = t.req();
    await expect(t.rt.launch(t.host, plain)).rejects.toThrow(/needs the job and its training command/);
    await expect(t.rt.launch(t.host, { ...t.req(), meta: { ...t.req().meta, host: 'gpu1' } })).rejects.toThrow(/host/);
  });
});

describe("observe: Slurm's states as run parts", () => {
  async function observed(row: string, files: Record<string, string> = {}) {
    await t.rt.launch(t.host, t.req());
    t.fake.setQueue([row]);
    for (const [f, text] of Object.entries(files)) writeFileSync(join(t.runDir(), f), text);
    const { parts } = await t.rt.observe(t.host, 'train-a');
    expect(parts).toHaveLength(1);
    return parts[0];
  }

  it('PENDING: alive, waiting with Slurm reason; no pid (nothing of it runs on the login host)', async () => {
    const p = await observed('100|PENDING|Resources||train-a-0123abcd-a1');
    expect(p).toMatchObject({
      alive: true,
      waiting: { reason: 'SlurmPending', message: 'Slurm job 100 is PENDING (Resources)' },
      slurm: { jobId: '100', state: 'PENDING', reason: 'Resources' },
      ranks: [],
    });
    expect(p.pid).toBeUndefined();
  });

  it('RUNNING: alive with the ranks rank.sh recorded, the rendezvous the batch script chose', async () => {
    const p = await observed('100|RUNNING|None|n[1-2]|train-a-0123abcd-a1', {
      ranks: '0 0 0 4242 1\n1 0 1 4243 1\n',
      rdzv_endpoint: '10.1.0.1:29501\n',
    });
    expect(p).toMatchObject({ alive: true, slurm: { state: 'RUNNING', nodes: 'n[1-2]' } });
    expect(p.waiting).toBeUndefined();
    expect(p.ranks.map((r) => r.rank)).toEqual([0, 1]);
    expect(p.meta.rdzvEndpoint).toBe('10.1.0.1:29501');
  });

  it('COMPLETED: ended with the exit code the batch script wrote', async () => {
    const p = await observed('100|COMPLETED|None|n1|train-a-0123abcd-a1', { exit_code: '0\n' });
    expect(p).toMatchObject({ alive: false, exitCode: 0 });
    expect(p.ended).toBeUndefined();
  });

  it("FAILED with a failed rank: the rank's exit and log say it (no backend reason over them)", async () => {
    const p = await observed('100|FAILED|NonZeroExitCode|n1|train-a-0123abcd-a1', {
      exit_code: '1\n',
      'rank-1.exit': '3\n',
      'rank-1.log': 'Traceback\nValueError: boom\n',
    });
    expect(p).toMatchObject({ alive: false, exitCode: 1 });
    expect(p.ranks.find((r) => r.rank === 1)).toMatchObject({
      exitCode: 3,
      logTail: ['Traceback', 'ValueError: boom'],
    });
    expect(p.ended).toBeUndefined();
  });

  it('NODE_FAIL, TIMEOUT, OUT_OF_MEMORY and a cancel from outside: the end has Slurm reason', async () => {
    expect((await observed('100|NODE_FAIL|NodeDown|n2|train-a-0123abcd-a1')).ended).toMatchObject({
      class: 'infra',
      reason: 'SlurmNodeFail',
    });
    t = setup();
    expect((await observed('100|TIMEOUT|TimeLimit|n2|train-a-0123abcd-a1')).ended).toMatchObject({
      reason: 'SlurmTimeLimit',
      final: true,
    });
    t = setup();
    expect((await observed('100|OUT_OF_MEMORY|OutOfMemory|n2|train-a-0123abcd-a1')).ended).toMatchObject({
      class: 'training',
      reason: 'OutOfMemory',
    });
    t = setup();
    expect((await observed('100|CANCELLED|None|n2|train-a-0123abcd-a1')).ended).toMatchObject({
      reason: 'CancelledInSlurm',
      final: true,
    });
    // UGRO's own cancel (its reason in the run dir) is not "outside".
    t = setup();
    const own = await observed('100|CANCELLED|None|n2|train-a-0123abcd-a1', { cancelled: 'cancelled\n' });
    expect(own).toMatchObject({ alive: false, stopReason: 'cancelled' });
    expect(own.ended).toBeUndefined();
  });

  it('a job Slurm no longer lists and that recorded no exit: lost, after asking again', async () => {
    await t.rt.launch(t.host, t.req());
    t.fake.setQueue([]);
    const { parts } = await t.rt.observe(t.host, 'train-a');
    expect(parts[0]).toMatchObject({ alive: false, ended: { class: 'infra', reason: 'SlurmJobLost' } });
    // The launch invalidated the last answer, so one call; the absence was then re-asked once.
    expect(t.squeues().length).toBe(2);
  });

  it('squeue failing (slurmctld down) fails the observe: the run is unknown, not ended', async () => {
    await t.rt.launch(t.host, t.req());
    writeFileSync(join(t.fake.state, 'squeue-fails'), 'slurm_load_jobs error: Unable to contact slurm controller\n');
    await expect(t.rt.observe(t.host, 'train-a')).rejects.toThrow(/Unable to contact slurm controller/);
  });

  it('one squeue call for every observe of a resync (five jobs, one answer)', async () => {
    const names = ['a1', 'a2', 'a3', 'a4', 'a5'];
    for (const [i, n] of names.entries()) {
      const dir = runDirName(n, HASH, 1);
      mkdirSync(join(t.host.paths.runs, dir), { recursive: true });
      writeFileSync(join(t.host.paths.runs, dir, 'slurm_job_id'), `${200 + i}\n`);
      const meta = { ...t.req().meta, job: n, runId: runIdOf(n, HASH, 1) };
      writeFileSync(join(t.host.paths.runs, dir, 'meta.json'), JSON.stringify(meta));
    }
    t.fake.setQueue(names.map((n, i) => `${200 + i}|RUNNING|None|n1|${runIdOf(n, HASH, 1)}`));
    const all = await Promise.all(names.map((n) => t.rt.observe(t.host, n)));
    expect(all.map((o) => o.parts[0]?.slurm?.state)).toEqual(names.map(() => 'RUNNING'));
    expect(t.squeues()).toHaveLength(1);
    expect(t.rt.stats.squeue).toBe(1);
  });
});

describe('wait and stop', () => {
  it('waiters share one squeue call per interval; each wakes when its own job moves', async () => {
    await t.rt.launch(t.host, t.req(1));
    await t.rt.launch(t.host, t.req(2));
    t.fake.setQueue(['100|PENDING|Priority||x', '101|RUNNING|None|n1|y']);
    await t.rt.observe(t.host, 'train-a');
    const ac = new AbortController();
    let woke1 = false;
    const w1 = t.rt.wait(t.host, runDirName('train-a', HASH, 1), ac.signal).then(() => {
      woke1 = true;
    });
    const w2 = t.rt.wait(t.host, runDirName('train-a', HASH, 2), ac.signal);
    expect(t.rt.waiting).toBe(2);
    const before = t.squeues().length;
    await new Promise((r) => setTimeout(r, 180));
    expect(woke1).toBe(false);
    const polls = t.squeues().length - before;
    expect(polls).toBeGreaterThanOrEqual(1);
    expect(polls).toBeLessThanOrEqual(4); // one per 50 ms interval at most, for both waiters
    t.fake.setQueue(['100|RUNNING|None|n1|x', '101|RUNNING|None|n1|y']);
    await w1;
    expect(t.rt.waiting).toBe(1);
    ac.abort();
    await w2;
    expect(t.rt.waiting).toBe(0);
  });

  it('stop: the reason first, TERM to every step, then the job is gone (remaining 0)', async () => {
    await t.rt.launch(t.host, t.req());
    t.fake.setQueue(['100|RUNNING|None|n1|train-a-0123abcd-a1']);
    writeFileSync(join(t.fake.state, 'on-scancel'), '100|CANCELLED|None|n1|train-a-0123abcd-a1\n');
    const r = await t.rt.stop(t.host, {
      dir: runDirName('train-a', HASH, 1),
      runId: 'train-a-0123abcd-a1',
      graceSeconds: 5,
      reason: 'cancelled',
    });
    expect(r).toEqual({ remaining: 0, killed: false });
    expect(readFileSync(join(t.runDir(), 'cancelled'), 'utf8')).toBe('cancelled\n');
    expect(t.fake.calls().filter((c) => c.startsWith('scancel'))).toEqual(['scancel | --signal=TERM | --full | 100']);
  });

  it('stop: a job that ignores TERM past the grace is cancelled outright; a pending one just goes', async () => {
    await t.rt.launch(t.host, t.req());
    t.fake.setQueue(['100|RUNNING|None|n1|train-a-0123abcd-a1']);
    const dir = runDirName('train-a', HASH, 1);
    // Slurm ends it only on the second scancel.
    const stop = t.rt.stop(t.host, { dir, runId: 'train-a-0123abcd-a1', graceSeconds: 0.4, reason: 'cancelled' });
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(join(t.fake.state, 'on-scancel'), '100|CANCELLED|None|n1|train-a-0123abcd-a1\n');
    expect(await stop).toEqual({ remaining: 0, killed: true });
    expect(t.fake.calls().filter((c) => c.startsWith('scancel'))).toEqual([
      'scancel | --signal=TERM | --full | 100',
      'scancel | 100',
    ]);
    t = setup();
    await t.rt.launch(t.host, t.req());
    t.fake.setQueue(['100|PENDING|Priority||train-a-0123abcd-a1']);
    writeFileSync(join(t.fake.state, 'on-scancel'), '100|CANCELLED|None||train-a-0123abcd-a1\n');
    await t.rt.stop(t.host, { dir, runId: 'train-a-0123abcd-a1', graceSeconds: 30, reason: 'deleted' });
    expect(t.fake.calls().filter((c) => c.startsWith('scancel'))).toEqual(['scancel | 100']);
  });

  it('probe: Ready when sbatch, squeue and scancel are there and slurmctld answers', async () => {
    expect(await t.rt.probe(t.host)).toMatchObject({ name: 'hpc', status: 'Ready', reasons: [] });
    writeFileSync(join(t.fake.state, 'squeue-fails'), 'slurm_load_jobs error: Unable to contact slurm controller\n');
    const h = await t.rt.probe(t.host);
    expect(h.status).toBe('NotReady');
    expect(h.reasons[0]).toMatch(/squeue failed .*Unable to contact slurm controller/);
  });
});
