/**
 * `npm run bench`: numbers for issue 3, measured on the 3-host lab (tests/lab/README.md).
 * Not a pass/fail test: it prints what it measured, and whether the issue's goals are met.
 * Exit 0 when it could measure; exit 2 with a clear message when the lab is not up.
 *
 *   1. Launch latency: job file appears in the watched jobs dir -> EVERY rank process started on
 *      all 3 hosts, for a real `ugro controller`, beside a bare parallel ssh launch of the same
 *      torchrun command over warm SshPool connections. p50/p99/min/max and the ratio.
 *   2. Stop latency: `ugro cancel NAME`, and deleting the job file, on a running job -> no
 *      process of the run left on any host.
 *   3. Controller RSS and idle CPU with 1000 job files, and its startup time to settle them.
 *
 * Environment: BENCH_LAUNCHES (default 20), BENCH_STOPS (samples per stop method, default 4),
 * BENCH_JOBS (default 1000), BENCH_IDLE_S (idle window, default 125). Results are printed and
 * written to .tmp/bench-<date>.json.
 *
 * How "rank process started" is detected (honest and cheap, from outside the controller):
 * scripts/runtime/rank.sh is the program torchrun --no_python starts for each rank (the rank's
 * process itself; it then runs the training script as its child), and its FIRST command appends
 * `$RANK $LOCAL_RANK $GROUP_RANK $$ $(date +%s%N)` to RUN_DIR/ranks. That timestamp is taken by
 * the rank process, on the host, so the measurement does not depend on how fast we poll: we
 * poll the file only to learn when all ranks are there, and use the timestamps inside it. The
 * bare launch runs the very same rank.sh, so both sides are measured by the same clock and code.
 * Clocks: the lab hosts are network namespaces on this machine and share its kernel clock, so
 * a host-side `date +%s%N` compares directly with Date.now() here (preflight checks it).
 * The "launched_at" file (written by launch.sh, and by the bare command, just before setsid
 * starts torchrun) splits each launch into dispatch (ours) and torchrun start + rendezvous
 * (torch's, the same for both).
 *
 * "No process of the run left" is the marker stop.sh itself uses: no process whose environment
 * has UGRO_RUN_ID=<run id> (zombies have an empty environ and do not count). The lab hosts share
 * this machine's PID namespace, so /proc here shows every host's processes: the bench scans it
 * every 20 ms (an ssh round trip per host per poll would be coarser and would load the hosts'
 * sshd during the stop), then confirms over ssh with the lab tests' markedProcesses.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import { type RunMeta, runDirName, runIdOf } from '../../controller/api/run.ts';
import { parseTrainingJob, type TrainingJob } from '../../controller/api/trainingjob.ts';
import { type NodeLaunch, torchrunArgv, ugroEnv } from '../../controller/core/launch.ts';
import { HostRuntime, SshTransport } from '../../controller/hosts/runtime.ts';
import { runtimeScripts } from '../../controller/hosts/scripts.ts';
import { SshPool } from '../../controller/hosts/ssh.ts';
import {
  CLUSTER_FILE,
  job,
  labCluster,
  markedProcesses,
  newJobsDir,
  ROOT,
  readStatus,
  startController,
  stopController,
  waitFor,
  waitPhase,
} from '../lab/controller-harness.ts';
import {
  findRunDir,
  markedPids,
  nsTextToMs,
  poll,
  procStatusKiB,
  readRanks,
  readText,
  round,
  type Summary,
  sleep,
  summarize,
  table,
  treeUsage,
} from './lib.ts';

const intEnv = (k: string, d: number) => {
  const v = process.env[k];
  if (v === undefined || v === '') return d;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};
const N_LAUNCH = intEnv('BENCH_LAUNCHES', 20);
const N_STOP = intEnv('BENCH_STOPS', 4);
const N_JOBS = intEnv('BENCH_JOBS', 1000);
// Two resyncs (60 s apart): the first after start runs cold (JIT, caches), the second is the steady state.
const IDLE_S = intEnv('BENCH_IDLE_S', 125);

/** Every name, run id and directory the bench creates starts with this (cleanup keys on it). */
const PREFIX = 'ubench-';
/**
 * The launched job: the real train.py (a `script:` job, so the controller's scripts-sync path
 * runs) with --echo-args: each rank imports torch, prints its argv and exits 0. Not a training
 * step because train.py's DDP/gloo teardown on the lab's torch 1.13 / Python 3.11 can deadlock
 * at interpreter exit (ProcessGroupGloo::~ProcessGroupGloo joins a gloo thread that waits for
 * the GIL; seen in 2 of the first 6 launches while this bench was written, under its load),
 * which leaves that rank, and so the job, Running forever.
 * What a rank does after it has started does not change the launch latency measured here.
 */
const LAUNCH_SPEC = { script: 'train.py', args: ['--echo-args', '--model', 'tiny-mlp'], nodes: 3 };
/** Long-running training for the stop samples. */
const LONG_SPEC = {
  script: 'train.py',
  args: ['--model', 'tiny-mlp', '--epochs', '1000', '--sleep', '0.05'],
  nodes: 3,
};
const BARE_PORT = 29650;

class LabDown extends Error {}

