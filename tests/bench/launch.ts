/**
 * Bench section "launch": a job file appearing in the watched jobs dir -> torchrun started on
 * every host (dispatch) and -> every rank process started, for a real `ugro controller`, beside
 * a bare launch of the same thing: the very same launch.sh request (SshBackend.launch: same
 * script text, meta.json, rank.sh, torchrun argv and environment, port check on the rendezvous
 * host) sent to the 3 hosts in parallel over a warm SshPool connection, as the controller's own
 * pool is warm. What the controller adds on top is its own work: noticing the file, reading and
 * validating it, scheduling, claiming, writing the Starting status first, the scripts check.
 *
 * How "rank process started" is detected (honest and cheap, from outside the controller):
 * scripts/runtime/rank.sh is the program torchrun --no_python starts for each rank, and its
 * first lines append `$RANK $LOCAL_RANK $GROUP_RANK $$ $(date +%s%N)` to RUN_DIR/ranks. That
 * timestamp is taken by the rank process, on the host, so the measurement does not depend on how
 * fast we poll. launch.sh writes `launched_at` (date +%s%N) just before setsid starts the
 * runner: file -> the last host's launched_at is dispatch (ours), launched_at -> rank start is
 * torchrun's own start (python, torch import) and the c10d rendezvous, the same on both sides.
 * The lab hosts share this machine's clock, so host timestamps compare with Date.now() here.
 */
