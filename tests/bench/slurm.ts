/**
 * Bench section "slurm", on the lab with its Slurm cluster (`npm run lab -- up`, then
 * `npm run lab -- slurm up`; this brings Slurm up itself when it is down, and takes it down
 * again then). Two figures:
 *
 *  - submit -> RUNNING: the Slurm backend's launch of a 3-node job (the batch script written
 *    over sftp, sbatch through slurm/submit.sh) until squeue says RUNNING, against UGRO's own SSH
 *    launch of the same job (launch.sh on the 3 hosts in parallel, until every runner is started:
 *    what RUNNING means there). One run each, warm SSH connections, and their ratio.
 *  - observing 1000 Slurm jobs: 1000 held jobs of the login user, then the one squeue call a
 *    resync makes for all of them (slurm/squeue.sh over SSH: wall ms and bytes), and the parse.
 *
 * Run alone:   flock /run/lock/ugro-labtests.lock node --import tsx tests/bench/slurm.ts [--jobs N]
 * From code:   import { runSlurmBench } from './slurm.ts'; await runSlurmBench({ jobs: 1000 })
 *              (or slurmSubmitVsSsh() / slurmObserveCost(n) on their own, with a SlurmLab)
 * Both print their lines (prefix `slurm:`) and return the numbers.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { allHosts, type Cluster, type Host, parseCluster } from '../../config/cluster.ts';
import { readTree } from '../../config/hash.ts';
import { type RunMeta, runDirName, runIdOf } from '../../controller/api/run.ts';
import { parseTrainingJob, specHash, type TrainingJob } from '../../controller/api/trainingjob.ts';
import { SlurmBackend } from '../../controller/backends/slurm/backend.ts';
import { snapshotOf } from '../../controller/backends/slurm/states.ts';
import { SshSlurmTransport } from '../../controller/backends/slurm/transport.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import { SshTransport } from '../../controller/backends/ssh/transport.ts';
import { checkpointDir, torchrunArgv, trainingTarget, ugroEnv } from '../../controller/core/launch.ts';
import { CLUSTER_FILE, ROOT } from '../lab/controller-harness.ts';

const LAB_SH = `${ROOT}/tests/lab/lab.sh`;
const say = (line: string) => console.log(`slurm: ${line}`);
const ms = (x: number) => `${Math.round(x * 10) / 10} ms`;

/** The same job both ways: the real train.py, each rank printing its argv and exiting. */
const SPEC = { script: 'train.py', args: ['--echo-args', '--model', 'tiny-mlp'], nodes: 3 };
const SSH_PORT = 29660;

export interface SlurmLab {
  cluster: Cluster;
  login: Host;
  pool: SshPool;
  ssh: SshBackend;
  slurm: SlurmBackend;
  /** Slurm was down and this brought it up: take it down again at close. */
  close(): Promise<void>;
}

/** The lab's cluster with gpu-master as the Slurm login host, Slurm up, warm connections. */
export async function openSlurmLab(): Promise<SlurmLab> {
  const status = spawnSync('bash', [LAB_SH, 'slurm', 'status'], { encoding: 'utf8' });
  const started = status.status !== 0;
  if (started) {
    const up = spawnSync('bash', [LAB_SH, 'slurm', 'up'], { encoding: 'utf8', timeout: 300_000 });
    if (up.status !== 0) throw new Error(`lab slurm up failed: ${up.stderr}`);
  }
  const text =
    `${readFileSync(CLUSTER_FILE, 'utf8')}\nslurm:\n  name: slurm\n` +
    '  login: { hostname: gpu-master, ip: 10.250.77.10, user: master }\n' +
    '  partition: lab\n  python: /usr/bin/python3\n  poll_seconds: 1\n';
  const parsed = parseCluster(text, CLUSTER_FILE);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  const cluster = parsed.value;
  const pool = new SshPool(allHosts(cluster));
  const ssh = new SshBackend(new SshTransport(pool, cluster));
  const slurm = new SlurmBackend(new SshSlurmTransport(pool), ssh);
  await Promise.all(allHosts(cluster).map((h) => pool.host(h.name).ensureConnected()));
  return {
    cluster,
    login: cluster.slurm!,
    pool,
    ssh,
    slurm,
    async close() {
      pool.close();
      if (started) spawnSync('bash', [LAB_SH, 'slurm', 'down'], { encoding: 'utf8', timeout: 120_000 });
    },
  };
}

function benchJob(name: string): TrainingJob {
  const text =
    `apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata: { name: ${name} }\n` +
    `spec: ${JSON.stringify(SPEC)}\n`;
  const r = parseTrainingJob(text);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}

