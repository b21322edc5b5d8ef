/**
 * `npm run bench`: UGRO's numbers, measured on the 3-host lab (tests/lab/README.md). Not a
 * pass/fail test: it prints what it measured and, next to each figure, whether its goal is met.
 * Exit 0 when it could measure; exit 2 with a clear message when the lab is not up.
 *
 * Sections (BENCH_SECTIONS, a comma list; default all, run in this order):
 *   cli       `ugro --help` and `ugro get jobs` on 100 and 1000 jobs against `node -e 0`
 *             (tests/bench/cli.ts; needs no lab; alone: npm run bench:cli)
 *   placement core's plan() over 1000 waiting jobs x 16 hosts x 8 GPUs: median and p95 ms
 *             (placement.ts; needs no lab; alone: npm run bench:placement)
 *   launch    job file written -> torchrun started on every host (dispatch) and -> every rank
 *             started, controller vs the same launch.sh sent bare (tests/bench/launch.ts;
 *             alone: npm run bench:launch)
 *   stop      `ugro cancel` and deleting the job file -> no process of the run left (stop.ts)
 *   recovery  node loss, rank crash, runner kill, hang: detection, fault -> training again,
 *             steps lost, where a rank crash's time to the gang stopped goes (recovery.ts,
 *             crash-path.ts; alone: npm run bench:recovery)
 *   throughput train.py steps/s under the controller against bare torchrun on the same hosts,
 *             alternating pairs (throughput.ts; BENCH_THROUGHPUT_PAIRS, BENCH_THROUGHPUT_STEPS)
 *   idle      a controller with 1000 job files: start-up, RSS, idle CPU (idle.ts)
 *   gitops    commit -> Starting with `ugro sync` and at the polling interval, idle fetch cost,
 *             with a git server on gpu-master (gitops.ts; alone: npm run bench:gitops)
 *   progress  metrics line -> status file and /metrics; the controller's CPU with 0, 10, 100
 *             running jobs; the progress watcher's tick (progress.ts; BENCH_PROGRESS_SAMPLES,
 *             BENCH_PROGRESS_WINDOW_S; alone: BENCH_SECTIONS=progress npm run bench)
 * With only cli and/or placement, the lab is not needed.
 *
 * Not sections (each needs its own process or setup), each its own npm script:
 *   npm run bench:observability   dashboard first paint, /metrics with 1000 jobs, telemetry RSS
 *                                 (observability.ts; no lab; node --expose-gc; needs /usr/bin/chromium)
 *   npm run bench:slurm           Slurm submit -> RUNNING against the SSH launch, squeue over 1000
 *                                 jobs (slurm.ts; on the lab, brings `lab slurm` up if it is down)
 *   npm run bench:preemption      job file -> Preempted decision -> victim's run gone -> preemptor
 *                                 launched (preemption.ts; on the lab; BENCH_PREEMPTIONS, default 3)
 * Lab benches share the lab: run them under `flock /run/lock/ugro-labtests.lock`, one at a time.
 *
 * Environment: BENCH_SECTIONS; BENCH_CLI_RUNS (default 25, at least 3; under 20 a quick look
 * only); BENCH_LAUNCHES (default 15); BENCH_STOPS (samples per stop method, default 3);
 * BENCH_FAULTS (samples per fault, default 3); BENCH_FAULT_KINDS (node-loss,rank-crash,
 * runner-kill,hang: default all); BENCH_JOBS (default 1000); BENCH_IDLE_S (idle window, default
 * 125; under 60 it holds no steady-state minute); BENCH_PLACEMENT_RUNS (default 20),
 * BENCH_PLACEMENT_JOBS (default 1000); BENCH_GITOPS_RUNS (default 5), BENCH_GITOPS_INTERVAL
 * (default 5), BENCH_GITOPS_IDLE_S (default 20); BENCH_THROUGHPUT_PAIRS (default 5),
 * BENCH_THROUGHPUT_STEPS (default 600). Results are printed and written to
 * .tmp/bench-<date>.json.
 *
 * A short run of everything (a few minutes instead of about half an hour):
 *   BENCH_CLI_RUNS=5 BENCH_LAUNCHES=3 BENCH_STOPS=1 BENCH_FAULTS=1 BENCH_IDLE_S=20 \
 *   BENCH_GITOPS_RUNS=2 BENCH_GITOPS_IDLE_S=5 flock /run/lock/ugro-labtests.lock npm run bench
 *
 * The lab hosts are network namespaces on this machine: they share its clock, PID namespace and
 * file system, which the bench uses (and checks first): host timestamps compare with Date.now()
 * here, /proc here shows every host's processes, run directories are read here directly.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER_FILE, newJobsDir, ROOT, startController, stopController } from '../lab/controller-harness.ts';
import { runCliBench } from './cli.ts';
import {
  cleanupAll,
  controllerStarted,
  intEnv,
  type Lab,
  LabDown,
  log,
  machine,
  onCleanup,
  preflight,
  scrubHosts,
} from './context.ts';
import { type GitopsBenchResult, gitopsBench, gitopsLines } from './gitops.ts';
import { type IdleReport, idleSection } from './idle.ts';
import { LAUNCH_GOALS, LAUNCH_SPEC, type LaunchReport, launchSection } from './launch.ts';
import { readText, round, type Summary, table } from './lib.ts';
import { type PlacementReport, placementLines, placementSection } from './placement.ts';
import { type ProgressReport, progressLines, progressSection } from './progress.ts';
import { FAULTS, type Fault, type RecoveryReport, recoverySection } from './recovery.ts';
import { recoveryLines } from './recovery-report.ts';
import { type StopReport, stopSection } from './stop.ts';
import { type ThroughputReport, throughputLines, throughputSection } from './throughput.ts';

const SECTIONS = [
  'cli',
  'placement',
  'launch',
  'stop',
  'recovery',
  'throughput',
  'idle',
  'gitops',
  'progress',
] as const;
/** Sections that need no lab. */
const OFF_LAB: readonly Section[] = ['cli', 'placement'];
type Section = (typeof SECTIONS)[number];