const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 23)}] ${s}\n`);
const pad = (i: number, w = 2) => String(i).padStart(w, '0');

// ---------------------------------------------------------------------------------------------
// Setup, preflight, cleanup

const cleanups: { what: string; fn: () => unknown }[] = [];
let cleaning: Promise<void> | undefined;
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c.fn();
      } catch (e) {
        log(`cleanup (${c.what}) failed: ${(e as Error).message}`);
      }
    }
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanupAll().then(() => process.exit(130));
  });
}

function sh(cmd: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function machine() {
  const meminfo = readText('/proc/meminfo') ?? '';
  return {
    nproc: Number(sh('nproc', []).out.trim()),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memGiB: round(totalmem() / 2 ** 30, 1),
    memAvailableGiB: round(Number(/MemAvailable:\s+(\d+)/.exec(meminfo)?.[1] ?? 0) / 2 ** 20, 1),
    node: process.version,
    kernel: sh('uname', ['-r']).out.trim(),
    loadavgAtStart: (readText('/proc/loadavg') ?? '').split(' ').slice(0, 3).join(' '),
  };
}

const cluster = (() => {
  if (!existsSync(CLUSTER_FILE)) return undefined;
  return labCluster();
})();
let pool: SshPool;
let hosts: Host[];

/** Kill (as root, here: one PID namespace) every process of a bench run, then remove bench files on the hosts. */
async function scrubHosts(): Promise<void> {
  for (const pid of markedPids(PREFIX, true)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await Promise.all(
    hosts.map((h) =>
      pool.exec(
        h.name,
        [
          'sh',
          '-c',
          'rm -rf -- "$1"/ubench-* "$2"/ubench-* "$3"/ubench-*',
          'ubench-scrub',
          h.paths.runs,
          h.paths.checkpoints,
          h.paths.project,
        ],
        { timeoutMs: 30_000 },
      ),
    ),
  );
}

async function preflight(): Promise<void> {
  if (!cluster)
    throw new LabDown(
      `the lab is not up: ${CLUSTER_FILE} is missing. Run \`npm run lab -- up\` (bash tests/lab/lab.sh up), then \`npm run bench\`.`,
    );
  const st = sh('bash', [join(ROOT, 'tests/lab/lab.sh'), 'status']);
  if (st.code !== 0)
    throw new LabDown(
      `the lab is not up (lab.sh status exit ${st.code}). Run \`npm run lab -- up\`, then \`npm run bench\`.\n${st.out}`,
    );
  if (process.getuid?.() !== 0)
    throw new LabDown(
      "the bench needs root, like the lab: it reads the lab hosts' run directories and /proc/PID/environ directly",
    );
  hosts = cluster.hosts;
  if (hosts.length < 3)
    throw new LabDown(
      `the bench needs the 3-host lab; ${CLUSTER_FILE} has ${hosts.length} host(s). Run \`npm run lab -- up\``,
    );
  hosts = hosts.slice(0, 3);
  pool = new SshPool(hosts);
  cleanups.push({ what: 'close ssh pool', fn: () => pool.close() });
  // Shared clock, PID namespace and filesystem (see the header): check rather than assume.
  const myPidNs = readlinkSync('/proc/self/ns/pid');
  for (const h of hosts) {
    const before = Date.now();
    let r: Awaited<ReturnType<typeof pool.exec>>;
    try {
      r = await pool.exec(
        h.name,
        [
          'sh',
          '-c',
          'date +%s%N; readlink /proc/self/ns/pid; mkdir -p "$1" && echo "$2" > "$1/.ubench-probe"',
          'x',
          h.paths.project,
          String(before),
        ],
        { timeoutMs: 15_000 },
      );
    } catch (e) {
      throw new LabDown(
        `the lab is not reachable over ssh (${h.name}: ${(e as Error).message}). Run \`npm run lab -- up\`.`,
      );
    }
    const after = Date.now();
    const [ts, ns] = r.stdout.split('\n');
    const at = nsTextToMs(ts ?? '');
    if (r.code !== 0 || at === undefined)
      throw new LabDown(`${h.name}: probe failed (exit ${r.code}): ${r.stderr.trim()}`);
    if (at < before - 5 || at > after + 5)
      throw new Error(
        `${h.name}: its clock (${at}) is not this machine's (${before}..${after}); host timestamps would not compare`,
      );
    if (ns !== myPidNs)
      throw new Error(
        `${h.name}: not in this machine's PID namespace (${ns} vs ${myPidNs}); the bench reads /proc here`,
      );
    const probe = join(h.paths.project, '.ubench-probe');
    if (readText(probe)?.trim() !== String(before))
      throw new Error(`${h.name}: ${probe} written there is not visible here; the bench reads run directories here`);
    rmSync(probe, { force: true });
  }
  const others = sh('pgrep', ['-af', 'ugro.mjs.* controller']).out.trim();
  if (others) log(`warning: other ugro controller processes are running and may compete for the hosts:\n${others}`);
  await scrubHosts();
  cleanups.push({ what: 'scrub hosts', fn: scrubHosts });
}

// ---------------------------------------------------------------------------------------------
// 1. Launch latency

interface LaunchSample {
  /** t0 -> the last rank's own start timestamp. */
  totalMs: number;
  /** t0 -> the last host's launched_at (just before setsid starts torchrun). */
  dispatchMs: number;
  /** last launched_at -> last rank start: torchrun start (python, torch import) + c10d rendezvous. */
  torchrunMs: number;
  /** t0 -> the first host's launched_at. */
  firstLaunchedMs: number;
  /** Controller only: t0 -> the reconcile that decided the launch (run meta createdAt, ms precision). */
  decideMs?: number;
  /** Bare only: how long the parallel ssh exec calls took to return. */
  execMs?: number;
  /** Measured launches: stopping the run right after rank start (controller: unlink the job file; bare: SIGTERM to its processes) -> no process of it left. */
  stopMs?: number;
  /** Controller, measured launches: unlink -> status file removed (the controller done with the job). */
  statusGoneMs?: number;
}

/** What to show when a controller job does not do what the bench waits for. */
function diag(jobsDir: string, ctl: ReturnType<typeof startController>, name: string): string {
  const parts = [`status: ${JSON.stringify(readStatus(jobsDir, name))}`];
  for (const h of hosts) {
    const dir = findRunDir(h.paths.runs, name);
    if (!dir) continue;
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.log') || x === 'exit_code' || x.endsWith('.exit')))
      parts.push(`--- ${h.name} ${f}:\n${(readText(join(dir, f)) ?? '').split('\n').slice(-8).join('\n')}`);
  }
  parts.push(`--- controller log tail:\n${ctl.logText().split('\n').slice(-20).join('\n')}`);
  return parts.join('\n');
}

/** train.py --echo-args prints `ARGV <json list>`; return it re-serialized (JSON.stringify spacing), or undefined. */
function echoedArgv(log: string): string | undefined {
  const m = /^ARGV (.*)$/m.exec(log);
  try {
    return m ? JSON.stringify(JSON.parse(m[1])) : undefined;
  } catch {
    return undefined;
  }
}