const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

/** submit -> RUNNING on Slurm against UGRO's SSH launch of the same job (one run each). */
export async function slurmSubmitVsSsh(lab: SlurmLab): Promise<{ slurmMs: number; sshMs: number; ratio: number }> {
  const { cluster, login, ssh, slurm } = lab;
  const stamp = Date.now().toString(36);
  const createdAt = new Date().toISOString();
  const scripts = `${ROOT}/scripts`;
  const hash = readTree(scripts).hash;
  // scripts/ deployed first (both sides need train.py), so neither pays for it below.
  await Promise.all([...cluster.hosts, login].map((h) => ssh.syncScripts(h, scripts, hash)));

  // UGRO's own SSH launch: launch.sh on the 3 hosts in parallel, until every runner started.
  const sj = benchJob(`bench-ssh-${stamp}`);
  const sh = specHash(sj.spec);
  const runId = runIdOf(sj.metadata.name, sh, 1);
  const dir = runDirName(sj.metadata.name, sh, 1);
  const rdzv = cluster.hosts[0];
  const reqs = cluster.hosts.map((h, i) => {
    const n = {
      host: h,
      nodeRank: i,
      nnodes: 3,
      nproc: 1,
      rdzvAddr: rdzv.address,
      port: SSH_PORT,
      runId,
      runDir: posix.join(h.paths.runs, dir),
      attempt: 1,
      rdzvTimeoutSeconds: 60,
    };
    const ck = checkpointDir(sj, h);
    const meta: RunMeta = {
      job: sj.metadata.name,
      runId,
      specHash: sh,
      attempt: 1,
      host: h.name,
      nodeRank: i,
      nnodes: 3,
      nprocPerNode: 1,
      hosts: cluster.hosts.map((x) => x.name),
      rdzvEndpoint: `${rdzv.address}:${SSH_PORT}`,
      masterPort: SSH_PORT,
      createdAt,
    };
    return {
      h,
      req: {
        dir,
        rdzvAddr: rdzv.address,
        meta,
        argv: torchrunArgv(sj, n),
        ugroEnv: ugroEnv(sj, n, ck.ok ? ck.path : '/tmp'),
        jobEnv: {},
        ...(i === 0 ? { checkPort: SSH_PORT } : {}),
      },
    };
  });
  const t0 = performance.now();
  await Promise.all(reqs.map(({ h, req }) => ssh.launch(h, req)));
  const sshMs = performance.now() - t0;

  // Slurm: the batch script over sftp, sbatch, then squeue until RUNNING (polled every 50 ms).
  const lj = benchJob(`bench-slurm-${stamp}`);
  const lh = specHash(lj.spec);
  const lrun = runIdOf(lj.metadata.name, lh, 1);
  const ldir = runDirName(lj.metadata.name, lh, 1);
  const ln = {
    host: login,
    nodeRank: 0,
    nnodes: 1,
    nproc: 1,
    rdzvAddr: login.address,
    port: 29500,
    runId: lrun,
    runDir: posix.join(login.paths.runs, ldir),
    attempt: 1,
    rdzvTimeoutSeconds: 60,
  };
  const lck = checkpointDir(lj, login);
  const lmeta: RunMeta = {
    job: lj.metadata.name,
    runId: lrun,
    specHash: lh,
    attempt: 1,
    host: login.name,
    nodeRank: 0,
    nnodes: 1,
    nprocPerNode: 1,
    hosts: [login.name],
    rdzvEndpoint: `${login.address}:29500`,
    masterPort: 29500,
    createdAt,
  };
  const t1 = performance.now();
  const { pid: jobId } = await slurm.launch(login, {
    dir: ldir,
    rdzvAddr: login.address,
    meta: lmeta,
    argv: [],
    ugroEnv: ugroEnv(lj, ln, lck.ok ? lck.path : '/tmp'),
    jobEnv: {},
    training: { job: lj, target: trainingTarget(lj, login), rdzvTimeoutSeconds: 60 },
  });
  const submitMs = performance.now() - t1;
  let slurmMs = Number.NaN;
  for (let i = 0; i < 1200; i++) {
    const { snapshot } = await slurm.snapshot(login, { maxAgeMs: 0 });
    const s = snapshot.byId.get(String(jobId))?.state;
    if (s === 'RUNNING' || s === 'COMPLETING' || s === 'COMPLETED') {
      slurmMs = performance.now() - t1;
      break;
    }
    await sleep(50);
  }
  say(
    `submit -> RUNNING on the lab's Slurm: ${ms(slurmMs)} ` +
      `(sbatch answered after ${ms(submitMs)}; squeue polled every 50 ms)`,
  );
  say(`UGRO's SSH launch of the same job (3 hosts, runners started): ${ms(sshMs)}`);
  const ratio = slurmMs / sshMs;
  say(`ratio Slurm / SSH: ${Math.round(ratio * 100) / 100}`);
  // Both stopped and their run dirs removed.
  await Promise.all(
    reqs.map(({ h }) => ssh.stop(h, { dir, runId, graceSeconds: 1, reason: 'cancelled' }).catch(() => undefined)),
  );
  await slurm.stop(login, { dir: ldir, runId: lrun, graceSeconds: 1, reason: 'cancelled' }).catch(() => undefined);
  await Promise.all(
    cluster.hosts.map((h) => lab.pool.exec(h.name, ['rm', '-rf', '--', posix.join(h.paths.runs, dir)])),
  );
  await lab.pool.exec(login.name, ['rm', '-rf', '--', posix.join(login.paths.runs, ldir)]);
  return { slurmMs, sshMs, ratio };
}

