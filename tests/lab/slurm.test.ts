/**
 * The Slurm backend on real Slurm: Debian's slurm-wlm with munge on the lab's network-namespace
 * hosts (tests/lab/slurm.sh: slurmctld on gpu-master, a slurmd on every host with its own name),
 * driven by a real `ugro controller` on the lab's cluster file, to which `lab slurm up` adds the
 * `slurm:` section (gpu-master the login host) and `lab slurm down` removes it again. Proves: the
 * commands `slurm up` prints send a `backend: slurm` TrainingJob that trains across 3 nodes and
 * Succeeds (each rank's log read with `ugro logs --rank N` shows a different node); a cancel
 * leaves no process of the run on any host and no live Slurm job; a rank that fails makes the job
 * Failed with that rank's log tail; a controller restarted mid-run re-adopts the Slurm job (no
 * second submission) and sees it through; config/sbatch-options.ts reads extra #SBATCH lines as
 * the real sbatch does.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { allHosts, type Cluster, loadCluster } from '../../config/cluster.ts';
import { sbatchOwnedOption } from '../../config/sbatch-options.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
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
/** What `lab slurm up` printed on stdout: how to send a job to the lab Slurm. */
let upPrinted = '';
/** The lab's cluster file as `lab slurm up` leaves it: the Slurm cluster, gpu-master its login host. */
let cluster: Cluster;
let login: NonNullable<Cluster['slurm']>;
let pool: SshPool | undefined;
let ctl: Ctl | undefined;

