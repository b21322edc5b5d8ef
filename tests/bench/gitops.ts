/**
 * GitOps figures on the lab (`gitopsBench()`; or `node --import tsx tests/bench/gitops.ts`):
 *   - the controller's own launch time: a job file written into jobs/ -> status Starting;
 *   - commit -> Starting with `ugro sync` right after the push (goal: < 1 s), and where that time
 *     goes: the push, the controller's fetch and apply (from its log), the rest of the sync
 *     request (the CLI's start, the request file seen, the answer read back), sync -> Starting;
 *   - commit -> Starting at the polling interval (no sync: the interval's wait plus the same);
 *   - an idle fetch (the branch did not move): wall time and CPU (git + ssh, children included),
 *     measured directly with the controller's own git environment, on a new ssh connection each
 *     time and on the shared one (ControlMaster, as the controller fetches), and in the running
 *     controller over an idle window at --interval 1.
 * The git server is gpu-master over real ssh (tests/lab/gitops-remote.ts). Needs the lab up and a
 * build of dist/ (npm run build), like every bench that starts `ugro`.
 *
 *   npm run bench:gitops   (builds dist/, then node --import tsx tests/bench/gitops.ts), or the
 *   section "gitops" of `npm run bench` (BENCH_SECTIONS=gitops). Environment: BENCH_GITOPS_RUNS
 *   (samples per latency figure, default 5), BENCH_GITOPS_INTERVAL (--interval of the polling
 *   figure, default 5 s), BENCH_GITOPS_FETCHES (idle fetches measured directly, default 20),
 *   BENCH_GITOPS_IDLE_S (idle window of the controller at --interval 1, default 20 s).
 * Job names start with the bench's PREFIX, so the bench's scrub of the hosts finds their runs.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Git, gitEnv, writeGitHelpers } from '../../controller/gitops/git.ts';
import { persistSeconds, SshMux } from '../../controller/gitops/mux.ts';
import { readGitState } from '../../controller/gitops/state.ts';
import { writeFileAtomic } from '../../controller/store/files.ts';
import { newJobsDir, readStatus, startController, stopController, ugro, waitFor } from '../lab/controller-harness.ts';
import { LAB_KEY, LAB_KNOWN_HOSTS, labGitRemote } from '../lab/gitops-remote.ts';
import { labNominal } from '../lab/helpers.ts';
import { jobText } from '../support/git-repo.ts';
import { cleanupAll, labQuiet, log, onCleanup, PREFIX } from './context.ts';
import { round, summarize, table } from './lib.ts';

export interface GitopsBenchOptions {
  /** Samples per latency figure (default 5). */
  runs?: number;
  /** --interval for the polling figure (default 5 s). */
  intervalSeconds?: number;
  /** Idle fetches measured directly (default 20). */
  idleFetches?: number;
  /** Seconds of the in-controller idle window at --interval 1 (default 20). */
  idleWindowSeconds?: number;
  /** Print the table when done (default true; run.ts prints it in its report instead). */
  print?: boolean;
}

export interface GitopsBenchResult {
  launchMs: number[];
  syncMs: number[];
  syncCliMs: number[];
  pushMs: number[];
  /** The controller's own view of each sync: the fetch, the whole sync (fetch + apply), the request. */
  fetchMs: number[];
  applyMs: number[];
  requestMs: number[];
  /** `ugro sync` returned -> the job Starting. */
  afterSyncMs: number[];
  intervalMs: number[];
  idleFetch: { wallMs: number[]; cpuMs: number[]; sharedWallMs: number[]; sharedCpuMs: number[] };
  idleController: { fetches: number; cpuMsPerFetch: number; cpuPercent: number };
  intervalSeconds: number;
}

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
/** A job that only has to reach Starting: a one-node sleep on gpu1 (no torch import). */
const SPEC = { command: ['sleep', '300'], nodes: 1, hosts: ['gpu1'] };

/** utime + stime + cutime + cstime of a process, in ms (children counted once reaped). */
function cpuMs(pid: number | 'self'): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
}

