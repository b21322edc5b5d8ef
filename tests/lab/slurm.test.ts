/**
 * The Slurm backend on real Slurm: Debian's slurm-wlm with munge on the lab's network-namespace
 * hosts (tests/lab/slurm.sh: slurmctld on gpu-master, a slurmd on every host with its own name),
 * driven by a real `ugro controller` whose cluster file has a `slurm:` section naming gpu-master
 * as the login host. Proves: a `backend: slurm` TrainingJob trains across 3 nodes and Succeeds
 * (each rank's log read with `ugro logs --rank N` shows a different node); a cancel leaves no
 * process of the run on any host and no live Slurm job; a rank that fails makes the job Failed
 * with that rank's log tail; a controller restarted mid-run re-adopts the Slurm job (no second
 * submission) and sees it through.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { allHosts, loadCluster } from '../../config/cluster.ts';
import { SshPool } from '../../controller/hosts/ssh.ts';
import {
  CLUSTER_FILE,
  type Ctl,
  newJobsDir,
  ROOT,
  readStatus,
  requireLab,
  runProcesses,
  startController,
  stopController,
  waitFor,
  waitPhase,
  writeJob,
} from './controller-harness.ts';

requireLab();
const LAB_SH = join(ROOT, 'tests/lab/lab.sh');
/** The lab's cluster file plus the Slurm cluster: gpu-master is its login host (user master). */
const SLURM_CLUSTER = join(mkdtempSync(join(tmpdir(), 'ugro-slurm-lab-')), 'cluster.yaml');
writeFileSync(
  SLURM_CLUSTER,
  `${readFileSync(CLUSTER_FILE, 'utf8')}
slurm:
  name: slurm
  login: { hostname: gpu-master, ip: 10.250.77.10, user: master }
  partition: lab
  python: /usr/bin/python3
  poll_seconds: 1
`,
);
const cluster = loadCluster(SLURM_CLUSTER);
const login = cluster.slurm!;
const pool = new SshPool(allHosts(cluster));
let ctl: Ctl | undefined;

/** A `ugro controller` in its own process group (with its git/ssh children), its output kept. */

function ugro(jobsDir: string, ...args: string[]) {
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', SLURM_CLUSTER, '--jobs', jobsDir, ...args],
    {
      encoding: 'utf8',
    },
  );
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** What Slurm itself lists for the login user, live or ended (`ID STATE NAME`). */
async function squeue(): Promise<string[]> {
  const r = await pool.exec(login.name, ['squeue', '--me', '--noheader', '--states=all', '--format=%i %T %j']);
  return r.stdout.split('\n').filter(Boolean);
}

/** Run dirs of a job in the Slurm cluster's runs directory (on the storage the nodes share). */
function slurmRunDirs(job: string): string[] {
  try {
    return readdirSync(login.paths.runs).filter((d) => d.startsWith(`${job}.`));
  } catch {
    return [];
  }
}