function ugro(jobsDir: string, ...args: string[]) {
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', CLUSTER_FILE, '--jobs', jobsDir, ...args],
    {
      encoding: 'utf8',
    },
  );
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** What Slurm itself lists for the login user, live or ended (`ID STATE NAME`). */
async function squeue(): Promise<string[]> {
  const r = await pool!.exec(login.name, ['squeue', '--me', '--noheader', '--states=all', '--format=%i %T %j']);
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
  upPrinted = up.stdout;
  cluster = loadCluster(CLUSTER_FILE);
  if (!cluster.slurm) throw new Error(`lab slurm up left ${CLUSTER_FILE} without a slurm: section`);
  login = cluster.slurm;
  pool = new SshPool(allHosts(cluster));
  spawnSync('rm', ['-rf', '--', login.paths.runs]);
}, 180_000);
afterEach(async ({ task }) => {
  if (task.result?.state === 'fail' && ctl)
    console.error(`controller log (last 60 lines):\n${ctl.logText().split('\n').slice(-60).join('\n')}`);
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(() => {
  pool?.close();
  // The other lab tests find the lab as `lab up` leaves it: no Slurm, and none in the cluster file.
  const down = spawnSync('bash', [LAB_SH, 'slurm', 'down'], { encoding: 'utf8', timeout: 120_000 });
  if (login) spawnSync('rm', ['-rf', '--', login.paths.runs]);
  rmSync(join(ROOT, '.lab/slurm-jobs'), { recursive: true, force: true });
  if (down.status !== 0) throw new Error(`lab slurm down failed:\n${down.stderr}`);
  if (loadCluster(CLUSTER_FILE).slurm) throw new Error(`lab slurm down left the slurm: section in ${CLUSTER_FILE}`);
}, 180_000);

const SLURM = { script: 'train.py', nodes: 3, backend: 'slurm' };

describe('TrainingJobs on the lab Slurm cluster', () => {
  it('what `slurm up` prints sends a job that trains across 3 nodes to Succeeded, a rank per node', async () => {
    expect(login).toMatchObject({ name: 'slurm', hostname: 'gpu-master', user: 'master', slurm: { partition: 'lab' } });
    // The commands, as a user would copy them: a controller, then the job.
    const [controller, apply, ...more] = upPrinted.split('\n').filter((l) => l && !l.startsWith('#'));
    expect(more, upPrinted).toEqual([]);
    const m = /^npx ugro --cluster (\S+) --jobs (\S+) controller$/.exec(controller);
    expect(m, upPrinted).not.toBeNull();
    const [, clusterFile, jobs] = m!;
    expect(clusterFile).toBe(CLUSTER_FILE);
    expect(apply).toBe(`npx ugro --cluster ${clusterFile} --jobs ${jobs} apply -f ${ROOT}/tests/lab/slurm-hello.yaml`);
    rmSync(jobs, { recursive: true, force: true });
    ctl = startController(jobs, [], clusterFile);
    const sent = spawnSync('bash', ['-c', apply], { cwd: ROOT, encoding: 'utf8' });
    expect(sent.status, sent.stderr).toBe(0);
    const st = await waitPhase(jobs, 'slurm-hello', ['Succeeded', 'Failed'], 150_000);
    expect(st.phase, `${st.message}\n${ctl.logText().slice(-3000)}`).toBe('Succeeded');
    expect(st.slurm).toMatchObject({ state: 'COMPLETED' });
    expect(st.slurm?.jobId).toMatch(/^\d+$/);
    expect(st.nodes).toHaveLength(1);
    expect(st.nodes[0]).toMatchObject({ host: 'slurm', state: 'Succeeded' });
    expect([...st.nodes[0].globalRanks].sort()).toEqual([0, 1, 2]);
    const hosts = new Set<string>();
    for (const r of [0, 1, 2]) {
      const logs = ugro(jobs, 'logs', 'slurm-hello', '--rank', String(r));
      expect(logs.code, logs.err).toBe(0);
      const m = new RegExp(`^rank ${r}/3 on (\\S+) backend=gloo`, 'm').exec(logs.out);
      expect(m, logs.out).not.toBeNull();
      hosts.add(m![1]);
    }
    expect([...hosts].sort()).toEqual(['gpu-master', 'gpu1', 'gpu2']);
    const d = ugro(jobs, 'describe', 'job', 'slurm-hello');
    expect(d.out).toMatch(new RegExp(`Slurm: +job ${st.slurm!.jobId} COMPLETED`));
    expect(slurmRunDirs('slurm-hello')).toHaveLength(1);
  });

  it('cancel: Cancelled, no process of the run left on any host, no live Slurm job', async () => {
    const jobs = newJobsDir();
    ctl = startController(jobs, [], CLUSTER_FILE);
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
    ctl = startController(jobs, [], CLUSTER_FILE);
    writeJob(jobs, 'sl-fail', { ...SLURM, args: ['--fail-rank', '1', '--exit-code', '3', '--epochs', '2'] });
    const st = await waitPhase(jobs, 'sl-fail', ['Failed', 'Succeeded'], 150_000);
    expect(st.phase, st.message).toBe('Failed');
    expect(st).toMatchObject({ reason: 'RankFailed', failedRank: 1, exitCode: 3 });
    expect(st.logTail?.join('\n')).toMatch(/rank 1: failing on purpose with exit code 3/);
    await waitFor('nothing of it left', () => runProcesses(st.runId!).length === 0 || undefined, 15_000);
  });

  it('a controller restarted mid-run re-adopts the Slurm job: no second submission, and it Succeeds', async () => {
    const jobs = newJobsDir();
    ctl = startController(jobs, [], CLUSTER_FILE);
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
    ctl = startController(jobs, [], CLUSTER_FILE);
    const st = await waitPhase(jobs, 'sl-adopt', ['Succeeded', 'Failed'], 150_000);
    expect(st.phase, st.message).toBe('Succeeded');
    expect(st.slurm?.jobId).toBe(running.slurm!.jobId);
    expect(st.attempt).toBe(1);
    expect(slurmRunDirs('sl-adopt')).toEqual([running.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')]);
    expect((await squeue()).filter((l) => l.includes(' sl-adopt-'))).toHaveLength(1);
  });
});

/** What the real sbatch makes of a line: the options it sets (`sbatch -v`), or its complaint. */
type SbatchSays = { options: string[] } | { ambiguous: string[] } | { unknown: true } | { other: string };

/**
 * sbatch -v LINE job.sh with a cluster config of its own (a controller that does not answer): it
 * prints the options it read before it tries to submit, and is stopped after 3 s.
 */
function sbatchSays(dir: string, line: string): Promise<SbatchSays> {
  return new Promise((res) => {
    const c = spawn('sbatch', ['-v', ...line.trim().split(/\s+/), 'job.sh'], {
      cwd: dir,
      env: { ...process.env, SLURM_CONF: join(dir, 'slurm.conf') },
      timeout: 3000,
    });
    let out = '';
    c.stdout.on('data', (b) => (out += b));
    c.stderr.on('data', (b) => (out += b));
    c.on('close', () => {
      const ambiguous = /is ambiguous; possibilities:(.*)/.exec(out);
      const block = /defined options\n(.*)end of defined options/s.exec(out);
      if (ambiguous) res({ ambiguous: [...ambiguous[1].matchAll(/'--([a-z-]+)'/g)].map((x) => x[1]) });
      else if (/unrecognized option|invalid option/.test(out)) res({ unknown: true });
      else if (block)
        res({
          options: [...block[1].matchAll(/^sbatch: ([a-z-]+) +: /gm)].map((x) => x[1]).filter((o) => o !== 'verbose'),
        });
      else res({ other: out.slice(0, 300) });
    });
  });
}

describe('extra #SBATCH lines, against the real sbatch', () => {
  it('sbatch-options.ts finds the option UGRO owns that sbatch reads in each spelling, and no other', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-sbatch-'));
    writeFileSync(
      join(dir, 'slurm.conf'),
      'ClusterName=x\nSlurmctldHost=localhost\nNodeName=n1\nPartitionName=p Nodes=n1\n',
    );
    writeFileSync(join(dir, 'job.sh'), '#!/bin/sh\ntrue\n');
    const lines = [
      ...['--output=/tmp/x', '--out=/tmp/x', '--outp=x', '--output /tmp/x', '--out /tmp/x', '--chd=/tmp'],
      ...['--sig=USR1@5', '--job=other', '--part=debug', '--acco=x', '--ni=5', '--tim=5', '--gpus-per-n=1'],
      ...['--req', '--no-r', '--kill=yes', '--pars', '--exp=ALL', '--ntasks-per-n=1', '--tasks-per-node=2'],
      ...['--tasks=2', '--arr=1-4', '--test', '--clusters=other', '--o=x', '--n=1', '--nod=1', '-o x', '-ox'],
      ...['-Ho x', '-vsJ name', '-e err', '-D /tmp', '-N 2', '-n 2', '-t 5', '-p gpu', '-A acct', '-q q', '-W'],
      ...['-M other', '-a 1-3', '-CJo', '-koff', '--mem=0', '--constraint=a100', '--gpus=2', '--gres=gpu:1'],
      ...['--nodelist=gpu1', '--export-file=/etc/hostname', '--time-min=5', '--hold', '--exclusive', '--tmp=10G'],
      ...['--mem-per-cpu=1G', '--cpus-per-task=4', '--open-mode=append', '--wait-all-nodes=1', '--const=a100'],
      ...['--reserv=maint', '--workdir=/tmp'],
    ];
    const says = await Promise.all(lines.map((l) => sbatchSays(dir, l)));
    const owns = (o: string) => sbatchOwnedOption(`--${o}`) !== undefined;
    const disagree = lines.flatMap((line, i) => {
      const s = says[i];
      const ours = sbatchOwnedOption(line)?.option;
      let agree: boolean;
      if ('options' in s) {
        const theirs = s.options.filter(owns);
        agree = theirs.length ? theirs.includes(ours ?? '') : ours === undefined;
      } else if ('ambiguous' in s) agree = s.ambiguous.some(owns) === (ours !== undefined);
      else agree = 'unknown' in s && ours === undefined;
      return agree ? [] : [`${line}: sbatch ${JSON.stringify(s)}, UGRO ${ours ?? 'none'}`];
    });
    expect(disagree).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });
});