function sectionsWanted(): Section[] {
  const v = process.env.BENCH_SECTIONS?.trim();
  if (!v) return [...SECTIONS];
  const want = v.split(',').map((x) => x.trim());
  const bad = want.filter((x) => !(SECTIONS as readonly string[]).includes(x));
  if (bad.length || !want.length)
    throw new LabDown(`BENCH_SECTIONS: unknown section ${bad.join(', ')}; the sections are ${SECTIONS.join(',')}`);
  return SECTIONS.filter((s) => want.includes(s));
}

const CLI_RUNS = intEnv('BENCH_CLI_RUNS', 25);
const N_LAUNCH = intEnv('BENCH_LAUNCHES', 15);
const N_STOP = intEnv('BENCH_STOPS', 3);
const N_FAULTS = intEnv('BENCH_FAULTS', 3);
const N_JOBS = intEnv('BENCH_JOBS', 1000);
/** BENCH_FAULT_KINDS: a comma list of node-loss,rank-crash,runner-kill,hang (default all). */
function faultKinds(): Fault[] {
  const v = process.env.BENCH_FAULT_KINDS?.trim();
  if (!v) return [...FAULTS];
  const want = v.split(',').map((x) => x.trim());
  const bad = want.filter((x) => !(FAULTS as readonly string[]).includes(x));
  if (bad.length)
    throw new LabDown(`BENCH_FAULT_KINDS: unknown fault ${bad.join(', ')}; the faults are ${FAULTS.join(',')}`);
  return FAULTS.filter((f) => want.includes(f));
}
// Two resyncs (60 s apart): the first after start runs cold (JIT, caches), the second is the steady state.
const IDLE_S = intEnv('BENCH_IDLE_S', 125);
const PLACEMENT_RUNS = intEnv('BENCH_PLACEMENT_RUNS', 20);
const PLACEMENT_JOBS = intEnv('BENCH_PLACEMENT_JOBS', 1000);
const GITOPS_RUNS = intEnv('BENCH_GITOPS_RUNS', 5);
const GITOPS_INTERVAL = intEnv('BENCH_GITOPS_INTERVAL', 5);
const GITOPS_IDLE_S = intEnv('BENCH_GITOPS_IDLE_S', 20);
const TP_PAIRS = intEnv('BENCH_THROUGHPUT_PAIRS', 5);
const TP_STEPS = intEnv('BENCH_THROUGHPUT_STEPS', 600);

interface Report {
  date: string;
  sections: Section[];
  machine: ReturnType<typeof machine>;
  lab?: { hosts: string[]; cluster: string };
  config: Record<string, unknown>;
  cli?: Record<string, number>;
  placement?: PlacementReport;
  gitops?: GitopsBenchResult;
  launch?: LaunchReport;
  stop?: StopReport;
  recovery?: RecoveryReport;
  throughput?: ThroughputReport;
  manyJobs?: IdleReport;
  progress?: ProgressReport;
  sectionSeconds: Record<string, number>;
  /** /proc/loadavg's 1-minute figure when each section ended: anything else running shows here. */
  loadAfterSection: Record<string, number>;
  benchSeconds: number;
}

