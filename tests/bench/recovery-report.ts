/**
 * The recovery section's figures: per fault, summaries of the samples against the goals, and the
 * printed report (with a rank crash's stage-by-stage path, crash-path.ts).
 */
import { crashPathLines, crashPathReport } from './crash-path.ts';
import { round, type Summary, summarize, table } from './lib.ts';
import { FAULTS, type Fault, RECOVERY_GOALS, type RecoveryReport, type RecoverySample } from './recovery.ts';

function roundSample<T extends object>(s: T): T {
  return Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === 'number' ? round(v, 1) : v])) as T;
}

/** One fault's samples summarized, against the goals (startup: torchrun's, the goal's base). */
function faultSummary(f: Fault, xs: RecoverySample[], startup: Summary) {
  const sum = (k: keyof RecoverySample): Summary =>
    summarize(xs.map((s) => s[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
  const detected = sum('detectedMs');
  const again = sum('trainingAgainMs');
  const lost = sum('stepsLost');
  const detectGoal =
    f === 'node-loss'
      ? RECOVERY_GOALS.nodeLossDetectedMs
      : f === 'rank-crash'
        ? RECOVERY_GOALS.rankCrashDetectedMs
        : undefined;
  const againGoal = startup.p50 + RECOVERY_GOALS.trainingAgainSlackMs;
  return {
    detectedBy: xs[0]?.detectedBy,
    detectedMs: detected,
    decidedMs: sum('decidedMs'),
    statusRecordMs: sum('statusRecordMs'),
    gangStoppedMs: sum('gangStoppedMs'),
    trainingAgainMs: again,
    detectedToTrainingMs: sum('detectedToTrainingMs'),
    restartStartupMs: sum('restartStartupMs'),
    stepsLost: lost,
    ...(f === 'rank-crash' ? { path: crashPathReport(xs.flatMap((s) => (s.path ? [s.path] : []))) } : {}),
    goals: {
      ...(detectGoal !== undefined ? { detectedP50Ms: detectGoal, detectedMet: detected.p50 < detectGoal } : {}),
      trainingAgainP50Ms: round(againGoal, 0),
      trainingAgainMet: again.p50 < againGoal,
      stepsLostMax: RECOVERY_GOALS.stepsLost,
      stepsLostMet: lost.max <= RECOVERY_GOALS.stepsLost,
    },
    samples: xs.map(({ path: _p, ...s }) => roundSample(s)),
  };
}

/** Per fault of `kinds`: its samples of `all` summarized. */
export function faultSummaries(
  all: RecoverySample[],
  kinds: readonly Fault[],
  startup: Summary,
): Partial<Record<Fault, ReturnType<typeof faultSummary>>> {
  return Object.fromEntries(
    kinds.map(
      (f) =>
        [
          f,
          faultSummary(
            f,
            all.filter((s) => s.fault === f),
            startup,
          ),
        ] as const,
    ),
  );
}

const met = (ok: boolean) => (ok ? 'MET' : 'NOT MET');
const ms = (x: number) => `${round(x, 0)} ms`;

export function recoveryLines(R: RecoveryReport): string[] {
  const g = R.goals;
  const startup = R.torchrunStartupMs.p50;
  const againGoal = startup + g.trainingAgainSlackMs;
  const range = (x: Summary) => `${round(x.min, 0)}..${round(x.max, 0)}`;
  const present = FAULTS.flatMap((f) => {
    const x = R.faults[f];
    return x ? [[f, x] as const] : [];
  });
  const detection = table(
    ['fault', 'detected by', 'n', 'p50 ms', 'min..max ms', 'goal', '', 'decided p50 ms', 'gang stopped p50 ms'],
    present.map(([f, x]) => {
      const goal = f === 'node-loss' ? g.nodeLossDetectedMs : f === 'rank-crash' ? g.rankCrashDetectedMs : undefined;
      return [
        f,
        x.detectedBy ?? '',
        x.detectedMs.n,
        x.detectedMs.p50,
        range(x.detectedMs),
        goal !== undefined ? `< ${goal} ms` : '-',
        x.goals.detectedMet === undefined ? '' : met(x.goals.detectedMet),
        x.decidedMs.p50,
        x.gangStoppedMs.n ? x.gangStoppedMs.p50 : '-',
      ];
    }),
  );
  const again = table(
    [
      'fault',
      'training again p50 ms',
      'min..max ms',
      'goal',
      'detected->training p50 ms',
      'steps lost p50..max',
      'goal',
    ],
    present.map(([f, x]) => {
      return [
        f,
        x.trainingAgainMs.p50,
        range(x.trainingAgainMs),
        met(x.goals.trainingAgainMet),
        x.detectedToTrainingMs.p50,
        `${x.stepsLost.p50}..${x.stepsLost.max}`,
        met(x.goals.stepsLostMet),
      ];
    }),
  );
  return [
    `4. Recovery: ${R.samplesPerFault} samples per fault, the controller against real faults on the lab`,
    `   job: train.py ${R.trainArgs.join(' ')}`,
    `   restartPolicy ${JSON.stringify(R.restartPolicy)}; a rank crash and a hang count as training failures`,
    '   node loss = lab cut gpu2 (nodes {min: 2, max: 3}, nodeLostSeconds 5), from the moment its link is down;',
    '   rank crash = kill -9 of rank 1; crash-stuck-peer = the same while rank 2 is stopped (kill -STOP: a',
    '   peer that cannot leave its collective; the gang is gone when the stop SIGKILLs it after its grace);',
    '   runner kill = kill -9 of the runner on gpu1;',
    `   hang = kill -STOP of rank 2 (failurePolicy.progressDeadlineSeconds ${R.progressDeadlineSeconds})`,
    `   detection: fault -> the status shows it (goals: node loss < ${g.nodeLossDetectedMs} ms p50, against ` +
      `40-300 s for Kubernetes/Slurm; rank crash < ${g.rankCrashDetectedMs} ms)`,
    detection,
    '   decided: the time the controller wrote into the record (when its reconcile decided); the status file ' +
      'shows it when written.',
    ...(R.faults['rank-crash']?.path ? crashPathLines(R.faults['rank-crash'].path) : []),
    `   fault -> first training step of the new attempt; goal < torchrun start-up (${ms(startup)} p50 here: ` +
      `launched_at -> first step) + ${g.trainingAgainSlackMs} ms = ${ms(againGoal)};`,
    `   steps lost = last step before the fault - step resumed from; goal <= one checkpoint interval ` +
      `(${g.stepsLost} steps; negative: resumed from a checkpoint written after the fault)`,
    again,
    '   detected->training: the stop of the rest of the gang, the backoff (1 s), the relaunch and torchrun start-up.',
  ];
}
