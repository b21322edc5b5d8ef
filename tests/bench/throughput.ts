/**
 * Bench section "throughput": training steps/s of the same scripts/train.py job on the 3 lab
 * hosts, (a) through the controller (a TrainingJob: launch.sh's runner, rank.sh, heartbeats,
 * metrics lines, the controller watching the hosts) and (b) bare torchrun, started over ssh on
 * each host by hand as tests/lab/lab.sh smoke does (`python3 -m torch.distributed.run`, c10d
 * rendezvous on gpu-master, GLOO_SOCKET_IFNAME=eth0), with the same train.py arguments.
 *
 * Measured the same way for both: rank 0 writes one metrics line per step (--metrics-every 1)
 * with its time (train.py's UGRO_METRICS_FILE; the controller sets it, the bare run is given one
 * by hand: the measuring instrument, nothing else of UGRO's), and steps/s is taken over the
 * steady state: from step WARMUP (start-up, DDP's first steps) to the last step. One epoch, no
 * --checkpoint-every: the only checkpoint (the controller's run) comes after the last step.
 * Samples alternate (a, b), (b, a), ... after one warm-up run of each; each pair gives a ratio.
 * The lab's hosts share this machine's 2 cores with the controller and the bench: the figures
 * are noisy, and anything else running shows in the min..max.
 */
import { readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import { newJobsDir, readStatus, runDirOf, startController, stopController } from '../lab/controller-harness.ts';
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
import { markedPids, poll, procTree, readText, round, type Summary, sleep, summarize, table } from './lib.ts';

/** Steps at the start left out of the rate (python/torch warm-up, DDP's first iterations). */
const WARMUP = 20;
/** The rendezvous port of the bare runs (the controller's start at 29500; lab smoke uses 29477). */
const BARE_PORT = 29660;

export const THROUGHPUT_GOAL = 0.99;

export function throughputArgs(steps: number): string[] {
  return [
    '--model',
    'small-mlp',
    '--batch-size',
    '64',
    '--epochs',
    '1',
    '--steps-per-epoch',
    String(steps),
    '--metrics-every',
    '1',
  ];
}

interface Rate {
  stepsPerS: number;
  /** Steps and seconds the rate is over. */
  steps: number;
  seconds: number;
  /** From and to (ms since the epoch): the steady-state window. */
  from: number;
  to: number;
  /** CPU over the window, % of one core: where the machine's time went besides the ranks. */
  cpu?: CpuShare;
}

/** % of one core over a window, by who used it. */
interface CpuShare {
  ranks: number;
  torchrun: number;
  /** Everything else of the lab users: sshd sessions and what the controller (or the bench) runs there. */
  hostsOther: number;
  controller: number;
  /** The rest of the machine's busy time (other work on it; not the bench's own): noise. */
  outside: number;
}

/** A pair is quiet when the rest of the machine took at most this much of a core in both windows. */
const QUIET_OUTSIDE_PCT = 10;

const CLK_TCK = 100;
let users: Set<number> | undefined;
/** The lab users' uids (the hosts' users; run as root, the bench sees their processes). */
function labUids(lab: Lab): Set<number> {
  if (users) return users;
  const names = new Set(lab.hosts.map((h) => h.user));
  users = new Set(
    (readText('/etc/passwd') ?? '')
      .split('\n')
      .map((l) => l.split(':'))
      .filter((f) => names.has(f[0]))
      .map((f) => Number(f[2])),
  );
  return users;
}

/** utime+stime, and with the reaped children's cutime+cstime, of a process (ticks). */
function ticksOf(pid: number): { own: number; withChildren: number } | undefined {
  const t = readText(`/proc/${pid}/stat`);
  if (!t) return undefined;
  const f = t.slice(t.lastIndexOf(')') + 2).split(' ');
  const own = Number(f[11]) + Number(f[12]);
  return { own, withChildren: own + Number(f[13]) + Number(f[14]) };
}

/** One look at every process that matters: cumulative ticks by category. */
function cpuLook(lab: Lab, controllerPid: number) {
  const uids = labUids(lab);
  const ctl = new Set(procTree(controllerPid));
  // /proc/stat's cpu line: user nice system idle iowait irq softirq steal (ticks, all cores).
  const c = (readText('/proc/stat') ?? '').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = c[0] + c[1] + c[2] + c[5] + c[6] + (c[7] || 0);
  // The bench's own looks are not "the rest of the machine".
  const bench = ticksOf(process.pid)?.own ?? 0;
  const out = { at: Date.now(), ranks: 0, torchrun: 0, hostsOther: 0, controller: 0, busy, bench };
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    try {
      if (ctl.has(pid)) {
        out.controller += ticksOf(pid)?.own ?? 0;
        continue;
      }
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${d}/status`, 'latin1'))?.[1]);
      if (!uids.has(uid)) continue;
      const argv = readFileSync(`/proc/${d}/cmdline`, 'latin1').split('\0');
      const t = ticksOf(pid);
      if (!t) continue;
      if (argv[1] === '-u' && argv.some((a) => a.endsWith('train.py'))) out.ranks += t.own;
      else if (argv[0].includes('python') && argv.join(' ').includes('torch.distributed.run')) out.torchrun += t.own;
      // sshd sessions reap what ran in them: their children's time counts with them.
      else out.hostsOther += t.withChildren;
    } catch {
      /* gone */
    }
  }
  return out;
}

/** Looks every 500 ms until stop(); then the share of each category over [from, to]. */
function watchCpu(lab: Lab, controllerPid: number) {
  const looks = [cpuLook(lab, controllerPid)];
  const t = setInterval(() => looks.push(cpuLook(lab, controllerPid)), 500);
  return {
    over(from: number, to: number): CpuShare | undefined {
      clearInterval(t);
      const a = looks.find((l) => l.at >= from);
      const b = [...looks].reverse().find((l) => l.at <= to);
      if (!a || !b || b.at - a.at < 1000) return undefined;
      const pct = (k: keyof typeof a) => (((b[k] - a[k]) / CLK_TCK) * 100_000) / (b.at - a.at);
      const ours = ['ranks', 'torchrun', 'hostsOther', 'controller'] as const;
      const share = Object.fromEntries(ours.map((k) => [k, pct(k)])) as Omit<CpuShare, 'outside'>;
      const outside = pct('busy') - pct('bench') - ours.reduce((x, k) => x + share[k], 0);
      return { ...share, outside: Math.max(0, outside) };
    },
    stop: () => clearInterval(t),
  };
}

/** Steady-state steps/s from rank 0's metrics lines (`step`, `time` in s). */
export function steadyRate(text: string, warmup = WARMUP): Rate | undefined {
  const pts: { step: number; t: number }[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const m = JSON.parse(line) as { step?: number; time?: number };
      if (typeof m.step === 'number' && typeof m.time === 'number') pts.push({ step: m.step, t: m.time });
    } catch {
      /* a line being written */
    }
  }
  const from = pts.find((p) => p.step >= warmup);
  const to = pts[pts.length - 1];
  if (!from || !to || to.step <= from.step) return undefined;
  const seconds = to.t - from.t;
  return {
    stepsPerS: (to.step - from.step) / seconds,
    steps: to.step - from.step,
    seconds,
    from: from.t * 1000,
    to: to.t * 1000,
  };
}

/** (a) One TrainingJob through the controller, to Succeeded; its rank 0's metrics. */
async function viaController(lab: Lab, jobsDir: string, ctl: Controller, name: string, steps: number) {
  writeJobAtomic(jobsDir, name, { script: 'train.py', args: throughputArgs(steps), nodes: 3 });
  try {
    const s = await poll(
      `${name}: Succeeded`,
      () => {
        const st = readStatus(jobsDir, name);
        if (st?.phase === 'Failed') throw new Error(`${name} failed\n${diag(lab, jobsDir, ctl, name)}`);
        return st?.phase === 'Succeeded' ? st : undefined;
      },
      300_000,
      100,
    );
    const host0 = s.nodes.find((n) => n.nodeRank === 0)!.host;
    const dir = join(lab.hosts.find((h) => h.name === host0)!.paths.runs, runDirOf(s));
    const rate = steadyRate(readText(join(dir, 'metrics.jsonl')) ?? '');
    if (!rate) throw new Error(`${name}: no metrics lines in ${dir}`);
    return rate;
  } finally {
    unlinkSync(join(jobsDir, `${name}.yaml`));
    await poll(`${name}: status removed`, () => !readStatus(jobsDir, name), 60_000, 100).catch((e: Error) =>
      log(`warning: ${e.message}`),
    );
  }
}

/** (b) The same job as bare torchrun over ssh on each host, started at once; rank 0's metrics. */
async function bare(lab: Lab, name: string, steps: number) {
  const metricsOf = (h: Host) => posix.join(h.paths.project, `${name}.metrics.jsonl`);
  const runs = lab.hosts.map((h, i) =>
    lab.pool.exec(
      h.name,
      [
        'env',
        // A marker only, for the bench's cleanup (scrubHosts): train.py does not read it.
        `UGRO_RUN_ID=${name}`,
        'GLOO_SOCKET_IFNAME=eth0',
        ...(i === 0 ? [`UGRO_METRICS_FILE=${metricsOf(h)}`] : []),
        h.python,
        '-m',
        'torch.distributed.run',
        '--nnodes=3',
        '--nproc_per_node=1',
        `--node_rank=${i}`,
        '--rdzv_backend=c10d',
        `--rdzv_endpoint=${lab.hosts[0].address}:${BARE_PORT}`,
        `--rdzv_id=${name}`,
        `--rdzv_conf=is_host=${i === 0 ? 1 : 0},join_timeout=60`,
        posix.join(h.paths.scripts, 'train.py'),
        ...throughputArgs(steps),
      ],
      { cwd: h.paths.project, timeoutMs: 300_000 },
    ),
  );
  const res = await Promise.all(runs);
  const bad = res.findIndex((r) => r.code !== 0);
  if (bad >= 0)
    throw new Error(
      `${name}: bare torchrun on ${lab.hosts[bad].name} exited ${res[bad].code}:\n` +
        `${res[bad].stdout.slice(-2000)}${res[bad].stderr.slice(-2000)}`,
    );
  const file = metricsOf(lab.hosts[0]);
  const rate = steadyRate(readText(file) ?? '');
  rmSync(file, { force: true });
  if (!rate) throw new Error(`${name}: no metrics lines in ${file}`);
  return rate;
}

export interface ThroughputReport {
  steps: number;
  warmupSteps: number;
  pairs: number;
  trainArgs: string[];
  ugroStepsPerS: Summary;
  bareStepsPerS: Summary;
  /** Per pair: UGRO / bare. */
  ratio: Summary;
  /** p50 UGRO / p50 bare. */
  ratioOfMedians: number;
  /** p50 over the samples of each category's CPU (% of one core) in the steady window. */
  cpu: { ugro: CpuShare; bare: CpuShare };
  /** The pairs whose windows were both quiet (QUIET_OUTSIDE_PCT): UGRO / bare over those. */
  quiet: { outsideMaxPct: number; ratio: Summary };
  goal: number;
  met: boolean;
  samples: { pair: number; order: string; ugro: Rate; bare: Rate; ratio: number }[];
}

/** The section: its own controller on a fresh jobs dir; one warm-up of each kind, then `pairs` pairs. */
export async function throughputSection(lab: Lab, pairs: number, steps: number): Promise<ThroughputReport> {
  const jobsDir = newJobsDir();
  onCleanup(`remove ${jobsDir}`, () => rmSync(jobsDir, { recursive: true, force: true }));
  const ctl = startController(jobsDir);
  onCleanup('stop controller (throughput)', () => stopController(ctl));
  await controllerStarted(ctl);
  const gone = (id: string) =>
    poll(`${id}: no process left`, () => markedPids(id, true).length === 0, 60_000, 100).catch((e: Error) =>
      log(`warning: ${e.message}`),
    );
  const one = async (kind: 'ugro' | 'bare', i: number | 'warm') => {
    const name = `${PREFIX}tp-${kind}-${i === 'warm' ? 'warm' : pad(i)}`;
    const cpu = watchCpu(lab, ctl.pid!);
    let r: Rate;
    try {
      r = kind === 'ugro' ? await viaController(lab, jobsDir, ctl, name, steps) : await bare(lab, name, steps);
    } finally {
      cpu.stop();
    }
    const share = cpu.over(r.from, r.to);
    if (share) r.cpu = share;
    await gone(name);
    await sleep(500);
    return r;
  };
  // The warm-up also deploys scripts/ to the hosts (the bare runs use the deployed train.py).
  await one('ugro', 'warm');
  await one('bare', 'warm');
  const samples: ThroughputReport['samples'] = [];
  for (let i = 1; i <= pairs; i++) {
    const order = i % 2 ? (['ugro', 'bare'] as const) : (['bare', 'ugro'] as const);
    const got: Partial<Record<'ugro' | 'bare', Rate>> = {};
    for (const k of order) got[k] = await one(k, i);
    const ratio = got.ugro!.stepsPerS / got.bare!.stepsPerS;
    samples.push({ pair: i, order: order.join(','), ugro: got.ugro!, bare: got.bare!, ratio });
    log(
      `throughput ${i}/${pairs}: UGRO ${round(got.ugro!.stepsPerS, 1)} steps/s, bare ${round(got.bare!.stepsPerS, 1)}` +
        ` steps/s, ratio ${round(ratio, 3)}`,
    );
  }
  await stopController(ctl);
  const ugro = summarize(samples.map((s) => s.ugro.stepsPerS));
  const bareS = summarize(samples.map((s) => s.bare.stepsPerS));
  const ratio = summarize(samples.map((s) => s.ratio));
  const cpuP50 = (k: 'ugro' | 'bare'): CpuShare => {
    const p = (c: keyof CpuShare) => summarize(samples.flatMap((s) => (s[k].cpu ? [s[k].cpu![c]] : []))).p50;
    return {
      ranks: p('ranks'),
      torchrun: p('torchrun'),
      hostsOther: p('hostsOther'),
      controller: p('controller'),
      outside: p('outside'),
    };
  };
  const calm = (r: Rate) => r.cpu !== undefined && r.cpu.outside <= QUIET_OUTSIDE_PCT;
  const quiet = summarize(samples.filter((s) => calm(s.ugro) && calm(s.bare)).map((s) => s.ratio));
  return {
    steps,
    warmupSteps: WARMUP,
    pairs,
    trainArgs: throughputArgs(steps),
    ugroStepsPerS: ugro,
    bareStepsPerS: bareS,
    ratio,
    ratioOfMedians: ugro.p50 / bareS.p50,
    cpu: { ugro: cpuP50('ugro'), bare: cpuP50('bare') },
    quiet: { outsideMaxPct: QUIET_OUTSIDE_PCT, ratio: quiet },
    goal: THROUGHPUT_GOAL,
    met: ratio.p50 >= THROUGHPUT_GOAL,
    samples,
  };
}

export function throughputLines(t: ThroughputReport): string[] {
  const r = (x: Summary, d = 1) => [x.p50.toFixed(d), `${x.min.toFixed(d)}..${x.max.toFixed(d)}`];
  const c = (x: CpuShare) =>
    [x.ranks, x.torchrun, x.hostsOther, x.controller, x.outside].map((v) => (Number.isFinite(v) ? v.toFixed(1) : '-'));
  const q = t.quiet.ratio;
  return [
    `   train.py ${t.trainArgs.join(' ')} on 3 hosts; steps/s from rank 0's metrics lines, steps ` +
      `${t.warmupSteps}..${t.steps}; ${t.pairs} alternating pairs after a warm-up of each`,
    '   bare = python3 -m torch.distributed.run over ssh on each host (as lab.sh smoke), same train.py arguments',
    table(
      ['', 'p50', 'min..max'],
      [
        ['UGRO (TrainingJob) steps/s', ...r(t.ugroStepsPerS)],
        ['bare torchrun steps/s', ...r(t.bareStepsPerS)],
        ['UGRO / bare, per pair', ...r(t.ratio, 3)],
        [`  the ${q.n} quiet pair(s)`, ...(q.n ? r(q, 3) : ['-', '-'])],
      ],
    ),
    '   CPU in the steady window, % of one core (p50 over the samples; the machine has 2 cores):',
    table(
      ['', 'ranks', 'torchrun agents', "hosts' other (sshd, execs)", 'controller', 'rest of the machine'],
      [
        ['UGRO', ...c(t.cpu.ugro)],
        ['bare', ...c(t.cpu.bare)],
      ],
    ),
    `   quiet pair: the rest of the machine (other work; not the bench) took <= ${t.quiet.outsideMaxPct}% of a ` +
      "core in both windows; else the ranks' share of the 2 cores, so steps/s, moves with it whoever runs",
    `   UGRO / bare: p50 of the pairs ${round(t.ratio.p50, 3)}x (of the medians ${round(t.ratioOfMedians, 3)}x); ` +
      `goal >= ${t.goal}x: ${t.met ? 'MET' : 'NOT MET'}`,
  ];
}
