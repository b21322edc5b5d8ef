/**
 * Bench section "progress" (issue 15: progress between reconciles), on the lab:
 *  (a) a metrics line written -> visible in the status file and on /metrics (one running job;
 *      the line appended at a random moment of the watcher's 1 s tick; BENCH_PROGRESS_SAMPLES);
 *  (b) the controller's CPU per minute with 0, 10 and 100 running jobs (BENCH_PROGRESS_WINDOW_S),
 *      their metrics files appended to once a second (and 100 with no appends: the polling
 *      alone), with the hosts' side (the lab users' sshd and the scripts it ran) and, from the
 *      /metrics scrapes, how late each appended step was (ugro_job_last_progress_timestamp_seconds);
 *  (c) the watcher alone: CPU and wall time of one tick over 100 run dirs on the 3 hosts, with
 *      nothing changed and with every file changed (the figures of the polling decision).
 *
 * The jobs are cheap long sleeps: real run dirs made by launch.sh (through SshBackend, the
 * runner, rank.sh and a `sleep`), whose job files the controller then adopts as Running, and
 * whose metrics.jsonl this process appends to (the lab shares this file system). 100 real
 * torchruns would not fit this machine. The controller runs in this process (the same Controller
 * and Observability `ugro controller` wires, its CPU from process.cpuUsage, the appender's own
 * CPU taken out), over its own SshPool with 64 channels a host instead of the CLI's 8: each live
 * run part holds one channel for its waiter (wait.sh), and 34 of them on one host would take all
 * 8 (docs/architecture.md, known gap 1). The cheap runs and the controller: progress-runs.ts.
 */
import { readFileSync, watch } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { progressTargets } from '../../controller/core/live-progress.ts';
import { ProgressWatcher } from '../../controller/loop/progress-watcher.ts';
import { newJobsDir } from '../lab/controller-harness.ts';
import { intEnv, type Lab, log, scrubHosts } from './context.ts';
import { round, type Summary, sleep, summarize, table } from './lib.ts';
import {
  allRunning,
  appendAll,
  appendEverySecond,
  clockTicks,
  controllerFor,
  cpuMs,
  hostsTicks,
  labRuntime,
  makeRuns,
  QUIET,
  ticksDelta,
} from './progress-runs.ts';

/** One window of (b). */
interface WindowResult {
  jobs: number;
  mode: string;
  windowS: number;
  controllerCpuSPerMin: number;
  controllerCpuPctOfCore: number;
  hostsCpuSPerMin: number;
  progressReadsPerMin: number;
  statusWritesPerMin: number;
  appenderCpuSPerMin: number;
  /** Appended -> the controller wrote it (ugro_job_last_progress_timestamp_seconds), from /metrics. */
  latenessMs?: Summary;
}

/** (a) One job: line appended at a random moment -> status file shows it, and /metrics does. */
async function latency(lab: Lab, samples: number) {
  const jobsDir = newJobsDir();
  const rt = labRuntime(lab);
  const [run] = await makeRuns(lab, rt.runtime, jobsDir, 1);
  const c = await controllerFor(lab, jobsDir, rt);
  await allRunning(jobsDir, [run]);
  const statusFile = join(jobsDir, `${run.name}.status.yaml`);
  const toStatus: number[] = [];
  const toMetrics: number[] = [];
  for (let i = 0; i < samples; i++) {
    await sleep(Math.random() * 1000);
    appendAll([run]);
    const t0 = run.at.get(run.step)!;
    const step = run.step;
    const inStatus = new Promise<number>((ok) => {
      const check = () => {
        try {
          const s = parse(readFileSync(statusFile, 'utf8')) as { progress?: { step?: number } };
          if (s.progress?.step === step) {
            w.close();
            ok(Date.now());
          }
        } catch {
          /* between the temp file and the rename */
        }
      };
      const w = watch(jobsDir, (_e, f) => {
        if (f === `${run.name}.status.yaml`) check();
      });
      check();
    });
    const line = new RegExp(`^ugro_job_step\\{job="${run.name}"\\} ${step}$`, 'm');
    let seen: number | undefined;
    while (seen === undefined) {
      if (line.test(await (await fetch(c.metricsUrl)).text())) seen = Date.now();
      else await sleep(25);
    }
    toMetrics.push(seen - t0);
    toStatus.push((await inStatus) - t0);
  }
  await c.stop();
  await scrubHosts(lab);
  return { toStatusMs: summarize(toStatus), toMetricsMs: summarize(toMetrics) };
}