async function main(): Promise<number> {
  const began = Date.now();
  let sections: Section[];
  let kinds: Fault[];
  try {
    sections = sectionsWanted();
    kinds = faultKinds();
  } catch (e) {
    console.error(`ugro bench: ${(e as Error).message}`);
    return 2;
  }
  const onLab = sections.some((s) => !OFF_LAB.includes(s));
  let lab: Lab | undefined;
  if (onLab) {
    try {
      lab = await preflight();
    } catch (e) {
      if (e instanceof LabDown) {
        console.error(`ugro bench: ${e.message}`);
        return 2;
      }
      throw e;
    }
  }
  const mach = machine();
  log(`machine: ${mach.nproc} cores (nproc), ${mach.cpuModel}; sections ${sections.join(',')}`);
  // The controllers run `bin/ugro.mjs`, which runs dist/ only while it matches the sources.
  const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`npm run build failed: ${b.stderr}`);

  const r: Report = {
    date: new Date(began).toISOString(),
    sections,
    machine: mach,
    ...(lab ? { lab: { hosts: lab.hosts.map((h) => `${h.name} (${h.address})`), cluster: CLUSTER_FILE } } : {}),
    config: {
      cliRuns: CLI_RUNS,
      launches: N_LAUNCH,
      stopsPerMethod: N_STOP,
      faultSamples: N_FAULTS,
      jobs: N_JOBS,
      idleWindowS: IDLE_S,
      placementRuns: PLACEMENT_RUNS,
      placementJobs: PLACEMENT_JOBS,
      gitopsRuns: GITOPS_RUNS,
      gitopsIntervalS: GITOPS_INTERVAL,
      gitopsIdleWindowS: GITOPS_IDLE_S,
      throughputPairs: TP_PAIRS,
      throughputSteps: TP_STEPS,
      launchSpec: LAUNCH_SPEC,
      controllerArgs: 'controller --grace 5 (resync 60 s, health every 30 s)',
    },
    sectionSeconds: {},
    loadAfterSection: {},
    benchSeconds: 0,
  };
  const timed = async <T>(name: Section, fn: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    log(`section ${name}`);
    try {
      return await fn();
    } finally {
      r.sectionSeconds[name] = round((Date.now() - t) / 1000, 1);
      r.loadAfterSection[name] = Number((readText('/proc/loadavg') ?? '').split(' ')[0]);
    }
  };

  if (sections.includes('cli')) r.cli = await timed('cli', () => runCliBench({ runs: CLI_RUNS, log }));
  if (sections.includes('placement'))
    r.placement = await timed('placement', () => placementSection({ jobs: PLACEMENT_JOBS, runs: PLACEMENT_RUNS }));

  if (lab && (sections.includes('launch') || sections.includes('stop'))) {
    // One controller for launch and stop, as a user runs it (harness: `ugro controller --grace 5`).
    const jobsDir = newJobsDir();
    onCleanup(`remove ${jobsDir}`, () => rmSync(jobsDir, { recursive: true, force: true }));
    const ctl = startController(jobsDir);
    onCleanup('stop controller', () => stopController(ctl));
    await controllerStarted(ctl);
    const l = lab;
    if (sections.includes('launch')) r.launch = await timed('launch', () => launchSection(l, jobsDir, ctl, N_LAUNCH));
    if (sections.includes('stop')) r.stop = await timed('stop', () => stopSection(l, jobsDir, ctl, N_STOP));
    await stopController(ctl);
    await scrubHosts(lab);
  }
  if (lab && sections.includes('recovery')) {
    const l = lab;
    r.recovery = await timed('recovery', () => recoverySection(l, N_FAULTS, kinds));
    await scrubHosts(lab);
  }
  if (lab && sections.includes('throughput')) {
    const l = lab;
    r.throughput = await timed('throughput', () => throughputSection(l, TP_PAIRS, TP_STEPS));
    await scrubHosts(lab);
  }
  if (lab && sections.includes('idle')) r.manyJobs = await timed('idle', () => idleSection(N_JOBS, IDLE_S));
  if (lab && sections.includes('gitops')) {
    r.gitops = await timed('gitops', () =>
      gitopsBench({
        runs: GITOPS_RUNS,
        intervalSeconds: GITOPS_INTERVAL,
        idleWindowSeconds: GITOPS_IDLE_S,
        print: false,
      }),
    );
    await scrubHosts(lab);
  }

  if (lab && sections.includes('progress')) r.progress = await timed('progress', () => progressSection(lab!));

  r.benchSeconds = round((Date.now() - began) / 1000, 1);
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  const out = join(ROOT, '.tmp', `bench-${r.date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    out,
    `${JSON.stringify(r, (_k, v) => (typeof v === 'number' && !Number.isInteger(v) ? round(v, 3) : v), 2)}\n`,
  );
  console.log(report(r, out));
  return 0;
}

// ---------------------------------------------------------------------------------------------
// The printed report

const H = ['', 'n', 'min ms', 'p50 ms', 'p99 ms', 'max ms', 'mean ms'];
const row = (label: string, s: Summary) => [label, s.n, s.min, s.p50, s.p99, s.max, s.mean];
const met = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
const ms = (x: number) => `${round(x, 0)} ms`;

function cliLines(c: Record<string, number>): string[] {
  const base = c['node -e 0'];
  const ratio = (k: string) => c[`${k} / node -e 0`];
  const line = (k: string, goal?: number) =>
    [
      k.padEnd(36),
      `${c[k].toFixed(1).padStart(7)} ms`,
      `${ratio(k).toFixed(2).padStart(5)}x`,
      goal ? `  goal <= ${goal}x: ${met(ratio(k) <= goal)}` : '',
    ].join('  ');
  return [
    `1. CLI start-up: median wall time of ${c.runs} runs against \`node -e 0\` (${base.toFixed(1)} ms)` +
      (c.runs < 20 ? ' (under 20 runs: a quick look only)' : ''),
    line('ugro --help', 1.5),
    line('ugro get jobs (100 jobs)', 2),
    line('ugro get jobs (1000 jobs)'),
    line('ugro get jobs (100 jobs, no cache)'),
    line('ugro get jobs -o json (100 jobs)'),
    line('ugro --help from sources (tsx)'),
  ];
}

