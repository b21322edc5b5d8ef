/**
 * Where the time goes between a rank crash (kill -9 of rank 1's python) and the gang stopped (no
 * process of the attempt left on any host), for the recovery section's rank-crash samples. Every
 * stage is a timestamp on this machine's clock (the lab hosts share it), in ms after the kill:
 *
 *   rank.sh saw it       the crashed rank's wrapper recorded its exit: mtime of rank-1.exit
 *   peers' ranks exited  the other ranks' training processes ended on their own (their collective
 *                        with the dead peer failed): the last of their rank-N.exit mtimes
 *   torchrun told        the first write to its torchrun.log, watched every 5 ms here: rank.sh's
 *                        "ending torchrun" line when one of its ranks failed on its own (it
 *                        SIGTERMs torchrun), else torchrun's monitor (--monitor_interval) saying a
 *                        worker failed; the last host's
 *   torchrun done        torchrun's own work finished (workers stopped, its traceback or error
 *                        summary): its last write to torchrun.log (mtime); the last host's
 *   first runner exit    the first host's runner recorded torchrun's exit (finished_at): the
 *                        first waiter (wait.sh) can return
 *   waiter returned      the controller's log: "run part ended" (its first for the attempt)
 *   stop sent            the controller's log: "stopping run" (gang-failed): its reconcile saw a
 *                        part failed and stops the others (SIGTERM, then the grace); absent when
 *                        nothing was left to stop
 *   last runner exit     the last host's finished_at: torchrun gone everywhere
 *   gang stopped         no process of the attempt left (this machine's /proc, every 20 ms)
 *   RankFailed record    the time in the controller's failure record: written when the attempt's
 *                        outcome is classified, once every part has ended (so after the above)
 *
 * And which process was the last one alive (runner, torchrun, rank.sh or rank, and its host).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from './context.ts';
import { nsTextToMs, readText, round, type Summary, summarize, table } from './lib.ts';

/** One sample's stages, ms after the kill (undefined: not seen). */
export interface CrashPath {
  rankSawIt?: number;
  peersExited?: number;
  torchrunNoticed?: number;
  torchrunDone?: number;
  firstRunnerExit?: number;
  waiterReturned?: number;
  decided?: number;
  stopSent?: number;
  lastRunnerExit?: number;
  gangStopped?: number;
  /** What was alive last: e.g. `torchrun@gpu2`. */
  lastAlive?: string;
}

export const STAGES: { key: Exclude<keyof CrashPath, 'lastAlive'>; label: string }[] = [
  { key: 'rankSawIt', label: "crashed rank's rank.sh saw it (rank-1.exit)" },
  { key: 'peersExited', label: "peers' ranks exited on their own (last)" },
  { key: 'torchrunNoticed', label: 'torchrun told (rank.sh) or noticed, last host' },
  { key: 'torchrunDone', label: "torchrun's last log line, last host" },
  { key: 'firstRunnerExit', label: 'first runner exit (finished_at)' },
  { key: 'waiterReturned', label: 'controller: waiter returned' },
  { key: 'stopSent', label: 'controller: stop sent (gang-failed)' },
  { key: 'lastRunnerExit', label: 'last runner exit (finished_at)' },
  { key: 'gangStopped', label: 'gang stopped (no process left)' },
  { key: 'decided', label: 'controller: RankFailed record (its time)' },
];

const mtimeMs = (p: string): number | undefined => {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return undefined;
  }
};
const sizeOf = (p: string): number => {
  try {
    return statSync(p).size;
  } catch {
    return 0;
  }
};

/**
 * Start watching the attempt's torchrun.log files (one per host) right before the fault: the first
 * time each grows is when that torchrun's monitor saw a failed worker. stop() returns those times.
 */
export function watchAgentLogs(dirs: string[], everyMs = 5): { stop: () => Map<string, number> } {
  const logs = dirs.map((d) => join(d, 'torchrun.log'));
  const base = new Map(logs.map((p) => [p, sizeOf(p)]));
  const grew = new Map<string, number>();
  const t = setInterval(() => {
    for (const p of logs) if (!grew.has(p) && sizeOf(p) > (base.get(p) ?? 0)) grew.set(p, Date.now());
  }, everyMs);
  return {
    stop: () => {
      clearInterval(t);
      return new Map([...grew].map(([p, at]) => [p.slice(0, -'/torchrun.log'.length), at]));
    },
  };
}

let users: Map<number, string> | undefined;
const passwd = () =>
  (users ??= new Map(
    (readText('/etc/passwd') ?? '')
      .split('\n')
      .map((l) => l.split(':'))
      .filter((f) => f.length > 3)
      .map((f) => [Number(f[2]), f[0]] as const),
  ));

/** What a process of a run is, from its command line (see the header), and on which lab host. */
export function describeProcess(lab: Lab, pid: number): string | undefined {
  let argv: string[];
  let uid: number;
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1]);
  } catch {
    return undefined;
  }
  const what = argv[1]?.endsWith('rank.sh')
    ? 'rank.sh'
    : argv.includes('ugro-runner')
      ? 'runner'
      : argv[1] === '-u'
        ? 'rank'
        : 'torchrun';
  const host = lab.hosts.find((h) => h.user === passwd().get(uid))?.name ?? `uid ${uid}`;
  return `${what}@${host}`;
}