/** One squeue call (a resync's) over `n` jobs of the login user: wall ms, bytes, and the parse alone. */
export async function slurmObserveCost(
  lab: SlurmLab,
  n = 1000,
): Promise<{ jobs: number; ms: number; bytes: number; parseMs: number }> {
  const { login, slurm, pool } = lab;
  const name = `ugro-bench-${Date.now().toString(36)}`;
  // n held jobs (PENDING, JobHeldUser), submitted on the login host in one exec.
  const sub = await pool.exec(
    login.name,
    [
      'sh',
      '-c',
      'i=0; while [ "$i" -lt "$1" ]; do ' +
        'sbatch --hold --parsable --job-name="$2-$i" --output=/dev/null --wrap=true || exit 1; i=$((i + 1)); done',
      'ugro-bench',
      String(n),
      name,
    ],
    { timeoutMs: 600_000 },
  );
  const ids = sub.stdout
    .split('\n')
    .filter((l) => /^\d+/.test(l))
    .map((l) => l.split(';')[0]);
  if (sub.code !== 0 || ids.length !== n)
    throw new Error(`submitting ${n} held jobs failed: ${sub.stderr.slice(-500)}`);
  try {
    const runs: { ms: number; bytes: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const before = slurm.stats.squeueBytes;
      const t = performance.now();
      const { snapshot } = await slurm.snapshot(login, { maxAgeMs: 0 });
      runs.push({ ms: performance.now() - t, bytes: slurm.stats.squeueBytes - before });
      if (snapshot.error) throw new Error(snapshot.error);
      if (snapshot.byId.size < n) throw new Error(`squeue listed ${snapshot.byId.size} jobs, expected ${n}`);
    }
    const res = await pool.exec(login.name, [
      'sh',
      '-c',
      'squeue --me --noheader --states=all --format="%i|%T|%r|%N|%j"',
    ]);
    const text = `@@squeue\nrc=0\n${res.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => `row=${l}`)
      .join('\n')}\n@@end\n`;
    const tp = performance.now();
    for (let i = 0; i < 20; i++) snapshotOf(text, Date.now());
    const parseMs = (performance.now() - tp) / 20;
    const best = runs.reduce((a, b) => (b.ms < a.ms ? b : a));
    say(
      `observing ${n} Slurm jobs: one squeue call per resync, ${ms(best.ms)} (best of 3; ` +
        `${runs.map((r) => Math.round(r.ms)).join(', ')} ms), ` +
        `${best.bytes} bytes (${Math.round(best.bytes / n)} per job), ` +
        `parse ${ms(parseMs)}`,
    );
    return { jobs: n, ms: best.ms, bytes: best.bytes, parseMs };
  } finally {
    for (let i = 0; i < ids.length; i += 500)
      await pool.exec(login.name, ['scancel', ...ids.slice(i, i + 500)]).catch(() => undefined);
  }
}

export async function runSlurmBench(o: { jobs?: number } = {}): Promise<void> {
  const lab = await openSlurmLab();
  try {
    await slurmSubmitVsSsh(lab);
    await slurmObserveCost(lab, o.jobs ?? 1000);
  } finally {
    await lab.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const i = process.argv.indexOf('--jobs');
  const jobs = i > 0 ? Number(process.argv[i + 1]) : 1000;
  runSlurmBench({ jobs }).then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