function launchLines(L: LaunchReport, n: number): string[] {
  return [
    `2. Launch: job file written -> torchrun started on the last host (dispatch), and -> every rank started ` +
      `(${n} launches each; ${L.percentiles})`,
    '   bare = the same launch.sh request sent by SshBackend.launch to the 3 hosts in parallel, warm SshPool',
    table(H, [
      row('dispatch: controller', L.controller.dispatchMs),
      row('dispatch: bare launch.sh', L.bare.dispatchMs),
      row('ctl: file -> reconcile decides', L.controller.decideMs),
      row('ctl: file -> first launched_at', L.controller.firstLaunchedMs),
      row('bare: call -> first launched_at', L.bare.firstLaunchedMs),
      row('bare: parallel launch.sh returns', L.bare.execMs),
      row('every rank: controller', L.controller.totalMs),
      row('every rank: bare', L.bare.totalMs),
      row('ctl: torchrun start+rdzv', L.controller.torchrunMs),
      row('bare: torchrun start+rdzv', L.bare.torchrunMs),
      row('ssh exec `true` (warm, serial)', L.sshExecRoundTripMs.true),
      row('ssh exec `ss -Hltn` (warm)', L.sshExecRoundTripMs['ss -Hltn']),
      row('launch.sh x3 parallel (`true`)', L.hostLaunchStepMs.launchSh),
      row('minimal setsid x3 (`true`)', L.hostLaunchStepMs.minimalSnippet),
    ]),
    `   dispatch controller/bare: p50 ${L.dispatchRatioP50}x, p99 ${L.dispatchRatioP99}x ` +
      `(overhead ${L.dispatchOverheadP50Ms} ms at p50);  goal "dispatch p50 <= ${LAUNCH_GOALS.dispatchRatio}x bare": ` +
      met(L.goals.dispatchWithin1_3xOfBare),
    `   every rank started controller/bare: p50 ${L.totalRatioP50}x, p99 ${L.totalRatioP99}x;  ` +
      `goal "p50 under 500 ms": ${met(L.goals.totalP50Under500ms)} (controller p50 ${ms(L.controller.totalMs.p50)}: ` +
      'torch start-up on this machine)',
    `   warm-up launch (excluded): controller ${L.warmup.controller.totalMs} ms, bare ${L.warmup.bare.totalMs} ms`,
  ];
}

