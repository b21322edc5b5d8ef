/**
 * Bench section "stop": `ugro cancel NAME`, and deleting the job file, on a running job -> no
 * process of the run left on any host.
 *
 * "No process of the run left" is the marker stop.sh itself uses: no process whose environment
 * has UGRO_RUN_ID=<run id> (zombies have an empty environ and do not count). The lab hosts share
 * this machine's PID namespace, so /proc here shows every host's processes: the bench scans it
 * every 20 ms (an ssh round trip per host per poll would be coarser and would load the hosts'
 * sshd during the stop), then confirms over ssh with the lab tests' markedProcesses.
 */
import { spawn } from 'node:child_process';
import { statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CLUSTER_FILE, markedProcesses, ROOT, readStatus, waitFor, waitPhase } from '../lab/controller-harness.ts';
import { type Controller, diag, type Lab, log, PREFIX, pad, writeJobAtomic } from './context.ts';
import { findRunDir, markedPids, poll, readRanks, readText, round, type Summary, sleep, summarize } from './lib.ts';

/** Long-running training for the stop samples. */
export const LONG_SPEC = {
  script: 'train.py',
  args: ['--model', 'tiny-mlp', '--epochs', '1000', '--sleep', '0.05'],
  nodes: 3,
};

interface StopSample {
  how: 'cancel' | 'delete';
  /** From the action (spawning `ugro cancel`, or unlink) to no process of the run on any host. */
  totalMs: number;
  /** cancel only: from the control file's write (its mtime) to no process left. */
  fromControlMs?: number;
  /** cancel only: how long the `ugro cancel` CLI ran. */
  cliMs?: number;
  /**
   * From the control file write (cancel) or the unlink (delete) to the controller's "stopping run"
   * log line (ms precision).
   */
  detectMs?: number;
  /** From the "stopping run" log line to no process left (stop.sh on each host + the processes' exit). */
  killMs?: number;
  processesBefore: number;
  /** Bench bookkeeping (not latency): job written -> Running -> training -> stopped -> status gone. */
  stagesMs?: Record<string, number>;
}

async function stopSample(
  lab: Lab,
  jobsDir: string,
  ctl: Controller,
  how: 'cancel' | 'delete',
  name: string,
): Promise<StopSample> {
  const tw = writeJobAtomic(jobsDir, name, LONG_SPEC);
  // Not waitPhase('Running'): the controller may report Running a little after the ranks start.
  // The run id is in the status from the launch on; training really in progress is every rank's
  // log having train.py's "rank R/3 on HOST backend=..." line.
  const st = await waitFor(
    `${name} has a run id`,
    () => {
      const x = readStatus(jobsDir, name);
      return x?.runId ? x : undefined;
    },
    60_000,
    50,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${diag(lab, jobsDir, ctl, name)}`);
  });
  const runId = st.runId!;
  await poll(
    `${name}: every rank training`,
    () =>
      lab.hosts.every((h) => {
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
  const left = (await Promise.all(lab.hosts.map((h) => markedProcesses(lab.pool, h.name, runId)))).flat();
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

function summarizeDefined(xs: (number | undefined)[]): Summary {
  return summarize(xs.filter((x): x is number => x !== undefined));
}

function roundSample<T extends object>(s: T): T {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === 'number' ? round(v, 1) : v])) as T;
}

/** The stop section on a running controller: `stops` samples per method, cancel and delete alternating. */
export async function stopSection(lab: Lab, jobsDir: string, ctl: Controller, stops: number) {
  const samples: StopSample[] = [];
  for (let i = 1; i <= stops; i++) {
    for (const how of ['cancel', 'delete'] as const) {
      const s = await stopSample(lab, jobsDir, ctl, how, `${PREFIX}${how[0]}-${pad(i)}`);
      samples.push(s);
      const extra =
        s.fromControlMs !== undefined
          ? ` (from control file ${round(s.fromControlMs, 0)} ms, cli ${round(s.cliMs!, 0)} ms)`
          : '';
      log(`stop ${i}/${stops} ${how}: ${round(s.totalMs, 0)} ms [stages ${JSON.stringify(s.stagesMs)}]${extra}`);
      await sleep(300);
    }
  }
  const cancel = samples.filter((s) => s.how === 'cancel');
  const del = samples.filter((s) => s.how === 'delete');
  return {
    definition:
      'action -> no process whose environ has UGRO_RUN_ID=<run> on any host ' +
      '(polled in /proc here every 20 ms; then confirmed over ssh)',
    longSpec: LONG_SPEC,
    cancel: {
      totalMs: summarize(cancel.map((s) => s.totalMs)),
      fromControlMs: summarize(cancel.map((s) => s.fromControlMs!)),
      cliMs: summarize(cancel.map((s) => s.cliMs!)),
      detectMs: summarizeDefined(cancel.map((s) => s.detectMs)),
      killMs: summarizeDefined(cancel.map((s) => s.killMs)),
      samples: cancel.map(roundSample),
    },
    delete: {
      totalMs: summarize(del.map((s) => s.totalMs)),
      detectMs: summarizeDefined(del.map((s) => s.detectMs)),
      killMs: summarizeDefined(del.map((s) => s.killMs)),
      samples: del.map(roundSample),
    },
  };
}

export type StopReport = Awaited<ReturnType<typeof stopSection>>;