function writeJobAtomic(jobsDir: string, name: string, spec: Record<string, unknown>): number {
  // Like `ugro apply`: write a dot-file (ignored by the watcher), rename into place. The rename
  // is the moment the job appears in the watched dir, so t0 is taken right before it.
  const tmp = join(jobsDir, `.${name}.bench-tmp`);
  writeFileSync(tmp, job(name, spec));
  const t0 = Date.now();
  renameSync(tmp, join(jobsDir, `${name}.yaml`));
  return t0;
}

/** Wait until every host's run dir shows all its ranks started; returns per-host dirs, ranks and launched_at. */
async function waitRanksStarted(
  dirOf: (h: Host) => string | undefined,
  perHost: number,
  what: string,
  timeoutMs = 90_000,
) {
  return poll(
    what,
    () => {
      const res = [];
      for (const h of hosts) {
        const dir = dirOf(h);
        if (!dir) return undefined;
        const ranks = readRanks(dir);
        const launchedAt = nsTextToMs(readText(join(dir, 'launched_at')) ?? '');
        if (ranks.length < perHost || launchedAt === undefined) return undefined;
        res.push({ host: h.name, dir, ranks, launchedAt });
      }
      return res;
    },
    timeoutMs,
    10,
  );
}

function sampleFrom(t0: number, started: Awaited<ReturnType<typeof waitRanksStarted>>): LaunchSample {
  const lastRank = Math.max(...started.flatMap((s) => s.ranks.map((r) => r.atMs)));
  const lastLaunched = Math.max(...started.map((s) => s.launchedAt));
  return {
    totalMs: lastRank - t0,
    firstLaunchedMs: Math.min(...started.map((s) => s.launchedAt)) - t0,
    dispatchMs: lastLaunched - t0,
    torchrunMs: lastRank - lastLaunched,
  };
}

/**
 * One controller launch. `finish`: let the job run to Succeeded and check it (warm-up); else
 * delete the job file as soon as every rank has started (the controller stops the run) and
 * wait until it is gone: rank start is all this measures, and a run's tail (torchrun's 5 s
 * monitor interval) would double the bench's time. Either way the hosts are free afterwards.
 */
async function controllerLaunch(
  jobsDir: string,
  ctl: ReturnType<typeof startController>,
  name: string,
  finish: boolean,
): Promise<LaunchSample> {
  const t0 = writeJobAtomic(jobsDir, name, LAUNCH_SPEC);
  let started: Awaited<ReturnType<typeof waitRanksStarted>>;
  try {
    started = await waitRanksStarted(
      (h) => findRunDir(h.paths.runs, name),
      1,
      `${name}: every rank started (controller)`,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${diag(jobsDir, ctl, name)}`);
  }
  const s = sampleFrom(t0, started);
  const meta = JSON.parse(readText(join(started[0].dir, 'meta.json')) ?? '{}') as { createdAt?: string };
  if (meta.createdAt) s.decideMs = Date.parse(meta.createdAt) - t0;
  if (finish) {
    const st = await waitPhase(jobsDir, name, ['Succeeded', 'Failed'], 120_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${diag(jobsDir, ctl, name)}`);
    });
    if (st.phase !== 'Succeeded') throw new Error(`${name} ${st.phase}\n${diag(jobsDir, ctl, name)}`);
    const argv = started.map((x) => echoedArgv(readText(join(x.dir, `rank-${x.ranks[0].rank}.log`)) ?? ''));
    if (argv.some((a) => a !== JSON.stringify(LAUNCH_SPEC.args)))
      throw new Error(`${name}: ranks did not run train.py ${LAUNCH_SPEC.args.join(' ')}: ${JSON.stringify(argv)}`);
  }
  const runId = readStatus(jobsDir, name)?.runId;
  if (!runId) throw new Error(`${name}: no run id in its status\n${diag(jobsDir, ctl, name)}`);
  const tu = Date.now();
  unlinkSync(join(jobsDir, `${name}.yaml`));
  const gone = await poll(
    `${name}: no process of ${runId} left`,
    () => (markedPids(runId).length === 0 ? Date.now() : undefined),
    60_000,
    20,
  );
  await waitFor(`${name} status removed`, () => !readStatus(jobsDir, name), 60_000, 20);
  if (!finish) Object.assign(s, { stopMs: gone - tu, statusGoneMs: Date.now() - tu });
  return s;
}

/** Bare launch set-up, done once (not timed): rank.sh in place, GLOO interface known, like a person's own script would. */
interface BareHost {
  host: Host;
  base: string;
  ifname?: string;
}
let bareHosts: BareHost[] = [];
let bareJob: TrainingJob;

async function bareSetup(): Promise<void> {
  const parsed = parseTrainingJob(job(`${PREFIX}bare`, LAUNCH_SPEC));
  if (!parsed.ok) throw new Error(`bench spec invalid: ${JSON.stringify(parsed.issues)}`);
  bareJob = parsed.value;
  const rdzv = hosts[0];
  bareHosts = await Promise.all(
    hosts.map(async (h) => {
      const base = posix.join(h.paths.project, `${PREFIX}bare`);
      await pool.exec(h.name, ['mkdir', '-p', base]);
      await pool.host(h.name).writeFile(posix.join(base, 'rank.sh'), runtimeScripts().rank, 0o755);
      // The same interface choice launch.sh makes (route to the rendezvous address, else the interface owning it).
      const r = await pool.exec(h.name, [
        'sh',
        '-c',
        'dev=$(ip -o route get "$1" 2>/dev/null | sed -n "s/.* dev \\([^ ]*\\).*/\\1/p" | head -n 1); if [ -z "$dev" ] || [ "$dev" = lo ]; then dev=$(ip -o addr show to "$1" 2>/dev/null | awk \'{print $2; exit}\'); fi; echo "$dev"',
        'x',
        rdzv.address,
      ]);
      const dev = r.stdout.trim();
      return { host: h, base, ifname: dev && dev !== 'lo' ? dev : undefined };
    }),
  );
}

