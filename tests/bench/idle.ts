/**
 * Bench section "idle": a controller with 1000 job files (BENCH_JOBS): its start-up to settle
 * them, RSS, and CPU while idle over BENCH_IDLE_S seconds (two 60 s resyncs: the first after
 * start runs cold, the second is the steady state).
 */
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { job, newJobsDir, readStatus, startController, stopController } from '../lab/controller-harness.ts';
import { controllerStarted, log, onCleanup, PREFIX, pad, sh } from './context.ts';
import { LAUNCH_SPEC } from './launch.ts';
import { poll, procStatusKiB, round, sleep, treeUsage } from './lib.ts';

export async function idleSection(jobs: number, idleS: number) {
  const clkTck = Number(sh('getconf', ['CLK_TCK']).out.trim()) || 100;
  const dir = newJobsDir();
  onCleanup(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  // suspend: true: valid specs the controller must parse, hash, schedule-check and write a status
  // for (phase Suspended), but never launch. (Suspended is not terminal, so the periodic resync
  // reconciles every one of them again: that is in the idle window below.)
  for (let i = 0; i < jobs; i++)
    writeFileSync(
      join(dir, `${PREFIX}s-${pad(i, 4)}.yaml`),
      job(`${PREFIX}s-${pad(i, 4)}`, { ...LAUNCH_SPEC, suspend: true }),
    );
  const t0 = Date.now();
  const ctl = startController(dir);
  onCleanup(`stop controller (${jobs} jobs)`, () => stopController(ctl));
  const pid = ctl.pid!;
  const started = await controllerStarted(ctl, 120_000);
  const count = () => readdirSync(dir).filter((f) => f.endsWith('.status.yaml')).length;
  const settled = await poll(
    `${jobs} status files`,
    () => (count() >= jobs ? Date.now() : ctl.exitCode !== null ? -1 : undefined),
    300_000,
    50,
  );
  if (settled < 0) throw new Error(`controller exited: ${ctl.logText()}`);
  const settleUsage = treeUsage(pid);
  const phases = new Map<string, number>();
  for (let i = 0; i < jobs; i++) {
    const p = readStatus(dir, `${PREFIX}s-${pad(i, 4)}`)?.phase ?? 'missing';
    phases.set(p, (phases.get(p) ?? 0) + 1);
  }
  if (phases.get('Suspended') !== jobs)
    throw new Error(`expected ${jobs} Suspended, got ${JSON.stringify(Object.fromEntries(phases))}`);
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
  log(`${jobs}-job controller settled; idle window ${idleS} s`);
  while (Date.now() - tw0 < idleS * 1000) {
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
    jobs,
    spec: 'script train.py, nodes 3, suspend: true (parsed, tracked, status Suspended, never launched)',
    startupToReadyMs: started - t0,
    startupToSettledMs: settled - t0,
    cpuSecondsToSettle: round(settleUsage.ticks / clkTck, 2),
    rssMiBAtSettle: round(settleUsage.rssKiB / 1024, 1),
    idleWindowS: round(windowS, 1),
    idleCpuPctOfOneCore: round(((w1.ticks - w0.ticks) / clkTck / windowS) * 100, 2),
    idleCpuSeconds: round((w1.ticks - w0.ticks) / clkTck, 2),
    /**
     * The last 60 s of the window: one warm resync of every job and two health probes, as a
     * long-running controller spends each minute.
     */
    idleCpuPctLastMinute: round(perSecond.slice(-60).reduce((a, b) => a + b, 0) / Math.min(60, perSecond.length), 2),
    idleCpuMaxOneSecondPct: round(Math.max(...perSecond), 1),
    /**
     * % of one core in each second of the window; the controller started at -windowStartS, so its
     * 60 s resync lands at 60 - windowStartS.
     */
    idleCpuPerSecondPct: perSecond.map((x) => round(x, 1)),
    windowStartS: round((tw0 - t0) / 1000, 1),
    secondsAbove5Pct: perSecond.filter((x) => x > 5).length,
    rssMiBIdleMax: round(Math.max(...rss) / 1024, 1),
    rssMiBAfterWindow: round(w1.rssKiB / 1024, 1),
    vmHwmMiB: round((procStatusKiB(pid, 'VmHWM') ?? Number.NaN) / 1024, 1),
    processes: w1.pids.length,
    statusFilesRewrittenDuringIdle: rewritten,
    reconcileErrorsLogged: reconcileErrors,
  };
  await stopController(ctl);
  return result;
}

export type IdleReport = Awaited<ReturnType<typeof idleSection>>;
