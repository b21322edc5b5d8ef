/**
 * Bench section "recovery": real faults on the lab, against a real `ugro controller`, with the
 * reference scripts/train.py training (gloo) and checkpointing. Printed, not asserted. Per fault
 * and sample (BENCH_FAULTS, default 3):
 *
 *   detection      fault -> the job's status shows it: the NodeLost condition (node loss), the
 *                  RunnerVanished / ProgressStalled failure record (runner kill, hang), for a rank
 *                  crash the gang stopped (no process of the attempt left on any host; the status's
 *                  RankFailed record is shown beside it). The status file is read every 20 ms and
 *                  the gang watched in /proc here every 20 ms; the controller's own time of the
 *                  decision (in the record) is kept beside it.
 *   training again fault -> the first training step of the new attempt: the `time` of the first
 *                  line of its rank 0's metrics.jsonl (train.py --metrics-every 1 writes one per
 *                  step, on the host, whose clock is this machine's).
 *   steps lost     the last step before the fault (rank 0's last metrics line when the fault is
 *                  made) - the step the new attempt resumed from (its rank 0 log:
 *                  `resumed from step-N (step S, …)`).
 *
 * Faults, the way tests/lab/recovery.test.ts makes them: node loss = `lab cut gpu2` on a job with
 * nodes {min: 2, max: 3} (its moment is when gpu2's link is down, seen in /sys here); rank crash
 * = kill -9 of rank 1's python; runner kill = kill -9 of the runner (the run dir's `pid`) on
 * gpu1; hang = kill -STOP of rank 2's python with failurePolicy.progressDeadlineSeconds: 6.
 * Every fault is undone in `finally` (heal, SIGKILL of the stopped rank) and each sample's job is
 * deleted, its processes gone, before the next one.
 *
 * The torchrun start-up the goal is measured against is the same samples' first attempts: the
 * last host's launched_at -> their first training step (python and torch import, c10d rendezvous,
 * init_process_group, one step).
 */
import { existsSync, mkdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newJobsDir, ROOT, rankPid, readStatus, startController, stopController } from '../lab/controller-harness.ts';
import {
  type Controller,
  controllerStarted,
  diag,
  type Lab,
  log,
  onCleanup,
  PREFIX,
  pad,
  writeJobAtomic,
} from './context.ts';
import { type CrashPath, crashPath, describeProcess, watchAgentLogs } from './crash-path.ts';
import { markedPids, poll, readText, round, sleep, summarize } from './lib.ts';
import { attemptDirs, failureOf, labVerb, lastStep, metrics } from './recovery-lab.ts';
import { faultSummaries } from './recovery-report.ts';

export const FAULTS = ['node-loss', 'rank-crash', 'crash-stuck-peer', 'runner-kill', 'hang'] as const;
export type Fault = (typeof FAULTS)[number];

/** Checkpoint interval in steps (train.py --checkpoint-every; epochs of 20 steps end on one too). */
export const CHECKPOINT_EVERY = 10;
const TRAIN_ARGS = [
  '--model',
  'tiny-mlp',
  '--epochs',
  '60',
  '--steps-per-epoch',
  '20',
  '--sleep',
  '0.1',
  '--checkpoint-every',
  String(CHECKPOINT_EVERY),
  '--metrics-every',
  '1',
];
/** Restarts after 1 s for training failures too (infrastructure failures wait 1 s by default). */
const RESTART_POLICY = { maxRestarts: 3, backoffSeconds: 1 };
const PROGRESS_DEADLINE_S = 6;
/** gpu2's link as this machine sees it: lab.sh names host i's root-namespace veth ugv<i>. */
const GPU2_LINK = '/sys/class/net/ugv2/operstate';

export const RECOVERY_GOALS = {
  nodeLossDetectedMs: 5000,
  rankCrashDetectedMs: 1000,
  /** fault -> training again < torchrun start-up + this. */
  trainingAgainSlackMs: 5000,
  stepsLost: CHECKPOINT_EVERY,
};

