/**
 * The controller's one loop with a Slurm cluster in the cluster file, without a lab: the real
 * Controller and store, BackendRouter routing the inventory's hosts to in-memory hosts
 * (FakeHosts) and the Slurm cluster's login host to SlurmBackend, whose scripts run for real on
 * this machine against recording stand-ins for Slurm's commands (the test says what squeue
 * lists). What it proves: the controller's wiring (placement on the cluster, the Slurm launch
 * request, observing through the login host) takes a `backend: slurm` job through Queued
 * (PENDING), Running and Succeeded with one sbatch; a restarted controller re-adopts it without
 * submitting again; a cancel reaches scancel. tests/lab/slurm.test.ts does the same on real Slurm.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { Cluster } from '../../config/cluster.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import { BackendRouter } from '../../controller/backends/router.ts';
import { SlurmBackend } from '../../controller/backends/slurm/backend.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { Controller } from '../../controller/loop/controller.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS, jobYaml } from './job-fixtures.ts';
import { fakeSlurm, LocalSlurmTransport, slurmCluster } from './slurm-fixtures.ts';

const controllers: Controller[] = [];
afterEach(async () => {
  for (const c of controllers.splice(0)) await c.stop();
});

function world() {
  const fake = fakeSlurm();
  const root = mkdtempSync(join(tmpdir(), 'ugro-slurm-ctl-'));
  const settings = { ...slurmCluster().slurm!.slurm, pollMs: 60_000 };
  const login = localHost(join(root, 'login'), 'hpc', { slurm: settings, role: 'worker', python: '/usr/bin/python3' });
  const cluster: Cluster = { ...CLUSTER, slurm: { ...login, slurm: settings } };
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-slurm-jobs-'));
  const scripts = mkdtempSync(join(tmpdir(), 'ugro-scripts-'));
  writeFileSync(join(scripts, 'train.py'), 'print("hi")\n');
  const start = async () => {
    const hosts = new FakeHosts(HOSTS, { cluster: CLUSTER });
    const slurm = new SlurmBackend(new LocalSlurmTransport(fake.bin), new SshBackend(new LocalTransport()), {
      shareMs: 0,
    });
    const runtime = new BackendRouter([
      { name: 'slurm', serves: (h) => h.slurm !== undefined, backend: slurm },
      { name: 'ssh', serves: () => true, backend: new SshBackend(hosts) },
    ]);
    const ctl = new Controller({
      cluster,
      jobsDir: jobs,
      runtime,
      log: memoryLogger(),
      scriptsDir: scripts,
      owner: 'test-controller',
      watch: async () => ({ close: async () => {} }),
      lock: async () => ({ release: async () => {} }),
      every: () => () => {},
      queueTimers: { setTimeout: () => ({ unref() {} }) as unknown as NodeJS.Timeout, clearTimeout: () => {} },
    });
    controllers.push(ctl);
    await ctl.start();
    await ctl.idle();
    return ctl;
  };
  const status = (name: string): JobStatus | undefined => {
    const f = join(jobs, `${name}.status.yaml`);
    return existsSync(f) ? (parse(readFileSync(f, 'utf8')) as JobStatus) : undefined;
  };
  const pass = async (ctl: Controller, name: string) => {
    ctl.enqueue(name);
    await ctl.idle();
    return status(name);
  };
  const runDir = (s: JobStatus) => join(login.paths.runs, s.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2'));
  return { fake, login, jobs, start, status, pass, runDir };
}

describe('the controller with a Slurm cluster (stand-in Slurm commands)', () => {
  it('Queued while PENDING, Running, Succeeded: one sbatch, observed through the login host', async () => {
    const w = world();
    const ctl = await w.start();
    writeFileSync(join(w.jobs, 'sj.yaml'), jobYaml('sj', { script: 'train.py', nodes: 3, backend: 'slurm' }));
    let s = await w.pass(ctl, 'sj');
    expect(s).toMatchObject({ phase: 'Starting', nodes: [{ host: 'hpc' }] });
    const sbatch = w.fake.calls().filter((c) => c.startsWith('sbatch | --parsable'));
    expect(sbatch).toEqual(['sbatch | --parsable | job.sbatch']);
    const script = readFileSync(join(w.fake.state, 'sbatch-100.sh'), 'utf8');
    expect(script).toContain('#SBATCH --nodes=3');
    expect(script).toContain(`\n  ${join(w.login.paths.scripts, 'train.py')}\n`);
    expect(script).toContain('ugro_python=/usr/bin/python3');
    // scripts/ went to the login host's scripts path (shared with the nodes) before the submit.
    expect(existsSync(join(w.login.paths.scripts, 'train.py'))).toBe(true);

    w.fake.setQueue([`100|PENDING|Resources||${s!.runId}`]);
    s = await w.pass(ctl, 'sj');
    expect(s).toMatchObject({ phase: 'Queued', reason: 'SlurmPending', slurm: { jobId: '100', state: 'PENDING' } });

    w.fake.setQueue([`100|RUNNING|None|n[1-3]|${s!.runId}`]);
    writeFileSync(join(w.runDir(s!), 'ranks'), '0 0 0 11 1\n1 0 1 12 1\n2 0 2 13 1\n');
    s = await w.pass(ctl, 'sj');
    expect(s).toMatchObject({ phase: 'Running', nodes: [{ host: 'hpc', globalRanks: [0, 1, 2] }] });

    w.fake.setQueue([`100|COMPLETED|None|n[1-3]|${s!.runId}`]);
    writeFileSync(join(w.runDir(s!), 'exit_code'), '0\n');
    s = await w.pass(ctl, 'sj');
    expect(s).toMatchObject({ phase: 'Succeeded', slurm: { state: 'COMPLETED' } });
    expect(w.fake.calls().filter((c) => c.startsWith('sbatch | --parsable'))).toHaveLength(1);
  });

  it('a restarted controller re-adopts the running Slurm job, submitting nothing', async () => {
    const w = world();
    let ctl = await w.start();
    writeFileSync(join(w.jobs, 'sj.yaml'), jobYaml('sj', { script: 'train.py', nodes: 2, backend: 'slurm' }));
    const first = await w.pass(ctl, 'sj');
    w.fake.setQueue([`100|RUNNING|None|n[1-2]|${first!.runId}`]);
    writeFileSync(join(w.runDir(first!), 'ranks'), '0 0 0 11 1\n1 0 1 12 1\n');
    expect(await w.pass(ctl, 'sj')).toMatchObject({ phase: 'Running' });
    await ctl.stop();
    controllers.splice(controllers.indexOf(ctl), 1);
    ctl = await w.start();
    const s = await w.pass(ctl, 'sj');
    expect(s).toMatchObject({ phase: 'Running', attempt: 1, runId: first!.runId, slurm: { jobId: '100' } });
    expect(w.fake.calls().filter((c) => c.startsWith('sbatch | --parsable'))).toHaveLength(1);
  });

  it('cancel: scancel with TERM first, then Cancelled', async () => {
    const w = world();
    const ctl = await w.start();
    writeFileSync(join(w.jobs, 'sj.yaml'), jobYaml('sj', { script: 'train.py', nodes: 2, backend: 'slurm' }));
    const first = await w.pass(ctl, 'sj');
    w.fake.setQueue([`100|RUNNING|None|n[1-2]|${first!.runId}`]);
    writeFileSync(join(w.fake.state, 'on-scancel'), `100|CANCELLED|None|n[1-2]|${first!.runId}\n`);
    await w.pass(ctl, 'sj');
    writeFileSync(
      join(w.jobs, 'sj.control.yaml'),
      `cancel: { specHash: "${first!.specHash}", requestedAt: "2026-11-30T01:00:00.000Z", graceSeconds: 2 }\n`,
    );
    const s = await w.pass(ctl, 'sj');
    expect(w.fake.calls().filter((c) => c.startsWith('scancel'))).toEqual(['scancel | --signal=TERM | --full | 100']);
    expect(readFileSync(join(w.runDir(first!), 'cancelled'), 'utf8')).toBe('cancelled\n');
    expect((await w.pass(ctl, 'sj'))?.phase ?? s?.phase).toBe('Cancelled');
  });
});