function stopLines(S: StopReport, L: LaunchReport | undefined, n: number): string[] {
  const lines = [
    `3. Stop: action -> no process of the run on any host (${n} samples each; grace 5 s, processes exit on SIGTERM)`,
    table(H, [
      row('ugro cancel (from CLI start)', S.cancel.totalMs),
      row('  from control file write', S.cancel.fromControlMs),
      row('  ugro cancel CLI runtime', S.cancel.cliMs),
      row('  control file -> "stopping run"', S.cancel.detectMs),
      row('  "stopping run" -> none left', S.cancel.killMs),
      row('delete job file', S.delete.totalMs),
      row('  unlink -> "stopping run"', S.delete.detectMs),
      row('  "stopping run" -> none left', S.delete.killMs),
    ]),
  ];
  if (L)
    lines.push(
      '   and the measured launches of the launch section, each stopped right after its ranks started:',
      table(H, [
        row('ctl: delete -> none left', L.stopAfterLaunch.controllerDeleteMs),
        row('ctl: delete -> status removed', L.stopAfterLaunch.controllerStatusGoneMs),
        row('bare: SIGTERM -> none left', L.stopAfterLaunch.bareSigtermMs),
      ]),
    );
  return lines;
}

function idleLines(m: IdleReport): string[] {
  return [
    `5. Controller with ${m.jobs} job files (${m.spec})`,
    table(
      ['', 'value'],
      [
        ['startup: spawn -> "controller started" (ms)', m.startupToReadyMs],
        [`startup: spawn -> ${m.jobs} statuses written (ms)`, m.startupToSettledMs],
        ['CPU seconds used to settle', m.cpuSecondsToSettle],
        ['RSS at settle, controller tree (MiB)', m.rssMiBAtSettle],
        [`idle CPU over ${m.idleWindowS} s (% of one core)`, m.idleCpuPctOfOneCore],
        ['idle CPU, last 60 s: steady state (%)', m.idleWindowS >= 60 ? m.idleCpuPctLastMinute : 'n/a (window < 60 s)'],
        ['idle CPU, busiest second (%)', m.idleCpuMaxOneSecondPct],
        ['idle seconds above 5% CPU', m.secondsAbove5Pct],
        ['RSS during idle, max (MiB)', m.rssMiBIdleMax],
        ['RSS after idle window (MiB)', m.rssMiBAfterWindow],
        ['peak RSS of the controller process, VmHWM (MiB)', m.vmHwmMiB],
        ['processes in the controller tree', m.processes],
        ['status files rewritten while idle', m.statusFilesRewrittenDuringIdle],
      ],
    ),
  ];
}

function report(r: Report, out: string): string {
  const m = r.machine;
  const lines = [
    '',
    `UGRO bench ${r.date}  (${r.benchSeconds} s; sections ${r.sections.join(',')}: ` +
      `${Object.entries(r.sectionSeconds)
        .map(([k, v]) => `${k} ${v} s`)
        .join(', ')})`,
    `machine: ${m.nproc} cores (nproc) ${m.cpuModel}, ${m.memGiB} GiB RAM, Node ${m.node}, Linux ${m.kernel}, ` +
      `load at start ${m.loadavgAtStart}`,
    `load (1 min) after each section: ${Object.entries(r.loadAfterSection)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    ...(r.lab ? [`lab: ${r.lab.hosts.join(', ')}`] : []),
  ];
  if (r.cli) lines.push('', ...cliLines(r.cli));
  if (r.placement) lines.push('', ...placementLines(r.placement));
  if (r.launch) lines.push('', ...launchLines(r.launch, N_LAUNCH));
  if (r.stop) lines.push('', ...stopLines(r.stop, r.launch, N_STOP));
  if (r.recovery) lines.push('', ...recoveryLines(r.recovery));
  if (r.throughput)
    lines.push('', '4b. Training throughput: UGRO against bare torchrun', ...throughputLines(r.throughput));
  if (r.manyJobs) lines.push('', ...idleLines(r.manyJobs));
  if (r.gitops) lines.push('', `6. GitOps (${r.gitops.launchMs.length} samples per figure)`, ...gitopsLines(r.gitops));
  if (r.progress) lines.push('', ...progressLines(r.progress));
  lines.push('', `JSON: ${out}`);
  return lines.join('\n');
}

const rc = await main().catch(async (e: Error) => {
  console.error(`ugro bench: failed: ${e.stack ?? e.message}`);
  return 1;
});
await cleanupAll();
process.exit(rc);