beforeAll(() => {
  const up = spawnSync('bash', [LAB_SH, 'slurm', 'up'], { encoding: 'utf8', timeout: 170_000 });
  if (up.status !== 0) throw new Error(`lab slurm up failed:\n${up.stderr}\n${up.stdout}`);
  spawnSync('rm', ['-rf', '--', login.paths.runs]);
}, 180_000);
afterEach(async ({ task }) => {
  if (task.result?.state === 'fail' && ctl)
    console.error(`controller log (last 60 lines):\n${ctl.logText().split('\n').slice(-60).join('\n')}`);
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(() => {
  pool.close();
  // The other lab tests find the lab as `lab up` leaves it: no Slurm.
  spawnSync('bash', [LAB_SH, 'slurm', 'down'], { encoding: 'utf8', timeout: 120_000 });
  spawnSync('rm', ['-rf', '--', login.paths.runs]);
}, 180_000);

const SLURM = { script: 'train.py', nodes: 3, backend: 'slurm' };

describe('TrainingJobs on the lab Slurm cluster', () => {
  it('trains across 3 nodes to Succeeded; each rank ran on its own node; logs --rank N works', async () => {
    const jobs = newJobsDir();
    ctl = startController(jobs, [], SLURM_CLUSTER);
    writeJob(jobs, 'sl-e2e', { ...SLURM, args: ['--epochs', '2'] });
    const st = await waitPhase(jobs, 'sl-e2e', ['Succeeded', 'Failed'], 150_000);
    expect(st.phase, `${st.message}\n${ctl.logText().slice(-3000)}`).toBe('Succeeded');
    expect(st.slurm).toMatchObject({ state: 'COMPLETED' });
    expect(st.slurm?.jobId).toMatch(/^\d+$/);
    expect(st.nodes).toHaveLength(1);
    expect(st.nodes[0]).toMatchObject({ host: 'slurm', state: 'Succeeded' });
    expect([...st.nodes[0].globalRanks].sort()).toEqual([0, 1, 2]);
    const hosts = new Set<string>();
    for (const r of [0, 1, 2]) {
      const logs = ugro(jobs, 'logs', 'sl-e2e', '--rank', String(r));
      expect(logs.code, logs.err).toBe(0);
      const m = new RegExp(`^rank ${r}/3 on (\\S+) backend=gloo`, 'm').exec(logs.out);
      expect(m, logs.out).not.toBeNull();
      hosts.add(m![1]);
    }
    expect([...hosts].sort()).toEqual(['gpu-master', 'gpu1', 'gpu2']);
    const d = ugro(jobs, 'describe', 'job', 'sl-e2e');
    expect(d.out).toMatch(new RegExp(`Slurm: +job ${st.slurm!.jobId} COMPLETED`));
    expect(slurmRunDirs('sl-e2e')).toHaveLength(1);
  });

  it('cancel: Cancelled, no process of the run left on any host, no live Slurm job', async () => {
    const jobs = newJobsDir();
    ctl = startController(jobs, [], SLURM_CLUSTER);
    writeJob(jobs, 'sl-cancel', { ...SLURM, args: ['--epochs', '100', '--sleep', '0.2'] });
    const running = await waitFor(
      'three ranks running',
      () => {
        const s = readStatus(jobs, 'sl-cancel');
        return s?.phase === 'Running' && s.nodes[0]?.globalRanks.length === 3 ? s : undefined;
      },
      120_000,
    );
    const runId = running.runId!;
    expect(runProcesses(runId).length).toBeGreaterThan(0);
    const c = ugro(jobs, 'cancel', 'sl-cancel');
    expect(c.code, c.err).toBe(0);
    const st = await waitPhase(jobs, 'sl-cancel', ['Cancelled'], 60_000);
    expect(st.phase).toBe('Cancelled');
    await waitFor('no process with the run marker', () => runProcesses(runId).length === 0 || undefined, 15_000);
    // One Slurm job for the run, and it is over (TERM first: the ranks may end it themselves).
    const rows = (await squeue()).filter((l) => l.endsWith(` ${runId}`));
    expect(rows.length).toBe(1);
    expect(rows[0]).toMatch(/ (CANCELLED|COMPLETED|FAILED) /);
  });

  it("a rank that fails: Failed, naming the rank, with that rank's log tail", async () => {
    const jobs = newJobsDir();
    ctl = startController(jobs, [], SLURM_CLUSTER);
    writeJob(jobs, 'sl-fail', { ...SLURM, args: ['--fail-rank', '1', '--exit-code', '3', '--epochs', '2'] });
    const st = await waitPhase(jobs, 'sl-fail', ['Failed', 'Succeeded'], 150_000);
    expect(st.phase, st.message).toBe('Failed');
    expect(st).toMatchObject({ reason: 'RankFailed', failedRank: 1, exitCode: 3 });
    expect(st.logTail?.join('\n')).toMatch(/rank 1: failing on purpose with exit code 3/);
    await waitFor('nothing of it left', () => runProcesses(st.runId!).length === 0 || undefined, 15_000);
  });

  it('a controller restarted mid-run re-adopts the Slurm job: no second submission, and it Succeeds', async () => {
    const jobs = newJobsDir();
    ctl = startController(jobs, [], SLURM_CLUSTER);
    writeJob(jobs, 'sl-adopt', { ...SLURM, args: ['--epochs', '2', '--sleep', '0.25'] });
    const running = await waitFor(
      'Running',
      () => {
        const s = readStatus(jobs, 'sl-adopt');
        return s?.phase === 'Running' && s.slurm?.state === 'RUNNING' ? s : undefined;
      },
      120_000,
    );
    await stopController(ctl);
    // Training goes on without a controller.
    expect(runProcesses(running.runId!).length).toBeGreaterThan(0);
    ctl = startController(jobs, [], SLURM_CLUSTER);
    const st = await waitPhase(jobs, 'sl-adopt', ['Succeeded', 'Failed'], 150_000);
    expect(st.phase, st.message).toBe('Succeeded');
    expect(st.slurm?.jobId).toBe(running.slurm!.jobId);
    expect(st.attempt).toBe(1);
    expect(slurmRunDirs('sl-adopt')).toEqual([running.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')]);
    expect((await squeue()).filter((l) => l.includes(' sl-adopt-'))).toHaveLength(1);
  });
});