/** (b) The controller's CPU over a window with n running jobs. */
async function cpuWindow(lab: Lab, n: number, windowS: number, modes: ('appends' | 'quiet')[]) {
  const jobsDir = newJobsDir();
  const rt = labRuntime(lab);
  const runs = n ? await makeRuns(lab, rt.runtime, jobsDir, n) : [];
  const c = await controllerFor(lab, jobsDir, rt);
  if (n) await allRunning(jobsDir, runs);
  const out: WindowResult[] = [];
  for (const mode of modes) {
    const appender = mode === 'appends' && n ? appendEverySecond(runs) : undefined;
    const appendCpu = () => appender?.cpuMs() ?? 0;
    await sleep(10_000); // warm: JIT, caches, the first reads of every file
    const lateness: number[] = [];
    const seen = new Set<string>();
    const scrape = async () => {
      const text = await (await fetch(c.metricsUrl)).text();
      const step = new Map<string, number>();
      for (const m of text.matchAll(/^ugro_job_step\{job="([^"]+)"\} (\d+)$/gm)) step.set(m[1], Number(m[2]));
      for (const m of text.matchAll(/^ugro_job_last_progress_timestamp_seconds\{job="([^"]+)"\} ([\d.e+]+)$/gm)) {
        const r = runs.find((x) => x.name === m[1]);
        const s = step.get(m[1]);
        const at = s === undefined ? undefined : r?.at.get(s);
        if (at === undefined || seen.has(`${m[1]}/${s}`)) continue;
        seen.add(`${m[1]}/${s}`);
        lateness.push(Number(m[2]) * 1000 - at);
      }
    };
    const w0 = { cpu: cpuMs(), append: appendCpu(), hosts: hostsTicks(lab), t: Date.now(), writes: c.writes() };
    const s0 = { ...c.ctl.progress.stats };
    while (Date.now() - w0.t < windowS * 1000) {
      await sleep(5000);
      if (appender) await scrape();
    }
    const seconds = (Date.now() - w0.t) / 1000;
    const cpu = cpuMs() - w0.cpu - (appendCpu() - w0.append);
    const hostCpuS = ticksDelta(w0.hosts, hostsTicks(lab)) / clockTicks();
    appender?.stop();
    const perMin = (x: number) => round((x / seconds) * 60, 2);
    out.push({
      jobs: n,
      mode: n ? mode : 'no jobs',
      windowS: round(seconds, 1),
      controllerCpuSPerMin: perMin(cpu / 1000),
      controllerCpuPctOfCore: round((cpu / 1000 / seconds) * 100, 2),
      hostsCpuSPerMin: perMin(hostCpuS),
      progressReadsPerMin: perMin(c.ctl.progress.stats.reads - s0.reads),
      statusWritesPerMin: perMin(c.writes() - w0.writes),
      appenderCpuSPerMin: perMin((appendCpu() - w0.append) / 1000),
      ...(lateness.length ? { latenessMs: summarize(lateness) } : {}),
    });
    log(`progress: ${JSON.stringify(out.at(-1))}`);
  }
  await c.stop();
  await scrubHosts(lab);
  return out;
}

/** (c) The watcher alone over 100 run dirs: one tick with nothing changed, and with every file changed. */
async function watcherAlone(lab: Lab, n: number, ticks: number) {
  const jobsDir = newJobsDir();
  const { pool, runtime: rt } = labRuntime(lab);
  const runs = await makeRuns(lab, rt, jobsDir, n);
  const parts = (await Promise.all(lab.hosts.map((h) => rt.observe(h)))).flatMap((o) => o.parts);
  const w = new ProgressWatcher({
    runtime: rt,
    host: (name) => lab.hosts.find((h) => h.name === name),
    targets: () =>
      progressTargets(
        parts,
        (j) => ({ phase: 'Running', runId: parts.find((p) => p.meta.job === j)!.meta.runId }),
        () => false,
      ),
    unreachable: () => false,
    onProgress: () => undefined,
    log: QUIET,
  });
  appendAll(runs);
  await w.tick(); // every file read once: the signatures are known
  const clk = clockTicks();
  const measure = async (change: boolean) => {
    const cpu: number[] = [];
    const wall: number[] = [];
    const h0 = hostsTicks(lab);
    for (let i = 0; i < ticks; i++) {
      if (change) appendAll(runs);
      const c0 = cpuMs();
      const t0 = performance.now();
      await w.tick();
      wall.push(performance.now() - t0);
      cpu.push(cpuMs() - c0);
    }
    const hostsMs = (ticksDelta(h0, hostsTicks(lab)) / clk) * 1000;
    return {
      cpuMsPerTick: summarize(cpu),
      wallMsPerTick: summarize(wall),
      hostsCpuMsPerTick: round(hostsMs / ticks, 1),
    };
  };
  const quiet = await measure(false);
  const changed = await measure(true);
  await w.stop();
  pool.close();
  await scrubHosts(lab);
  return { runs: n, hosts: lab.hosts.length, ticks, unchanged: quiet, everyFileChanged: changed };
}

export async function progressSection(lab: Lab) {
  const samples = intEnv('BENCH_PROGRESS_SAMPLES', 30);
  const windowS = intEnv('BENCH_PROGRESS_WINDOW_S', 60);
  log(`progress (a): ${samples} samples, one job`);
  const a = await latency(lab, samples);
  log(`progress (b): CPU over ${windowS} s windows, 0, 10 and 100 running jobs`);
  const b = [
    ...(await cpuWindow(lab, 0, windowS, ['quiet'])),
    ...(await cpuWindow(lab, 10, windowS, ['appends'])),
    ...(await cpuWindow(lab, 100, windowS, ['quiet', 'appends'])),
  ];
  log('progress (c): the watcher alone, 100 run dirs');
  const c = await watcherAlone(lab, 100, 20);
  return { samples, windowS, latency: a, cpu: b, watcher: c };
}

export type ProgressReport = Awaited<ReturnType<typeof progressSection>>;

const H = ['', 'n', 'min ms', 'p50 ms', 'p99 ms', 'max ms', 'mean ms'];
const row = (label: string, s: Summary) => [label, s.n, s.min, s.p50, s.p99, s.max, s.mean];

export function progressLines(p: ProgressReport): string[] {
  return [
    `7. Progress between reconciles: metrics line written -> visible (one job, ${p.samples} samples; goal < 3000 ms)`,
    table(H, [row('line -> status file', p.latency.toStatusMs), row('line -> /metrics', p.latency.toMetricsMs)]),
    `   the controller's CPU over ${p.windowS} s, jobs appending one metrics line a second (in this process, ` +
      "appender taken out); hosts = the lab users' sshd and the scripts it ran",
    table(
      [
        'jobs',
        'metrics files',
        'ctl CPU s/min',
        '% of a core',
        'hosts CPU s/min',
        'reads/min',
        'writes/min',
        'late p50',
        'p99',
      ],
      p.cpu.map((x) => [
        x.jobs,
        x.mode,
        x.controllerCpuSPerMin,
        x.controllerCpuPctOfCore,
        x.hostsCpuSPerMin,
        x.progressReadsPerMin,
        x.statusWritesPerMin,
        x.latenessMs ? round(x.latenessMs.p50, 0) : '-',
        x.latenessMs ? round(x.latenessMs.p99, 0) : '-',
      ]),
    ),
    `   the watcher alone, one tick over ${p.watcher.runs} run dirs on ${p.watcher.hosts} hosts ` +
      `(${p.watcher.ticks} ticks; ` +
      `the hosts' CPU per tick: ${p.watcher.unchanged.hostsCpuMsPerTick} ms unchanged, ` +
      `${p.watcher.everyFileChanged.hostsCpuMsPerTick} ms all changed):`,
    table(H, [
      row('unchanged: CPU', p.watcher.unchanged.cpuMsPerTick),
      row('unchanged: wall', p.watcher.unchanged.wallMsPerTick),
      row('all changed: CPU', p.watcher.everyFileChanged.cpuMsPerTick),
      row('all changed: wall', p.watcher.everyFileChanged.wallMsPerTick),
    ]),
  ];
}