import { readdirSync, statSync, unlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import { type RunMeta, runDirName, runIdOf } from '../../controller/api/run.ts';
import { parseTrainingJob, specHash } from '../../controller/api/trainingjob.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { SshTransport } from '../../controller/backends/ssh/transport.ts';
import { checkpointDir, type NodeLaunch, torchrunArgv, ugroEnv } from '../../controller/core/launch.ts';
import { job, readStatus, waitFor, waitPhase } from '../lab/controller-harness.ts';
import { type Controller, diag, type Lab, log, PREFIX, pad, writeJobAtomic } from './context.ts';
import {
  findRunDir,
  markedPids,
  nsTextToMs,
  poll,
  readRanks,
  readText,
  round,
  type Summary,
  sleep,
  summarize,
} from './lib.ts';

/**
 * The launched job: the real train.py (a `script:` job, so the controller's scripts-sync path
 * runs) with --echo-args: each rank imports torch, prints its argv and exits 0. Not a training
 * step because train.py's DDP/gloo teardown on the lab's torch 1.13 / Python 3.11 can deadlock
 * at interpreter exit, which would leave the job Running. What a rank does after it has started
 * does not change the launch latency measured here.
 */
export const LAUNCH_SPEC = { script: 'train.py', args: ['--echo-args', '--model', 'tiny-mlp'], nodes: 3 };
/** The bare launches' rendezvous port (the controller's start at communication.master_port, 29500). */
const BARE_PORT = 29650;

export interface LaunchSample {
  /** t0 -> the last rank's own start timestamp. */
  totalMs: number;
  /** t0 -> the last host's launched_at (just before setsid starts torchrun): dispatch. */
  dispatchMs: number;
  /** last launched_at -> last rank start: torchrun start (python, torch import) + c10d rendezvous. */
  torchrunMs: number;
  /** t0 -> the first host's launched_at. */
  firstLaunchedMs: number;
  /** t0 -> each host's launched_at. */
  launchedMs: Record<string, number>;
  /** t0 -> each host's run dir `lock` file created (launch.sh past its shell start and port check). */
  lockMs: Record<string, number>;
  /** Controller only: t0 -> the reconcile that decided the launch (run meta createdAt, ms precision). */
  decideMs?: number;
  /** Bare only: how long the parallel launch.sh calls took to return. */
  execMs?: number;
  /**
   * Measured launches: stopping the run right after rank start (controller: unlink the job file;
   * bare: SIGTERM to its processes) -> no process of it left.
   */
  stopMs?: number;
  /** Controller, measured launches: unlink -> status file removed (the controller done with the job). */
  statusGoneMs?: number;
}

/** train.py --echo-args prints `ARGV <json list>`; return it re-serialized (JSON.stringify spacing), or undefined. */
function echoedArgv(text: string): string | undefined {
  const m = /^ARGV (.*)$/m.exec(text);
  try {
    return m ? JSON.stringify(JSON.parse(m[1])) : undefined;
  } catch {
    return undefined;
  }
}

type Started = { host: string; dir: string; ranks: ReturnType<typeof readRanks>; launchedAt: number }[];

/** Wait until every host's run dir shows all its ranks started; returns per-host dirs, ranks and launched_at. */
function waitRanksStarted(
  hosts: Host[],
  dirOf: (h: Host) => string | undefined,
  perHost: number,
  what: string,
  timeoutMs = 90_000,
): Promise<Started> {
  return poll(
    what,
    () => {
      const res: Started = [];
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

/** A file's mtime in ms with the sub-ms fraction (NaN when missing). */
function mtimeMs(path: string): number {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false });
  return st ? Number(st.mtimeNs / 1000n) / 1000 : Number.NaN;
}

function sampleFrom(t0: number, started: Started): LaunchSample {
  const lastRank = Math.max(...started.flatMap((s) => s.ranks.map((r) => r.atMs)));
  const lastLaunched = Math.max(...started.map((s) => s.launchedAt));
  return {
    totalMs: lastRank - t0,
    firstLaunchedMs: Math.min(...started.map((s) => s.launchedAt)) - t0,
    dispatchMs: lastLaunched - t0,
    torchrunMs: lastRank - lastLaunched,
    launchedMs: Object.fromEntries(started.map((s) => [s.host, round(s.launchedAt - t0, 1)])),
    lockMs: Object.fromEntries(started.map((s) => [s.host, round(mtimeMs(join(s.dir, 'lock')) - t0, 1)])),
  };
}

/**
 * One controller launch. `finish`: let the job run to Succeeded and check it (warm-up); else
 * delete the job file as soon as every rank has started (the controller stops the run) and
 * wait until it is gone: rank start is all this measures, and a run's tail would double the
 * bench's time. Either way the hosts are free afterwards.
 */
export async function controllerLaunch(
  lab: Lab,
  jobsDir: string,
  ctl: Controller,
  name: string,
  finish: boolean,
): Promise<LaunchSample> {
  const t0 = writeJobAtomic(jobsDir, name, LAUNCH_SPEC);
  let started: Started;
  try {
    started = await waitRanksStarted(
      lab.hosts,
      (h) => findRunDir(h.paths.runs, name),
      1,
      `${name}: every rank started (controller)`,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${diag(lab, jobsDir, ctl, name)}`);
  }
  const s = sampleFrom(t0, started);
  const meta = JSON.parse(readText(join(started[0].dir, 'meta.json')) ?? '{}') as { createdAt?: string };
  if (meta.createdAt) s.decideMs = Date.parse(meta.createdAt) - t0;
  if (finish) {
    const st = await waitPhase(jobsDir, name, ['Succeeded', 'Failed'], 120_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${diag(lab, jobsDir, ctl, name)}`);
    });
    if (st.phase !== 'Succeeded') throw new Error(`${name} ${st.phase}\n${diag(lab, jobsDir, ctl, name)}`);
    const argv = started.map((x) => echoedArgv(readText(join(x.dir, `rank-${x.ranks[0].rank}.log`)) ?? ''));
    if (argv.some((a) => a !== JSON.stringify(LAUNCH_SPEC.args)))
      throw new Error(`${name}: ranks did not run train.py ${LAUNCH_SPEC.args.join(' ')}: ${JSON.stringify(argv)}`);
  }
  const runId = readStatus(jobsDir, name)?.runId;
  if (!runId) throw new Error(`${name}: no run id in its status\n${diag(lab, jobsDir, ctl, name)}`);
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

/**
 * The bare launcher: what the controller sends, without the controller. One SshBackend over the
 * bench's own warm pool; its hosts are the lab's with `paths.runs` moved to a bench directory, so
 * the controller under test never sees these runs (they would make its hosts look busy).
 */
export class Bare {
  readonly rt: SshBackend;
  readonly hosts: Host[];

  constructor(private readonly lab: Lab) {
    this.rt = new SshBackend(new SshTransport(lab.pool, lab.cluster));
    this.hosts = lab.hosts.map((h) => ({
      ...h,
      paths: { ...h.paths, runs: posix.join(h.paths.project, `${PREFIX}bare-runs`) },
    }));
  }

  /** One bare launch; `finish` as for controllerLaunch (else SIGTERM to the run's processes, as stop.sh does). */
  async launch(name: string, finish: boolean): Promise<LaunchSample> {
    // Everything the controller derives before its launch exec is derived here too, untimed:
    // what is timed is the parallel SshBackend.launch (argument checks, script text, ssh exec).
    const parsed = parseTrainingJob(job(name, LAUNCH_SPEC));
    if (!parsed.ok) throw new Error(`bench spec invalid: ${JSON.stringify(parsed.issues)}`);
    const tj = parsed.value;
    const hash = specHash(tj.spec);
    const dir = runDirName(name, hash, 1);
    const runId = runIdOf(name, hash, 1);
    const rdzv = this.hosts[0];
    const createdAt = new Date().toISOString();
    const reqs = this.hosts.map((h, i) => {
      const n: NodeLaunch = {
        host: h,
        nodeRank: i,
        nnodes: this.hosts.length,
        nproc: 1,
        rdzvAddr: rdzv.address,
        port: BARE_PORT,
        runId,
        runDir: posix.join(h.paths.runs, dir),
        attempt: 1,
        rdzvTimeoutSeconds: Math.min(this.lab.cluster.communication.timeoutSeconds, 600),
      };
      const ckpt = checkpointDir(tj, h);
      if (!ckpt.ok) throw new Error(ckpt.why);
      const meta: RunMeta = {
        job: name,
        runId,
        specHash: hash,
        attempt: 1,
        host: h.name,
        nodeRank: i,
        nnodes: this.hosts.length,
        nprocPerNode: 1,
        hosts: this.hosts.map((x) => x.name),
        rdzvEndpoint: `${rdzv.address}:${BARE_PORT}`,
        masterPort: BARE_PORT,
        createdAt,
        owner: 'ugro-bench:bare',
      };
      return {
        host: h,
        req: {
          dir,
          rdzvAddr: rdzv.address,
          meta,
          argv: torchrunArgv(tj, n),
          ugroEnv: ugroEnv(tj, n, ckpt.path),
          jobEnv: tj.spec.env,
          ...(i === 0 ? { checkPort: BARE_PORT } : {}),
        },
      };
    });
    const t0 = Date.now();
    await Promise.all(reqs.map((r) => this.rt.launch(r.host, r.req)));
    const execMs = Date.now() - t0;
    const started = await waitRanksStarted(
      this.hosts,
      (h) => posix.join(h.paths.runs, dir),
      1,
      `${runId}: every rank started (bare)`,
    );
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
            `bare ${runId}: rank ${r.rank} on ${st.host} exited ${code ?? '?'}:\n` +
              `${out}${readText(join(st.dir, 'torchrun.log')) ?? ''}`,
          );
      }
    }
    return s;
  }
}