function specOf(fault: Fault): Record<string, unknown> {
  return {
    script: 'train.py',
    args: TRAIN_ARGS,
    nodes: fault === 'node-loss' ? { min: 2, max: 3 } : 3,
    restartPolicy: RESTART_POLICY,
    ...(fault === 'hang' ? { failurePolicy: { progressDeadlineSeconds: PROGRESS_DEADLINE_S } } : {}),
  };
}

export interface RecoverySample {
  fault: Fault;
  sample: number;
  /** fault -> the status shows it (see the header). */
  detectedMs: number;
  /** What detectedMs is. */
  detectedBy: string;
  /** fault -> the controller's own time of the decision the status shows (its record or condition). */
  decidedMs: number;
  /** rank crash: fault -> the status file showing the RankFailed record. */
  statusRecordMs?: number;
  /** fault -> no process of the failed attempt left (not for node loss: the cut host's cannot be reached). */
  gangStoppedMs?: number;
  /** fault -> the new attempt's first training step. */
  trainingAgainMs: number;
  /** The status's detection -> the new attempt's first training step. */
  detectedToTrainingMs: number;
  /** The new attempt: last host's launched_at -> its first training step. */
  restartStartupMs: number;
  /** The failed attempt: last host's launched_at -> its first training step (torchrun start-up). */
  startupMs: number;
  stepAtFault: number;
  resumedStep: number;
  stepsLost: number;
  /** The failed attempt's last step (a killed runner's ranks train on until the gang is stopped). */
  lastStepOfAttempt: number;
  /** Rank crash: where the time to the gang stopped went (crash-path.ts). */
  path?: CrashPath;
  newAttemptHosts: string[];
  /** How long `lab cut` ran (node loss); the fault's moment is the link going down, inside it. */
  labVerbMs?: number;
}