/** The controller's JSON log lines about `job` with `msg`, their times (ms). */
function logTimes(logText: string, msg: string, match: (o: Record<string, unknown>) => boolean): number[] {
  const out: number[] = [];
  for (const line of logText.split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (match(o)) out.push(Date.parse(String(o.time)));
    } catch {
      /* not a log line */
    }
  }
  return out;
}

/**
 * One sample's path, read after the gang stopped: the attempt's run dirs (one per host; rank 1
 * crashed), the torchrun.log watch, the controller's log and decision, the gang's end.
 */
export function crashPath(o: {
  t0: number;
  dirs: string[];
  runId: string;
  job: string;
  crashedRank: number;
  noticed: Map<string, number>;
  controllerLog: string;
  decidedAt?: number;
  gangStoppedAt?: number;
  lastAlive?: string;
}): CrashPath {
  const rel = (x: number | undefined) => (x === undefined ? undefined : x - o.t0);
  const max = (xs: (number | undefined)[]) => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length ? Math.max(...v) : undefined;
  };
  const min = (xs: (number | undefined)[]) => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length ? Math.min(...v) : undefined;
  };
  const exits = o.dirs.flatMap((d) => {
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      /* gone */
    }
    return names
      .map((n) => /^rank-(\d+)\.exit$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => ({ rank: Number(m[1]), at: mtimeMs(join(d, m[0])) }));
  });
  const finished = o.dirs.map((d) => nsTextToMs(readText(join(d, 'finished_at')) ?? ''));
  const after = (xs: number[]) => xs.filter((x) => x >= o.t0 - 5);
  const forRun = (x: Record<string, unknown>) => x.job === o.job && (x.run === undefined || x.run === o.runId);
  return {
    rankSawIt: rel(exits.find((e) => e.rank === o.crashedRank)?.at),
    peersExited: rel(max(exits.filter((e) => e.rank !== o.crashedRank).map((e) => e.at))),
    torchrunNoticed: rel(max(o.dirs.map((d) => o.noticed.get(d)))),
    torchrunDone: rel(max(o.dirs.map((d) => mtimeMs(join(d, 'torchrun.log'))))),
    firstRunnerExit: rel(min(finished)),
    waiterReturned: rel(min(after(logTimes(o.controllerLog, 'run part ended', forRun)))),
    decided: rel(o.decidedAt),
    stopSent: rel(
      min(after(logTimes(o.controllerLog, 'stopping run', (x) => forRun(x) && x.reason === 'gang-failed'))),
    ),
    lastRunnerExit: rel(max(finished)),
    gangStopped: rel(o.gangStoppedAt),
    ...(o.lastAlive ? { lastAlive: o.lastAlive } : {}),
  };
}

export interface CrashPathReport {
  /** Per stage: ms after the kill over the samples, and the p50 of each sample's step from the previous stage. */
  stages: { key: string; label: string; n: number; atMs: Summary; stepP50Ms?: number }[];
  /** How often each process was the last one alive. */
  lastAlive: Record<string, number>;
  samples: CrashPath[];
}

export function crashPathReport(samples: CrashPath[]): CrashPathReport {
  const stages = STAGES.map(({ key, label }, i) => {
    const xs = samples.map((s) => s[key]).filter((v): v is number => v !== undefined);
    const prev = i > 0 ? STAGES[i - 1].key : undefined;
    const steps = prev
      ? samples
          .filter((s) => s[key] !== undefined && s[prev] !== undefined)
          .map((s) => (s[key] as number) - (s[prev] as number))
      : [];
    return {
      key,
      label,
      n: xs.length,
      atMs: summarize(xs),
      ...(steps.length ? { stepP50Ms: summarize(steps).p50 } : {}),
    };
  });
  const lastAlive: Record<string, number> = {};
  for (const s of samples) if (s.lastAlive) lastAlive[s.lastAlive] = (lastAlive[s.lastAlive] ?? 0) + 1;
  return {
    stages,
    lastAlive,
    samples: samples.map(
      (s) =>
        Object.fromEntries(
          Object.entries(s).map(([k, v]) => [k, typeof v === 'number' ? round(v, 1) : v]),
        ) as CrashPath,
    ),
  };
}

export function crashPathLines(r: CrashPathReport): string[] {
  const range = (x: Summary) => (x.n ? `${round(x.min, 0)}..${round(x.max, 0)}` : '-');
  return [
    `   rank crash -> gang stopped, stage by stage (ms after the kill; ${r.samples.length} samples; ` +
      "step = p50 of each sample's time since the stage above; negative: it came first):",
    table(
      ['stage', 'n', 'p50 ms', 'min..max ms', 'step p50 ms'],
      r.stages.map((s) => [s.label, s.n, s.n ? s.atMs.p50 : '-', range(s.atMs), s.stepP50Ms ?? '-']),
    ),
    `   last process alive: ${
      Object.entries(r.lastAlive)
        .map(([k, v]) => `${k} (${v}x)`)
        .join(', ') || '-'
    }`,
  ];
}