/**
 * The minimum any launcher must do on each host: make a directory for the logs, note the time,
 * start the same torchrun argv (torchrunArgv/ugroEnv, same rank.sh wrapper) detached with
 * setsid and stdio to a file, so the ssh channel closes at once. One exec per host, in parallel,
 * over the already-connected pool. No meta.json/pid/lock bookkeeping, no port check, no scripts sync.
 */
const BARE_SH =
  'd=$1; shift; mkdir -p "$d" && cd "$d" || exit 1; date +%s%N > launched_at; setsid "$@" </dev/null >torchrun.log 2>&1 &';

/** One bare launch; `finish` as for controllerLaunch (else SIGTERM to the run's processes, as stop.sh does). */
async function bareLaunch(runId: string, finish: boolean): Promise<LaunchSample> {
  const rdzv = hosts[0];
  const cmds = bareHosts.map((b, i) => {
    const runDir = posix.join(b.base, runId);
    const n: NodeLaunch = {
      host: b.host,
      nodeRank: i,
      nnodes: hosts.length,
      nproc: 1,
      rdzvAddr: rdzv.address,
      port: BARE_PORT,
      runId,
      runDir,
      attempt: 1,
      rdzvTimeoutSeconds: Math.min(cluster!.communication.timeoutSeconds, 600),
    };
    const perRunWrapper = posix.join(runDir, 'rank.sh');
    const argv = torchrunArgv(bareJob, n).map((a) => (a === perRunWrapper ? posix.join(b.base, 'rank.sh') : a));
    const env = {
      ...bareJob.spec.env,
      ...ugroEnv(bareJob, n, posix.join(b.host.paths.checkpoints, bareJob.metadata.name)),
      UGRO_RUN_DIR: runDir,
      ...(b.ifname ? { GLOO_SOCKET_IFNAME: b.ifname, NCCL_SOCKET_IFNAME: b.ifname } : {}),
    };
    return { host: b.host.name, argv: ['sh', '-c', BARE_SH, 'ubench-bare', runDir, ...argv], env };
  });
  const t0 = Date.now();
  const res = await Promise.all(cmds.map((c) => pool.exec(c.host, c.argv, { env: c.env, timeoutMs: 30_000 })));
  const execMs = Date.now() - t0;
  res.forEach((r, i) => {
    if (r.code !== 0) throw new Error(`bare launch on ${cmds[i].host} failed (exit ${r.code}): ${r.stderr.trim()}`);
  });
  const dirOf = (h: Host) => posix.join(bareHosts.find((b) => b.host.name === h.name)!.base, runId);
  const started = await waitRanksStarted(dirOf, 1, `${runId}: every rank started (bare)`);
  const s = { ...sampleFrom(t0, started), execMs };
  const tk = Date.now();
  if (!finish) {
    for (const pid of markedPids(runId)) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
  }
  // Wait until no process of the run is left; after a full run, check every rank exited 0 (the launch was real).
  const gone = await poll(
    `${runId} finished`,
    () => (markedPids(runId).length === 0 ? Date.now() : undefined),
    120_000,
    20,
  ).catch((e: Error) => {
    const ps = markedPids(runId).map(
      (p) => `${p}: ${(readText(`/proc/${p}/cmdline`) ?? '').replace(/\0/g, ' ').slice(0, 200)}`,
    );
    const logs = started.flatMap((st) =>
      readdirSync(st.dir)
        .filter((f) => f.endsWith('.log') || f.endsWith('.exit'))
        .map((f) => `--- ${st.host} ${f}:\n${(readText(join(st.dir, f)) ?? '').split('\n').slice(-8).join('\n')}`),
    );
    throw new Error(`${e.message}\nprocesses left:\n${ps.join('\n')}\n${logs.join('\n')}`);
  });
  if (!finish) s.stopMs = gone - tk;
  for (const st of finish ? started : []) {
    for (const r of st.ranks) {
      const code = readText(join(st.dir, `rank-${r.rank}.exit`))?.trim();
      const out = readText(join(st.dir, `rank-${r.rank}.log`)) ?? '';
      if (code !== '0' || echoedArgv(out) !== JSON.stringify(LAUNCH_SPEC.args))
        throw new Error(
          `bare ${runId}: rank ${r.rank} on ${st.host} exited ${code ?? '?'}:\n${out}${readText(join(st.dir, 'torchrun.log')) ?? ''}`,
        );
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// 2. Stop latency

interface StopSample {
  how: 'cancel' | 'delete';
  /** From the action (spawning `ugro cancel`, or unlink) to no process of the run on any host. */
  totalMs: number;
  /** cancel only: from the control file's write (its mtime) to no process left. */
  fromControlMs?: number;
  /** cancel only: how long the `ugro cancel` CLI ran. */
  cliMs?: number;
  /** From the control file write (cancel) or the unlink (delete) to the controller's "stopping run" log line (ms precision). */
  detectMs?: number;
  /** From the "stopping run" log line to no process left (stop.sh on each host + the processes' exit). */
  killMs?: number;
  processesBefore: number;
  /** Bench bookkeeping (not latency): job written -> Running -> training -> stopped -> status gone. */
  stagesMs?: Record<string, number>;
}

async function stopSample(
  jobsDir: string,
  ctl: ReturnType<typeof startController>,
  how: 'cancel' | 'delete',
  name: string,
): Promise<StopSample> {
  const tw = writeJobAtomic(jobsDir, name, LONG_SPEC);
  // Not waitPhase('Running'): the controller reports Running up to 30 s after the ranks start
  // (see the report). The run id is in the status from the launch on; training really in
  // progress is every rank's log having train.py's "rank R/3 on HOST backend=..." line.
  const st = await waitFor(
    `${name} has a run id`,
    () => {
      const x = readStatus(jobsDir, name);
      return x?.runId ? x : undefined;
    },
    60_000,
    50,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${diag(jobsDir, ctl, name)}`);
  });
  const runId = st.runId!;
  await poll(
    `${name}: every rank training`,
    () =>
      hosts.every((h) => {
        const dir = findRunDir(h.paths.runs, name);
        const ranks = dir ? readRanks(dir) : [];
        return (
          ranks.length > 0 && ranks.every((r) => /backend=/.test(readText(join(dir!, `rank-${r.rank}.log`)) ?? ''))
        );
      }),
    90_000,
    50,
  );
  const tTraining = Date.now();
  const before = markedPids(runId).length;
  if (!before) throw new Error(`${name}: no marked process of ${runId} found while Running`);
  const control = join(jobsDir, `${name}.control.yaml`);
  let cli: Promise<{ code: number | null; out: string; at: number }> | undefined;
  const t0 = Date.now();
  if (how === 'cancel') {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin/ugro.mjs'), '--cluster', CLUSTER_FILE, '--jobs', jobsDir, 'cancel', name],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    cli = new Promise((r) => child.once('exit', (code) => r({ code, out, at: Date.now() })));
  } else {
    unlinkSync(join(jobsDir, `${name}.yaml`));
  }
  // Poll /proc here (all lab hosts' processes are visible here) every 20 ms: an ssh round trip per
  // host per poll would be coarser and would load the hosts' sshd during the stop.
  const gone = await poll(
    `${name}: no process of ${runId} left`,
    () => (markedPids(runId).length === 0 ? Date.now() : undefined),
    60_000,
    20,
  );
  const s: StopSample = { how, totalMs: gone - t0, processesBefore: before };
  if (cli) {
    const c = await cli;
    if (c.code !== 0) throw new Error(`ugro cancel ${name} exit ${c.code}: ${c.out}`);
    s.cliMs = c.at - t0;
    s.fromControlMs = gone - statSync(control).mtimeMs;
  }
  const stopLine = ctl
    .logText()
    .split('\n')
    .find((l) => l.includes('"msg":"stopping run"') && l.includes(`"job":"${name}"`));
  const stopAt = stopLine ? Date.parse((JSON.parse(stopLine) as { time: string }).time) : undefined;
  if (stopAt !== undefined) {
    s.detectMs = stopAt - (how === 'cancel' ? statSync(control).mtimeMs : t0);
    s.killMs = gone - stopAt;
  }
  // The over-ssh check the lab tests use (grep of /proc/*/environ for the run's marker on each host).
  const left = (await Promise.all(hosts.map((h) => markedProcesses(pool, h.name, runId)))).flat();
  if (left.length)
    throw new Error(`${name}: processes of ${runId} still seen over ssh after the local check: ${left.join(' ')}`);
  if (how === 'cancel') {
    await waitPhase(jobsDir, name, ['Cancelled'], 30_000);
    unlinkSync(join(jobsDir, `${name}.yaml`));
  }
  const tCancelled = Date.now();
  await waitFor(`${name} status removed`, () => !readStatus(jobsDir, name), 30_000, 50);
  s.stagesMs = {
    toTraining: tTraining - tw,
    stop: gone - t0,
    toCancelledPhase: tCancelled - gone,
    toStatusRemoved: Date.now() - tCancelled,
  };
  return s;
}

// ---------------------------------------------------------------------------------------------
// 3. Many job files

async function manyJobs(clkTck: number) {
  const dir = newJobsDir();
  cleanups.push({ what: `remove ${dir}`, fn: () => rmSync(dir, { recursive: true, force: true }) });
  // suspend: true: valid specs the controller must parse, hash, schedule-check and write a status
  // for (phase Suspended), but never launch. (Suspended is not terminal, so the periodic resync
  // reconciles every one of them again: that is in the idle window below.)
  for (let i = 0; i < N_JOBS; i++)
    writeFileSync(
      join(dir, `${PREFIX}s-${pad(i, 4)}.yaml`),
      job(`${PREFIX}s-${pad(i, 4)}`, { ...LAUNCH_SPEC, suspend: true }),
    );
  const t0 = Date.now();
  const ctl = startController(dir);
  cleanups.push({ what: 'stop controller (1000 jobs)', fn: () => stopController(ctl) });
  const pid = ctl.pid!;
  const started = await poll(
    'controller started (1000 jobs)',
    () => (/"controller started"/.test(ctl.logText()) ? Date.now() : ctl.exitCode !== null ? -1 : undefined),
    120_000,
    20,
  );
  if (started < 0) throw new Error(`controller exited: ${ctl.logText()}`);
  const count = () => readdirSync(dir).filter((f) => f.endsWith('.status.yaml')).length;
  const settled = await poll(
    `${N_JOBS} status files`,
    () => (count() >= N_JOBS ? Date.now() : ctl.exitCode !== null ? -1 : undefined),
    300_000,
    50,
  );
  if (settled < 0) throw new Error(`controller exited: ${ctl.logText()}`);
  const settleUsage = treeUsage(pid);
  const phases = new Map<string, number>();
  for (let i = 0; i < N_JOBS; i++) {
    const p = readStatus(dir, `${PREFIX}s-${pad(i, 4)}`)?.phase ?? 'missing';
    phases.set(p, (phases.get(p) ?? 0) + 1);
  }
  if (phases.get('Suspended') !== N_JOBS)
    throw new Error(`expected ${N_JOBS} Suspended, got ${JSON.stringify(Object.fromEntries(phases))}`);
  // Let the initial queue drain fully before the idle window.
  await sleep(2000);
  const mtimes = new Map(
    readdirSync(dir)
      .filter((f) => f.endsWith('.status.yaml'))
      .map((f) => [f, statSync(join(dir, f)).mtimeMs]),
  );
  const w0 = treeUsage(pid);
  const tw0 = Date.now();
  const perSecond: number[] = [];
  const rss: number[] = [w0.rssKiB];
  let prev = w0.ticks;
  let prevT = tw0;
  log(`1000-job controller settled; idle window ${IDLE_S} s`);
  while (Date.now() - tw0 < IDLE_S * 1000) {
    await sleep(1000);
    const u = treeUsage(pid);
    const now = Date.now();
    perSecond.push(((u.ticks - prev) / clkTck / ((now - prevT) / 1000)) * 100);
    rss.push(u.rssKiB);
    prev = u.ticks;
    prevT = now;
  }
  const w1 = treeUsage(pid);
  const windowS = (Date.now() - tw0) / 1000;
  const rewritten = [...mtimes].filter(([f, m]) => statSync(join(dir, f)).mtimeMs !== m).length;
  const reconcileErrors = (ctl.logText().match(/reconcile failed/g) ?? []).length;
  const result = {
    jobs: N_JOBS,
    spec: 'script train.py, nodes 3, suspend: true (parsed, tracked, status Suspended, never launched)',
    startupToReadyMs: started - t0,
    startupToSettledMs: settled - t0,
    cpuSecondsToSettle: round(settleUsage.ticks / clkTck, 2),
    rssMiBAtSettle: round(settleUsage.rssKiB / 1024, 1),
    idleWindowS: round(windowS, 1),
    idleCpuPctOfOneCore: round(((w1.ticks - w0.ticks) / clkTck / windowS) * 100, 2),
    idleCpuSeconds: round((w1.ticks - w0.ticks) / clkTck, 2),
    /** The last 60 s of the window: one warm resync of every job and two health probes, as a long-running controller spends each minute. */
    idleCpuPctLastMinute: round(perSecond.slice(-60).reduce((a, b) => a + b, 0) / Math.min(60, perSecond.length), 2),
    idleCpuMaxOneSecondPct: round(Math.max(...perSecond), 1),
    /** % of one core in each second of the window; the controller started at -windowStartS, so its 60 s resync lands at 60 - windowStartS. */
    idleCpuPerSecondPct: perSecond.map((x) => round(x, 1)),
    windowStartS: round((tw0 - t0) / 1000, 1),
    secondsAbove5Pct: perSecond.filter((x) => x > 5).length,
    rssMiBIdleMax: round(Math.max(...rss) / 1024, 1),
    rssMiBAfterWindow: round(w1.rssKiB / 1024, 1),
    vmHwmMiB: round((procStatusKiB(pid, 'VmHWM') ?? NaN) / 1024, 1),
    processes: w1.pids.length,
    statusFilesRewrittenDuringIdle: rewritten,
    reconcileErrorsLogged: reconcileErrors,
  };
  await stopController(ctl);
  return result;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const began = Date.now();
  try {
    await preflight();
  } catch (e) {
    if (e instanceof LabDown) {
      console.error(`ugro bench: ${e.message}`);
      await cleanupAll();
      return 2;
    }
    throw e;
  }
  const mach = machine();
  const clkTck = Number(sh('getconf', ['CLK_TCK']).out.trim()) || 100;
  log(`machine: ${mach.nproc} cores (nproc), ${mach.cpuModel}; lab hosts ${hosts.map((h) => h.name).join(', ')}`);

  // One controller for parts 1 and 2, as a user runs it (harness: `ugro controller --grace 5`).
  const jobsDir = newJobsDir();
  cleanups.push({ what: `remove ${jobsDir}`, fn: () => rmSync(jobsDir, { recursive: true, force: true }) });
  const ctl = startController(jobsDir);
  cleanups.push({ what: 'stop controller', fn: () => stopController(ctl) });
  await poll(
    'controller started',
    () => {
      if (ctl.exitCode !== null) throw new Error(`controller exited: ${ctl.logText()}`);
      return /"controller started"/.test(ctl.logText());
    },
    60_000,
    20,
  );
  await bareSetup();
  // Warm both pools: one exec per host (the controller's pool is warm from its start-up probes).
  await Promise.all(hosts.map((h) => pool.exec(h.name, ['true'])));

  // Context: one exec round trip on a warm connection (sshd forks a session per exec).
  const rtt = async (argv: string[]) => {
    const xs: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      await pool.exec(hosts[0].name, argv);
      xs.push(performance.now() - t);
    }
    return summarize(xs);
  };
  const execTrue = await rtt(['true']);
  const execSs = await rtt(['ss', '-Hltn']);
  // Context: the host-side launch step alone, on all 3 hosts in parallel, with a no-op program:
  // the controller's launch.sh (HostRuntime.launch) against the bare snippet.
  const rt = new HostRuntime(new SshTransport(pool, cluster!));
  const launchShMs: number[] = [];
  const bareShMs: number[] = [];
  for (let k = 0; k < 10; k++) {
    // A run dir name and meta that observe would accept (HostRuntime.launch refuses others).
    const dir = runDirName(`${PREFIX}lsh`, '00000000', k + 1);
    const runId = runIdOf(`${PREFIX}lsh`, '00000000', k + 1);
    const meta: RunMeta = {
      job: `${PREFIX}lsh`,
      runId,
      specHash: '00000000',
      attempt: k + 1,
      host: '',
      nodeRank: 0,
      nnodes: 3,
      nprocPerNode: 1,
      hosts: hosts.map((h) => h.name),
      rdzvEndpoint: `${hosts[0].address}:1`,
      masterPort: 1,
      createdAt: new Date().toISOString(),
    };
    let t = performance.now();
    await Promise.all(
      hosts.map((h, i) =>
        rt.launch(h, {
          dir,
          rdzvAddr: hosts[0].address,
          meta: { ...meta, host: h.name, nodeRank: i },
          argv: ['true'],
          ugroEnv: { UGRO_RUN_ID: runId },
          jobEnv: {},
        }),
      ),
    );
    launchShMs.push(performance.now() - t);
    t = performance.now();
    await Promise.all(
      bareHosts.map((b) =>
        pool.exec(b.host.name, ['sh', '-c', BARE_SH, 'ubench-bare', posix.join(b.base, dir), 'true'], {
          env: { UGRO_RUN_ID: runId },
        }),
      ),
    );
    bareShMs.push(performance.now() - t);
  }
  await Promise.all(
    hosts.map((h) => pool.exec(h.name, ['sh', '-c', 'rm -rf -- "$1"/ubench-lsh.*', 'x', h.paths.runs])),
  );

  // 1. Launch latency. One warm-up launch each (scripts deploy, page cache), excluded and reported.
  log('launch: warm-up (controller, then bare)');
  const warmCtl = await controllerLaunch(jobsDir, ctl, `${PREFIX}l-warm`, true);
  await sleep(300);
  const warmBare = await bareLaunch(`${PREFIX}bare-warm`, true);
  await sleep(300);
  const ctlSamples: LaunchSample[] = [];
  const bareSamples: LaunchSample[] = [];
  for (let i = 1; i <= N_LAUNCH; i++) {
    // Alternate which goes first, so drift (page cache, load) does not favour one side.
    const order = i % 2 ? (['ctl', 'bare'] as const) : (['bare', 'ctl'] as const);
    for (const side of order) {
      if (side === 'ctl') ctlSamples.push(await controllerLaunch(jobsDir, ctl, `${PREFIX}l-${pad(i)}`, false));
      else bareSamples.push(await bareLaunch(`${PREFIX}bare-${pad(i)}`, false));
      await sleep(300);
    }
    log(
      `launch ${i}/${N_LAUNCH}: controller ${round(ctlSamples[i - 1].totalMs, 0)} ms, bare ${round(bareSamples[i - 1].totalMs, 0)} ms`,
    );
  }

  // 2. Stop latency: alternate cancel and delete.
  const stops: StopSample[] = [];
  for (let i = 1; i <= N_STOP; i++) {
    for (const how of ['cancel', 'delete'] as const) {
      const s = await stopSample(jobsDir, ctl, how, `${PREFIX}${how[0]}-${pad(i)}`);
      stops.push(s);
      log(
        `stop ${i}/${N_STOP} ${how}: ${round(s.totalMs, 0)} ms [stages ${JSON.stringify(s.stagesMs)}]${s.fromControlMs !== undefined ? ` (from control file ${round(s.fromControlMs, 0)} ms, cli ${round(s.cliMs!, 0)} ms)` : ''}`,
      );
      await sleep(300);
    }
  }
  await stopController(ctl);
  // Remove parts 1-2's run dirs so part 3's controller starts on clean hosts.
  await scrubHosts();

  // 3. Many job files.
  log(`${N_JOBS} job files`);
  const many = await manyJobs(clkTck);

  // Report.
  const pick = (xs: LaunchSample[], k: keyof LaunchSample) =>
    summarize(xs.map((x) => x[k]).filter((v): v is number => typeof v === 'number'));
  const ctlTotal = pick(ctlSamples, 'totalMs');
  const bareTotal = pick(bareSamples, 'totalMs');
  const ratioP50 = ctlTotal.p50 / bareTotal.p50;
  const ratioP99 = ctlTotal.p99 / bareTotal.p99;
  const cancel = stops.filter((s) => s.how === 'cancel');
  const del = stops.filter((s) => s.how === 'delete');
  const result = {
    date: new Date(began).toISOString(),
    machine: mach,
    lab: { hosts: hosts.map((h) => `${h.name} (${h.address})`), cluster: CLUSTER_FILE },
    config: {
      launches: N_LAUNCH,
      stopsPerMethod: N_STOP,
      jobs: N_JOBS,
      idleWindowS: IDLE_S,
      launchSpec: LAUNCH_SPEC,
      longSpec: LONG_SPEC,
      controllerArgs: 'controller --grace 5 (resync 60 s, health every 30 s)',
    },
    launch: {
      definition:
        "job file renamed into the watched jobs dir (controller) / parallel SshPool exec called (bare) -> the last of the 3 ranks' own start timestamp (rank.sh first line, date +%s%N on the host)",
      percentiles: `nearest rank; with n=${N_LAUNCH}, p99 is the ${N_LAUNCH < 100 ? 'max' : '99th percentile'}`,
      controller: {
        totalMs: ctlTotal,
        decideMs: pick(ctlSamples, 'decideMs'),
        firstLaunchedMs: pick(ctlSamples, 'firstLaunchedMs'),
        dispatchMs: pick(ctlSamples, 'dispatchMs'),
        torchrunMs: pick(ctlSamples, 'torchrunMs'),
        samples: ctlSamples.map(roundSample),
      },
      bare: {
        totalMs: bareTotal,
        execMs: pick(bareSamples, 'execMs'),
        firstLaunchedMs: pick(bareSamples, 'firstLaunchedMs'),
        dispatchMs: pick(bareSamples, 'dispatchMs'),
        torchrunMs: pick(bareSamples, 'torchrunMs'),
        samples: bareSamples.map(roundSample),
      },
      warmup: { controller: roundSample(warmCtl), bare: roundSample(warmBare) },
      sshExecRoundTripMs: { true: execTrue, 'ss -Hltn': execSs },
      hostLaunchStepMs: {
        launchSh: summarize(launchShMs),
        bareSnippet: summarize(bareShMs),
        note: '3 hosts in parallel, program `true`, until every exec returned',
      },
      ratioP50: round(ratioP50, 3),
      ratioP99: round(ratioP99, 3),
      dispatchOverheadP50Ms: round(pick(ctlSamples, 'dispatchMs').p50 - pick(bareSamples, 'dispatchMs').p50, 1),
      goals: { within1_5xOfBare: ratioP50 <= 1.5, p50Under500ms: ctlTotal.p50 < 500 },
    },
    stop: {
      definition:
        'action -> no process whose environ has UGRO_RUN_ID=<run> on any host (polled in /proc here every 20 ms; then confirmed over ssh)',
      cancel: {
        totalMs: summarize(cancel.map((s) => s.totalMs)),
        fromControlMs: summarize(cancel.map((s) => s.fromControlMs!)),
        cliMs: summarize(cancel.map((s) => s.cliMs!)),
        detectMs: summarizeDefined(cancel.map((s) => s.detectMs)),
        killMs: summarizeDefined(cancel.map((s) => s.killMs)),
        samples: cancel.map(roundSample),
      },
      afterLaunch: {
        definition:
          'the measured launches, stopped right after every rank started (ranks still importing torch): controller = unlink the job file; bare = SIGTERM to every process of the run (what stop.sh sends)',
        controllerDeleteMs: pick(ctlSamples, 'stopMs'),
        controllerStatusGoneMs: pick(ctlSamples, 'statusGoneMs'),
        bareSigtermMs: pick(bareSamples, 'stopMs'),
      },
      delete: {
        totalMs: summarize(del.map((s) => s.totalMs)),
        detectMs: summarizeDefined(del.map((s) => s.detectMs)),
        killMs: summarizeDefined(del.map((s) => s.killMs)),
        samples: del.map(roundSample),
      },
    },
    manyJobs: many,
    benchSeconds: round((Date.now() - began) / 1000, 1),
  };
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  const out = join(ROOT, '.tmp', `bench-${result.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    out,
    `${JSON.stringify(result, (_k, v) => (typeof v === 'number' && !Number.isInteger(v) ? round(v, 3) : v), 2)}\n`,
  );
  printReport(result, out);
  return 0;
}

function summarizeDefined(xs: (number | undefined)[]): Summary {
  return summarize(xs.filter((x): x is number => x !== undefined));
}

function roundSample<T extends object>(s: T): T {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === 'number' ? round(v, 1) : v])) as T;
}

// biome-ignore lint/suspicious/noExplicitAny: the report is a loose JSON record
function printReport(r: any, out: string): void {
  const row = (label: string, s: Summary) => [label, s.n, s.min, s.p50, s.p99, s.max, s.mean];
  const H = ['', 'n', 'min ms', 'p50 ms', 'p99 ms', 'max ms', 'mean ms'];
  const L = r.launch;
  const m = r.manyJobs;
  const lines = [
    '',
    `UGRO bench ${r.date}  (${r.benchSeconds} s)`,
    `machine: ${r.machine.nproc} cores (nproc) ${r.machine.cpuModel}, ${r.machine.memGiB} GiB RAM, Node ${r.machine.node}, Linux ${r.machine.kernel}, load at start ${r.machine.loadavgAtStart}`,
    `lab: ${r.lab.hosts.join(', ')}`,
    '',
    `1. Launch latency: job file appears -> every rank process started on all 3 hosts (${r.config.launches} launches each; ${L.percentiles})`,
    table(H, [
      row('controller total', L.controller.totalMs),
      row('bare ssh total', L.bare.totalMs),
      row('ctl: file -> reconcile decides', L.controller.decideMs),
      row('ctl: file -> last launched_at', L.controller.dispatchMs),
      row('bare: call -> last launched_at', L.bare.dispatchMs),
      row('ctl: file -> first launched_at', L.controller.firstLaunchedMs),
      row('bare: call -> first launched_at', L.bare.firstLaunchedMs),
      row('bare: parallel exec returns', L.bare.execMs),
      row('ctl: torchrun start+rdzv', L.controller.torchrunMs),
      row('bare: torchrun start+rdzv', L.bare.torchrunMs),
      row('ssh exec `true` (warm, serial)', L.sshExecRoundTripMs.true),
      row('ssh exec `ss -Hltn` (warm)', L.sshExecRoundTripMs['ss -Hltn']),
      row('launch.sh x3 parallel (`true`)', L.hostLaunchStepMs.launchSh),
      row('bare snippet x3 parallel (`true`)', L.hostLaunchStepMs.bareSnippet),
    ]),
    `ratio controller/bare: p50 ${L.ratioP50}x, p99 ${L.ratioP99}x; dispatch overhead (p50 difference) ${L.dispatchOverheadP50Ms} ms`,
    `goal "within 1.5x of bare" (p50): ${L.goals.within1_5xOfBare ? 'MET' : 'NOT MET'};  goal "p50 under 500 ms": ${L.goals.p50Under500ms ? 'MET' : 'NOT MET'} (controller p50 ${round(L.controller.totalMs.p50, 0)} ms)`,
    `warm-up launch (excluded): controller ${L.warmup.controller.totalMs} ms, bare ${L.warmup.bare.totalMs} ms`,
    '',
    `2. Stop latency: action -> no process of the run on any host (${r.config.stopsPerMethod} samples each; grace 5 s, processes exit on SIGTERM)`,
    table(H, [
      row('ugro cancel (from CLI start)', r.stop.cancel.totalMs),
      row('  from control file write', r.stop.cancel.fromControlMs),
      row('  ugro cancel CLI runtime', r.stop.cancel.cliMs),
      row('  control file -> "stopping run"', r.stop.cancel.detectMs),
      row('  "stopping run" -> none left', r.stop.cancel.killMs),
      row('delete job file', r.stop.delete.totalMs),
      row('  unlink -> "stopping run"', r.stop.delete.detectMs),
      row('  "stopping run" -> none left', r.stop.delete.killMs),
    ]),
    `   and the ${r.config.launches} measured launches of part 1, each stopped right after its ranks started:`,
    table(H, [
      row('ctl: delete -> none left', r.stop.afterLaunch.controllerDeleteMs),
      row('ctl: delete -> status removed', r.stop.afterLaunch.controllerStatusGoneMs),
      row('bare: SIGTERM -> none left', r.stop.afterLaunch.bareSigtermMs),
    ]),
    '',
    `3. Controller with ${m.jobs} job files (${m.spec})`,
    table(
      ['', 'value'],
      [
        ['startup: spawn -> "controller started" (ms)', m.startupToReadyMs],
        [`startup: spawn -> ${m.jobs} statuses written (ms)`, m.startupToSettledMs],
        ['CPU seconds used to settle', m.cpuSecondsToSettle],
        ['RSS at settle (MiB)', m.rssMiBAtSettle],
        [`idle CPU over ${m.idleWindowS} s (% of one core)`, m.idleCpuPctOfOneCore],
        ['idle CPU, last 60 s: steady state (%)', m.idleCpuPctLastMinute],
        ['idle CPU, busiest second (%)', m.idleCpuMaxOneSecondPct],
        ['idle seconds above 5% CPU', m.secondsAbove5Pct],
        ['RSS during idle, max (MiB)', m.rssMiBIdleMax],
        ['RSS after idle window (MiB)', m.rssMiBAfterWindow],
        ['peak RSS, VmHWM (MiB)', m.vmHwmMiB],
        ['processes in the controller tree', m.processes],
        ['status files rewritten while idle', m.statusFilesRewrittenDuringIdle],
      ],
    ),
    '',
    `JSON: ${out}`,
  ];
  console.log(lines.join('\n'));
}

const rc = await main().catch(async (e: Error) => {
  console.error(`ugro bench: failed: ${e.stack ?? e.message}`);
  return 1;
});
await cleanupAll();
process.exit(rc);