async function oneSample(lab: Lab, jobsDir: string, ctl: Controller, fault: Fault, i: number) {
  const name = `${PREFIX}r-${fault}-${pad(i)}`;
  const why = (e: Error, attempt = 1) => new Error(`${name}: ${e.message}\n${diag(lab, jobsDir, ctl, name, attempt)}`);
  writeJobAtomic(jobsDir, name, specOf(fault));
  // Attempt 1 training, past one checkpoint, then a step that moves through the checkpoint
  // interval from sample to sample (so the fault does not always land at the same distance).
  const target = CHECKPOINT_EVERY + 2 + ((i * 3) % (CHECKPOINT_EVERY - 2));
  const first = await poll(
    `${name}: attempt 1 at step ${target}`,
    () => {
      const s = readStatus(jobsDir, name);
      if (!s?.runId || s.attempt !== 1 || s.nodes.length < 3) return undefined;
      const a = attemptDirs(lab, s);
      const m = metrics(join(a.rank0Dir, 'metrics.jsonl'));
      return m.length && m[m.length - 1].step >= target ? { a, m } : undefined;
    },
    120_000,
    20,
  ).catch((e: Error) => {
    throw why(e);
  });
  const a1 = first.a;
  const launched1 = a1.lastLaunchedAt();
  const startupMs = launched1 !== undefined ? first.m[0].at - launched1 : Number.NaN;
  let stopped: number | undefined;
  let t0 = 0;
  let labVerbMs: number | undefined;
  let stepAtFault = 0;
  const gpu2 = lab.hosts[2];
  // Rank crash: its torchrun.log files watched from just before the kill (crash-path.ts).
  let agentLogs: ReturnType<typeof watchAgentLogs> | undefined;
  try {
    // The fault.
    if (fault === 'node-loss') {
      const oper = GPU2_LINK;
      const cut = labVerb('cut', gpu2.name);
      const down = existsSync(oper)
        ? await poll(
            'gpu2 link down',
            () => ((readText(oper) ?? '').trim() === 'down' ? Date.now() : undefined),
            10_000,
            1,
          )
        : undefined;
      stepAtFault = lastStep(a1.rank0Dir);
      const v = await cut;
      t0 = down ?? v.endedAt;
      labVerbMs = v.endedAt - v.startedAt;
    } else if (fault === 'crash-stuck-peer') {
      // Rank 1 crashes while rank 2 cannot leave on its own (stopped: as a rank stuck in a
      // collective that never fails, e.g. NCCL waiting on the dead peer): the gang is gone only
      // when the controller's stop SIGKILLs it after its grace.
      const [crash, stuck] = await Promise.all(
        [1, 2].map((r) => poll(`${name}: rank ${r} pid`, () => rankPid(a1.runId, r), 10_000, 20)),
      );
      stepAtFault = lastStep(a1.rank0Dir);
      t0 = Date.now();
      process.kill(stuck, 'SIGSTOP');
      process.kill(crash, 'SIGKILL');
      stopped = stuck;
    } else if (fault === 'rank-crash' || fault === 'hang') {
      const rank = fault === 'rank-crash' ? 1 : 2;
      const pid = await poll(`${name}: rank ${rank} pid`, () => rankPid(a1.runId, rank), 10_000, 20);
      stepAtFault = lastStep(a1.rank0Dir);
      if (fault === 'rank-crash') agentLogs = watchAgentLogs(a1.hosts.map((h) => a1.dirOn(h)));
      t0 = Date.now();
      process.kill(pid, fault === 'rank-crash' ? 'SIGKILL' : 'SIGSTOP');
      if (fault === 'hang') stopped = pid;
    } else {
      const gpu1 = lab.hosts[1];
      const runner = Number(readText(join(a1.dirOn(gpu1.name), 'pid'))?.trim());
      if (!Number.isInteger(runner) || runner <= 1) throw new Error(`${name}: no runner pid on ${gpu1.name}`);
      stepAtFault = lastStep(a1.rank0Dir);
      t0 = Date.now();
      process.kill(runner, 'SIGKILL');
    }

    // Detection, and (not for a cut host) the gang gone. Both watched together.
    let gangStoppedMs: number | undefined;
    // Rank crash: what each live process of the gang is, so the last one alive can be named.
    let alive: string[] = [];
    const gone = () => {
      const pids = markedPids(a1.runId);
      if (fault === 'rank-crash' && pids.length)
        alive = pids.map((p) => describeProcess(lab, p)).filter((x): x is string => x !== undefined);
      return pids.length === 0;
    };
    const gang =
      fault === 'node-loss'
        ? Promise.resolve()
        : poll(`${name}: attempt 1 gone`, gone, 60_000, 20).then(() => {
            gangStoppedMs = Date.now() - t0;
          });
    const detectedBy =
      fault === 'node-loss'
        ? 'NodeLost condition'
        : fault === 'rank-crash' || fault === 'crash-stuck-peer'
          ? 'gang stopped'
          : fault === 'runner-kill'
            ? 'RunnerVanished record'
            : 'ProgressStalled record';
    // Seen: when the status file says it (polled every 20 ms); decided: the controller's own
    // timestamp in it (the reconcile that decided, which may write the file a little later).
    const shown = await poll(
      `${name}: ${detectedBy === 'gang stopped' ? 'RankFailed record' : detectedBy}`,
      () => {
        const s = readStatus(jobsDir, name);
        let decided: number | undefined;
        if (fault === 'node-loss') {
          const c = s?.conditions.find((x) => x.type === 'NodeLost');
          decided = c?.status === 'True' ? Date.parse(c.lastTransitionTime) : undefined;
        } else {
          const reason = fault === 'runner-kill' ? 'RunnerVanished' : fault === 'hang' ? 'ProgressStalled' : undefined;
          const f = failureOf(s, 1, reason);
          decided = f ? Date.parse(f.time) : undefined;
        }
        return decided !== undefined ? { seen: Date.now(), decided } : undefined;
      },
      60_000,
      20,
    ).catch((e: Error) => {
      throw why(e);
    });
    await gang.catch((e: Error) => {
      throw why(e);
    });
    const detectedMs = detectedBy === 'gang stopped' ? gangStoppedMs! : shown.seen - t0;

    // The new attempt training.
    const second = await poll(
      `${name}: attempt 2 training`,
      () => {
        const s = readStatus(jobsDir, name);
        if (!s?.runId || s.attempt < 2 || !s.nodes.length) return undefined;
        const a = attemptDirs(lab, s);
        const m = metrics(join(a.rank0Dir, 'metrics.jsonl'));
        return m.length ? { a, m } : undefined;
      },
      120_000,
      20,
    ).catch((e: Error) => {
      throw why(e, 2);
    });
    const a2 = second.a;
    const log0 = await poll(
      `${name}: attempt 2 rank 0 resumed`,
      () => {
        const t = readText(join(a2.rank0Dir, 'rank-0.log')) ?? '';
        return /resumed from/.test(t) ? t : undefined;
      },
      10_000,
      20,
    ).catch((e: Error) => {
      throw why(e, a2.attempt);
    });
    const resumed = /resumed from (step-\d+) \(step (\d+)/.exec(log0);
    if (!resumed) throw new Error(`${name}: attempt 2's rank 0 log does not say where it resumed:\n${log0}`);
    const resumedStep = Number(resumed[2]);
    const firstStepAt = second.m[0].at;
    // Read now: attempt 1's run dirs are still in place and the controller has logged its stop.
    const path =
      fault === 'rank-crash' && agentLogs
        ? crashPath({
            t0,
            dirs: a1.hosts.map((h) => a1.dirOn(h)),
            runId: a1.runId,
            job: name,
            crashedRank: 1,
            noticed: agentLogs.stop(),
            controllerLog: ctl.logText(),
            decidedAt: shown.decided,
            ...(gangStoppedMs !== undefined ? { gangStoppedAt: t0 + gangStoppedMs } : {}),
            ...(alive.length ? { lastAlive: [...new Set(alive)].sort().join('+') } : {}),
          })
        : undefined;
    const launched2 = a2.lastLaunchedAt();
    const s: RecoverySample = {
      fault,
      sample: i,
      detectedMs,
      detectedBy,
      decidedMs: shown.decided - t0,
      ...(detectedBy === 'gang stopped' ? { statusRecordMs: shown.seen - t0 } : {}),
      ...(gangStoppedMs !== undefined ? { gangStoppedMs } : {}),
      trainingAgainMs: firstStepAt - t0,
      detectedToTrainingMs: firstStepAt - (t0 + detectedMs),
      restartStartupMs: launched2 !== undefined ? firstStepAt - launched2 : Number.NaN,
      startupMs,
      stepAtFault,
      resumedStep,
      stepsLost: stepAtFault - resumedStep,
      lastStepOfAttempt: lastStep(a1.rank0Dir),
      newAttemptHosts: a2.hosts,
      ...(labVerbMs !== undefined ? { labVerbMs } : {}),
      ...(path ? { path } : {}),
    };
    return { s, runIds: [a1.runId, a2.runId] };
  } finally {
    agentLogs?.stop();
    // Undo the fault whatever happened above.
    if (fault === 'node-loss') {
      const healedAt = await labVerb('heal', gpu2.name).then(
        (v): number | undefined => v.startedAt,
        (e: Error) => {
          log(`warning: ${e.message}`);
          return undefined;
        },
      );
      // The next sample needs gpu2 in service again: the controller hearing from it once more
      // (it then takes back a lease that lapsed meanwhile).
      if (healedAt !== undefined) {
        await poll(
          `${gpu2.name} answering the controller again`,
          () =>
            ctl
              .logText()
              .split('\n')
              .some(
                (l) =>
                  l.includes('"msg":"host answers again"') &&
                  l.includes(`"host":"${gpu2.name}"`) &&
                  Date.parse((JSON.parse(l) as { time: string }).time) >= healedAt,
              ),
          60_000,
          100,
        ).catch((e: Error) => log(`warning: ${e.message}`));
        await sleep(1000);
      }
    }
    if (stopped !== undefined) {
      try {
        process.kill(stopped, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    // The job goes; nothing of any of its attempts may be left (a cut host's leftovers are
    // stopped by the controller once it answers again).
    try {
      unlinkSync(join(jobsDir, `${name}.yaml`));
    } catch {
      /* never written */
    }
    const all = () => markedPids(`${name}-`, true);
    await poll(`${name}: status removed`, () => !readStatus(jobsDir, name), 90_000, 100).catch((e: Error) =>
      log(`warning: ${e.message}`),
    );
    await poll(`${name}: no process left`, () => all().length === 0, 30_000, 100).catch((e: Error) => {
      log(`warning: ${e.message}; killing ${all().join(' ')}`);
      for (const pid of all()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    });
  }
}

/** The recovery section: its own controller (the harness's `ugro controller --grace 5`) on a fresh jobs dir. */
export async function recoverySection(lab: Lab, samples: number, kinds: readonly Fault[] = FAULTS) {
  const jobsDir = newJobsDir();
  onCleanup(`remove ${jobsDir}`, () => rmSync(jobsDir, { recursive: true, force: true }));
  // A cut left behind by an interrupted run is healed (lab.sh names host i's root-side link ugv<i>).
  onCleanup('heal gpu2', () =>
    (readText(GPU2_LINK) ?? 'down').trim() === 'up' ? undefined : labVerb('heal', lab.hosts[2].name),
  );
  const ctl = startController(jobsDir);
  onCleanup('stop controller (recovery)', () => stopController(ctl));
  await controllerStarted(ctl);
  const all: RecoverySample[] = [];
  try {
    for (let i = 1; i <= samples; i++) {
      for (const fault of kinds) {
        const { s } = await oneSample(lab, jobsDir, ctl, fault, i);
        all.push(s);
        log(
          `recovery ${i}/${samples} ${fault}: detected ${round(s.detectedMs, 0)} ms (${s.detectedBy}), ` +
            `training again ${round(s.trainingAgainMs, 0)} ms, steps lost ${s.stepsLost} ` +
            `(step ${s.stepAtFault} at the fault, resumed from ${s.resumedStep}), on ${s.newAttemptHosts.join(',')}`,
        );
        await sleep(500);
      }
    }
  } finally {
    mkdirSync(join(ROOT, '.tmp'), { recursive: true });
    // The controller's own log, for a closer look at a sample (its JSON lines carry ms times).
    writeFileSync(join(ROOT, '.tmp', 'bench-recovery-controller.log'), ctl.logText());
  }
  await stopController(ctl);
  const startup = summarize(all.map((s) => s.startupMs).filter(Number.isFinite));
  const per = faultSummaries(all, kinds, startup);
  return {
    definition: {
      detected:
        'fault -> the status shows it (NodeLost condition; RunnerVanished / ProgressStalled failure record; ' +
        'rank crash: no process of the attempt left on any host, the RankFailed record beside it)',
      trainingAgain: "fault -> the new attempt's first training step (rank 0's first metrics line, its time)",
      stepsLost: "rank 0's last step when the fault is made - the step the new attempt resumed from",
      torchrunStartup:
        "the failed attempts' own start: the last host's launched_at -> their first training step " +
        '(python and torch import, c10d rendezvous, init_process_group, one step)',
    },
    samplesPerFault: samples,
    trainArgs: TRAIN_ARGS,
    restartPolicy: RESTART_POLICY,
    progressDeadlineSeconds: PROGRESS_DEADLINE_S,
    nodeLostSeconds: '5 (default failurePolicy.nodeLostSeconds)',
    checkpointEverySteps: CHECKPOINT_EVERY,
    goals: RECOVERY_GOALS,
    torchrunStartupMs: startup,
    faults: per,
  };
}

export type RecoveryReport = Awaited<ReturnType<typeof recoverySection>>;