/** CPU of the ssh ControlMaster(s) whose socket lies under `dir` (ssh detaches them: not our children). */
function muxCpuMs(dir: string): number {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${dir}/`)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
    } catch {
      /* gone meanwhile */
    }
  }
  return total;
}

async function phaseAt(jobs: string, name: string, phases: string[], timeoutMs = 60_000): Promise<number> {
  return waitFor(
    `${name} in ${phases.join('|')}`,
    () => {
      const s = readStatus(jobs, name);
      return s && phases.includes(s.phase) ? performance.now() : undefined;
    },
    timeoutMs,
    5,
  );
}

async function gone(jobs: string, name: string): Promise<void> {
  await waitFor(`${name} gone`, () => !readStatus(jobs, name), 60_000, 20);
}

export async function gitopsBench(o: GitopsBenchOptions = {}): Promise<GitopsBenchResult> {
  const runs = o.runs ?? 5;
  const interval = o.intervalSeconds ?? 5;
  labNominal();
  // The jobs run on gpu1: nobody else's run may hold it (else the first waits for a resync).
  await labQuiet('gitops');
  const remote = await labGitRemote();
  const jobs = newJobsDir();
  const res: GitopsBenchResult = {
    launchMs: [],
    syncMs: [],
    syncCliMs: [],
    pushMs: [],
    fetchMs: [],
    applyMs: [],
    requestMs: [],
    afterSyncMs: [],
    intervalMs: [],
    idleFetch: { wallMs: [], cpuMs: [], sharedWallMs: [], sharedCpuMs: [] },
    idleController: { fetches: 0, cpuMsPerFetch: Number.NaN, cpuPercent: Number.NaN },
    intervalSeconds: interval,
  };
  // Also on a signal or a failure of the bench around this (run.ts's cleanup): the controller and
  // the repository on gpu-master go, whatever happened.
  let removed = false;
  onCleanup('gitops: stop controller, remove the remote', async () => {
    if (ctl) await stopController(ctl);
    if (!removed) remote.remove();
    removed = true;
    rmSync(jobs, { recursive: true, force: true });
  });
  let ctl: ReturnType<typeof startController> | undefined;
  const start = async (...extra: string[]) => {
    if (ctl) await stopController(ctl);
    ctl = startController(jobs, ['--git', remote.url, '--prune', '--prune-all', ...extra]);
    await waitFor('the git source', () => readGitState(jobs)?.pid === ctl!.pid, 60_000);
  };
  try {
    log(`gitops: git server ${remote.url}; ${runs} samples per figure, --interval ${interval}`);
    remote.work.commit({ 'README.md': '# bench\n' }, 'start');
    remote.work.push();
    await start('--interval', String(interval));

    // 1. The controller's own launch time: a file written into jobs/ -> Starting.
    for (let i = 0; i < runs; i++) {
      const name = `${PREFIX}own-${i}`;
      const t0 = performance.now();
      await writeFileAtomic(join(jobs, `${name}.yaml`), jobText(name, SPEC));
      res.launchMs.push((await phaseAt(jobs, name, ['Starting', 'Running'])) - t0);
      rmSync(join(jobs, `${name}.yaml`));
      await gone(jobs, name);
    }

    log('gitops: commit -> Starting with ugro sync');
    // 2. commit -> Starting, with `ugro sync` right after the push.
    for (let i = 0; i < runs; i++) {
      const name = `${PREFIX}sync-${i}`;
      const answeredBefore = logCount(ctl!, ANSWERED);
      const t0 = performance.now();
      remote.work.commit({ [`jobs/${name}.yaml`]: jobText(name, SPEC) }, `add ${name}`);
      remote.work.push();
      const pushed = performance.now();
      const s = ugro(jobs, 'sync');
      if (s.code !== 0) throw new Error(`ugro sync failed: ${s.err}`);
      const synced = performance.now();
      const starting = await phaseAt(jobs, name, ['Starting', 'Running']);
      res.pushMs.push(pushed - t0);
      res.syncCliMs.push(synced - pushed);
      res.syncMs.push(starting - t0);
      res.afterSyncMs.push(starting - synced);
      // The answer's log line may arrive just after the answer itself: wait for this sample's.
      await waitFor('the answer logged', () => logCount(ctl!, ANSWERED) > answeredBefore || undefined, 10_000, 5);
      const applied = lastLogLine(ctl!, 'git source: applied');
      const answered = lastLogLine(ctl!, ANSWERED);
      res.fetchMs.push(Number(applied?.fetchMs));
      res.applyMs.push(Number(applied?.ms) - Number(applied?.fetchMs));
      res.requestMs.push(Number(answered?.ms));
      remote.work.commit({ [`jobs/${name}.yaml`]: null }, `remove ${name}`);
      remote.work.push();
      ugro(jobs, 'sync');
      await gone(jobs, name);
    }

    log(`gitops: commit -> Starting at --interval ${interval}`);
    // 3. commit -> Starting at the polling interval (no sync).
    for (let i = 0; i < runs; i++) {
      const name = `${PREFIX}poll-${i}`;
      const t0 = performance.now();
      remote.work.commit({ [`jobs/${name}.yaml`]: jobText(name, SPEC) }, `add ${name}`);
      remote.work.push();
      res.intervalMs.push((await phaseAt(jobs, name, ['Starting', 'Running'], (interval + 30) * 1000)) - t0);
      remote.work.commit({ [`jobs/${name}.yaml`]: null }, `remove ${name}`);
      remote.work.push();
      ugro(jobs, 'sync');
      await gone(jobs, name);
    }

    // 4a. An idle fetch, directly, with the controller's git environment (the same wrapper and pins).
    const dir = mkdtempSync(join(tmpdir(), 'ugro-bench-git-'));
    const helpers = await writeGitHelpers(dir);
    const auth = { knownHosts: LAB_KNOWN_HOSTS, identityFile: LAB_KEY, useAgent: false, connectTimeoutSeconds: 5 };
    const git = new Git(join(dir, 'repo.git'), gitEnv(helpers, dir, auth));
    await git.init();
    await git.fetch(remote.url, 'main');
    for (let i = 0; i < (o.idleFetches ?? 20); i++) {
      const c0 = cpuMs('self');
      const t0 = performance.now();
      await git.fetch(remote.url, 'main');
      res.idleFetch.wallMs.push(performance.now() - t0);
      res.idleFetch.cpuMs.push(cpuMs('self') - c0);
    }
    // The same over one shared connection; the master's CPU (another session) counted from /proc.
    const mux = new SshMux(join(dir, 'mux'), remote.url, auth, persistSeconds(1000));
    await mux.prepare();
    await git.fetch(remote.url, 'main', 120_000, { env: await mux.env() });
    for (let i = 0; i < (o.idleFetches ?? 20); i++) {
      const env = await mux.env();
      const c0 = cpuMs('self') + muxCpuMs(join(dir, 'mux'));
      const t0 = performance.now();
      await git.fetch(remote.url, 'main', 120_000, { env });
      res.idleFetch.sharedWallMs.push(performance.now() - t0);
      res.idleFetch.sharedCpuMs.push(cpuMs('self') + muxCpuMs(join(dir, 'mux')) - c0);
    }
    await mux.stop();
    rmSync(dir, { recursive: true, force: true });

    log(`gitops: idle controller at --interval 1 for ${o.idleWindowSeconds ?? 20} s`);
    // 4b. The controller itself, idle, fetching every second.
    await start('--interval', '1');
    await new Promise((r) => setTimeout(r, 3000));
    const pid = ctl!.pid!;
    const window = o.idleWindowSeconds ?? 20;
    const muxDir = join(jobs, '.ugro', 'git', 'mux');
    const c0 = cpuMs(pid) + muxCpuMs(muxDir);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, window * 1000));
    const cpu = cpuMs(pid) + muxCpuMs(muxDir) - c0;
    const wall = performance.now() - t0;
    // A fetch every interval after the previous one ended: about wall / (1 s + one fetch).
    const fetches = wall / (1000 + summarize(res.idleFetch.sharedWallMs).p50);
    res.idleController = { fetches: round(fetches), cpuMsPerFetch: cpu / fetches, cpuPercent: (cpu / wall) * 100 };
  } finally {
    if (ctl) await stopController(ctl);
    if (!removed) remote.remove();
    removed = true;
    rmSync(jobs, { recursive: true, force: true });
  }
  if (o.print !== false) process.stdout.write(`${gitopsLines(res).join('\n')}\n`);
  return res;
}

const ANSWERED = 'git source: answered a sync request';

function logCount(ctl: { logText: () => string }, msg: string): number {
  return ctl.logText().split(`"msg":${JSON.stringify(msg)}`).length - 1;
}

/** The controller's last log line with this message, as its fields. */
function lastLogLine(ctl: { logText: () => string }, msg: string): Record<string, unknown> | undefined {
  const lines = ctl.logText().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i].includes(msg)) continue;
    try {
      const o = JSON.parse(lines[i]) as Record<string, unknown>;
      if (o.msg === msg) return o;
    } catch {
      /* a torn line */
    }
  }
  return undefined;
}

export function gitopsLines(r: GitopsBenchResult): string[] {
  const interval = r.intervalSeconds;
  const row = (what: string, xs: number[]) => {
    const s = summarize(xs);
    return [what, s.n, round(s.p50), round(s.p99), round(s.min), round(s.max)];
  };
  const launch = summarize(r.launchMs).p50;
  const sync = summarize(r.syncMs).p50;
  return [
    table(
      ['gitops (ms)', 'n', 'p50', 'p99', 'min', 'max'],
      [
        row('jobs/ file -> Starting (own launch)', r.launchMs),
        row('commit -> pushed (git push over ssh)', r.pushMs),
        row('pushed -> ugro sync returns', r.syncCliMs),
        row('  controller: fetch', r.fetchMs),
        row('  controller: apply (git reads, jobs/ writes)', r.applyMs),
        row('  controller: request seen -> answered', r.requestMs),
        row(
          '  the rest (ugro CLI start, request, answer read)',
          r.syncCliMs.map((x, i) => x - r.requestMs[i]),
        ),
        row('ugro sync returns -> Starting', r.afterSyncMs),
        row('commit -> Starting, with ugro sync', r.syncMs),
        row(`commit -> Starting, --interval ${interval}`, r.intervalMs),
        row('idle fetch, new ssh connection: wall', r.idleFetch.wallMs),
        row('idle fetch, new ssh connection: CPU', r.idleFetch.cpuMs),
        row('idle fetch, shared connection: wall', r.idleFetch.sharedWallMs),
        row('idle fetch, shared connection: CPU', r.idleFetch.sharedCpuMs),
      ],
    ),
    `commit -> Starting with ugro sync: ${round(sync)} ms (goal < 1000); above the controller's own launch: ` +
      `${round(sync - launch)} ms`,
    `idle controller at --interval 1: ${round(r.idleController.cpuMsPerFetch)} ms CPU per fetch ` +
      `(controller + git + ssh, its ControlMaster too), ${round(r.idleController.cpuPercent, 2)} % of one core ` +
      `(${r.idleController.fetches} fetches)`,
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const env = (k: string) => (process.env[k] ? Number(process.env[k]) : undefined);
  const rc = await gitopsBench({
    runs: env('BENCH_GITOPS_RUNS'),
    intervalSeconds: env('BENCH_GITOPS_INTERVAL'),
    idleFetches: env('BENCH_GITOPS_FETCHES'),
    idleWindowSeconds: env('BENCH_GITOPS_IDLE_S'),
  }).then(
    () => 0,
    (e) => {
      process.stderr.write(`${(e as Error).stack ?? e}\n`);
      return 1;
    },
  );
  await cleanupAll();
  process.exit(rc);
}