/**
 * A minimal launcher, for context only: mkdir, note the time, setsid the program with stdio to a
 * file. No meta.json/pid/lock bookkeeping, no port check, no interface choice: what launch.sh's
 * own work costs on top of an ssh exec.
 */
const MINIMAL_SH =
  'd=$1; shift; mkdir -p "$d" && cd "$d" || exit 1; date +%s%N > launched_at; ' +
  'setsid "$@" </dev/null >torchrun.log 2>&1 &';

const pick = (xs: LaunchSample[], k: keyof LaunchSample) =>
  summarize(xs.map((x) => x[k]).filter((v): v is number => typeof v === 'number'));

function roundSample<T extends object>(s: T): T {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === 'number' ? round(v, 1) : v])) as T;
}

/** Context: host-side costs measured alone (exec round trips, launch.sh with the program `true`). */
async function hostSideContext(lab: Lab, bare: Bare) {
  const { pool, hosts } = lab;
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
  const launchShMs: number[] = [];
  const minimalMs: number[] = [];
  for (let k = 0; k < 10; k++) {
    // A run dir name and meta that observe would accept (SshBackend.launch refuses others).
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
      bare.hosts.map((h, i) =>
        bare.rt.launch(h, {
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
      bare.hosts.map((h) =>
        pool.exec(h.name, ['sh', '-c', MINIMAL_SH, 'ubench-min', posix.join(h.paths.runs, `min-${dir}`), 'true'], {
          env: { UGRO_RUN_ID: runId },
        }),
      ),
    );
    minimalMs.push(performance.now() - t);
  }
  await Promise.all(
    bare.hosts.map((h) =>
      pool.exec(h.name, ['sh', '-c', 'rm -rf -- "$1"/ubench-lsh.* "$1"/min-ubench-lsh.*', 'x', h.paths.runs]),
    ),
  );
  return {
    sshExecRoundTripMs: { true: execTrue, 'ss -Hltn': execSs },
    hostLaunchStepMs: {
      launchSh: summarize(launchShMs),
      minimalSnippet: summarize(minimalMs),
      note: '3 hosts in parallel, program `true`, until every exec returned',
    },
  };
}

export interface LaunchGoals {
  /** Dispatch p50, controller / bare. */
  dispatchRatio: number;
}
export const LAUNCH_GOALS: LaunchGoals = { dispatchRatio: 1.3 };

/** The launch section on a running controller (the harness's `ugro controller --grace 5`). */
export async function launchSection(lab: Lab, jobsDir: string, ctl: Controller, launches: number) {
  const bare = new Bare(lab);
  // Warm the bench's pool: one exec per host (the controller's is warm from its start-up probes).
  await Promise.all(lab.hosts.map((h) => lab.pool.exec(h.name, ['true'])));
  const context = await hostSideContext(lab, bare);

  // One warm-up launch each (scripts deploy, page cache), excluded and reported.
  log('launch: warm-up (controller, then bare)');
  const warmCtl = await controllerLaunch(lab, jobsDir, ctl, `${PREFIX}l-warm`, true);
  await sleep(300);
  const warmBare = await bare.launch(`${PREFIX}bare-warm`, true);
  await sleep(300);
  const ctlSamples: LaunchSample[] = [];
  const bareSamples: LaunchSample[] = [];
  for (let i = 1; i <= launches; i++) {
    // Alternate which goes first, so drift (page cache, load) does not favour one side.
    const order = i % 2 ? (['ctl', 'bare'] as const) : (['bare', 'ctl'] as const);
    for (const side of order) {
      if (side === 'ctl') ctlSamples.push(await controllerLaunch(lab, jobsDir, ctl, `${PREFIX}l-${pad(i)}`, false));
      else bareSamples.push(await bare.launch(`${PREFIX}bare-${pad(i)}`, false));
      await sleep(300);
    }
    const c = ctlSamples[i - 1];
    const b = bareSamples[i - 1];
    log(
      `launch ${i}/${launches}: dispatch controller ${round(c.dispatchMs, 0)} ms, bare ${round(b.dispatchMs, 0)} ms;` +
        ` every rank started: controller ${round(c.totalMs, 0)} ms, bare ${round(b.totalMs, 0)} ms`,
    );
  }

  const ctlDispatch = pick(ctlSamples, 'dispatchMs');
  const bareDispatch = pick(bareSamples, 'dispatchMs');
  const ctlTotal = pick(ctlSamples, 'totalMs');
  const bareTotal = pick(bareSamples, 'totalMs');
  const dispatchRatioP50 = ctlDispatch.p50 / bareDispatch.p50;
  const totalRatioP50 = ctlTotal.p50 / bareTotal.p50;
  return {
    definition:
      'dispatch: job file renamed into the watched jobs dir (controller) / parallel SshBackend.launch called ' +
      "(bare) -> the last host's launched_at (launch.sh, just before setsid starts torchrun); total: -> the last " +
      "of the 3 ranks' own start timestamp (rank.sh, date +%s%N on the host)",
    bareIs:
      'the same launch.sh request the controller sends (SshBackend.launch over SshTransport: script text, ' +
      'meta.json, rank.sh, torchrun argv and env, port check on the rendezvous host), to the 3 hosts in ' +
      "parallel over the bench's own warm SshPool",
    percentiles: `nearest rank; with n=${launches}, p99 is the ${launches < 100 ? 'max' : '99th percentile'}`,
    controller: {
      dispatchMs: ctlDispatch,
      totalMs: ctlTotal,
      decideMs: pick(ctlSamples, 'decideMs'),
      firstLaunchedMs: pick(ctlSamples, 'firstLaunchedMs'),
      torchrunMs: pick(ctlSamples, 'torchrunMs'),
      samples: ctlSamples.map(roundSample),
    },
    bare: {
      dispatchMs: bareDispatch,
      totalMs: bareTotal,
      execMs: pick(bareSamples, 'execMs'),
      firstLaunchedMs: pick(bareSamples, 'firstLaunchedMs'),
      torchrunMs: pick(bareSamples, 'torchrunMs'),
      samples: bareSamples.map(roundSample),
    },
    warmup: { controller: roundSample(warmCtl), bare: roundSample(warmBare) },
    ...context,
    dispatchRatioP50: round(dispatchRatioP50, 3),
    dispatchRatioP99: round(ctlDispatch.p99 / bareDispatch.p99, 3),
    dispatchOverheadP50Ms: round(ctlDispatch.p50 - bareDispatch.p50, 1),
    totalRatioP50: round(totalRatioP50, 3),
    totalRatioP99: round(ctlTotal.p99 / bareTotal.p99, 3),
    goals: {
      dispatchWithin1_3xOfBare: dispatchRatioP50 <= LAUNCH_GOALS.dispatchRatio,
      totalP50Under500ms: ctlTotal.p50 < 500,
    },
    stopAfterLaunch: {
      definition:
        'the measured launches, stopped right after every rank started (ranks still importing torch): ' +
        'controller = unlink the job file; bare = SIGTERM to every process of the run (what stop.sh sends)',
      controllerDeleteMs: pick(ctlSamples, 'stopMs'),
      controllerStatusGoneMs: pick(ctlSamples, 'statusGoneMs'),
      bareSigtermMs: pick(bareSamples, 'stopMs'),
    },
  };
}

export type LaunchReport = Awaited<ReturnType<typeof launchSection>>;
export type { Summary };
