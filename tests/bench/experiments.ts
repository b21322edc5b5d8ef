/**
 * Issue 18's figures (a benchmark: it prints numbers and never fails on them):
 *   sweep      makespan of a 4x3 grid of train.py (lr x batch, 180 steps, one trial per host)
 *              with ASHA (rungs at steps 10 and 100, eta 3) against the same sweep without
 *              earlyStopping (every trial to the end): the sweep file written -> its
 *              completionTime, and the best trial each finds (goal: ASHA at most 0.5x, the same
 *              best). On the lab. (See sweepDoc for why this grid.)
 *   placement  core plan() with a sweep of 200 trials queued: the trials are expanded by the
 *              sweep's own pure reconcile (core/sweep.ts decideSweep, maxParallel 200) and turned
 *              into requests as the scheduler does (core/schedule.ts requestOf); plan() over them
 *              on the lab's hosts and on placement.ts's 16 x 8 GPU cluster with its holdings;
 *              p50/p99 over BENCH_PLACEMENT_RUNS. Also one decideSweep pass over 200 trials. No lab.
 *   retention  a train.py run writing 50 checkpoints (--checkpoint-every 1, small-mlp) with
 *              keep {last: 2, best: 1}: the CheckpointsPruned events' bytes against every
 *              checkpoint written (each file's size seen in its dir: the lab shares this file
 *              system), and the cost of one retention pass over 50 checkpoints, called directly:
 *              checkpoints.sh list over SSH + core/retention.ts + checkpoints.sh delete. On the lab.
 *
 *   npm run bench:experiments        (builds dist/, takes the lab lock; all three)
 *   BENCH_EXPERIMENTS=placement node --import tsx tests/bench/experiments.ts   (no lab, no lock)
 * Env: BENCH_EXPERIMENTS (a comma list; default sweep,placement,retention), BENCH_SWEEP_RUNS
 * (pairs, default 1; about 4 minutes each), BENCH_SWEEP_STEPS (per trial, default 180),
 * BENCH_PLACEMENT_RUNS (default 200), BENCH_RETENTION_PASSES (default 10). Results are printed and
 * written to .tmp/bench-experiments-<date>.json.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { parseSweep, sweepHash } from '../../controller/api/sweep.ts';
import type { SweepStatus } from '../../controller/api/sweep-status.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import { SshTransport } from '../../controller/backends/ssh/transport.ts';
import { checkpointRows } from '../../controller/core/checkpoints.ts';
import { type HostSlots, plan } from '../../controller/core/placement.ts';
import { RETENTION_WAKE_MS, retention } from '../../controller/core/retention.ts';
import { gpusOf, requestOf } from '../../controller/core/schedule.ts';
import { decideSweep, type TrialFacts } from '../../controller/core/sweep.ts';
import {
  labCluster,
  newJobsDir,
  ROOT,
  readStatus,
  startController,
  stopController,
  waitFor,
  writeJob,
} from '../lab/controller-harness.ts';
import { cleanupAll, controllerStarted, intEnv, log, onCleanup, PREFIX } from './context.ts';
import { round, type Summary, summarize } from './lib.ts';
import { placementInputs } from './placement.ts';

const SECTIONS = (process.env.BENCH_EXPERIMENTS ?? 'sweep,placement,retention').split(',').map((s) => s.trim());
const ms = (s: Summary) => `p50 ${round(s.p50, 2)} ms, p99 ${round(s.p99, 2)} ms (min ${round(s.min, 2)}, n ${s.n})`;
// The cluster file and an SSH pool, made on first use (the placement section needs no lab up).
let cluster: ReturnType<typeof labCluster> | undefined;
let sshPool: SshPool | undefined;
const lazyCluster = () => (cluster ??= labCluster());
function pool(): SshPool {
  if (sshPool) return sshPool;
  const p = new SshPool(lazyCluster().hosts);
  onCleanup('ssh pool', () => p.close());
  sshPool = p;
  return p;
}
async function sh(host: string, script: string, ...args: string[]): Promise<string> {
  return (await pool().exec(host, ['sh', '-c', script, 'sh', ...args])).stdout;
}
/** A job's (or a sweep's trials': prefix) run dirs and checkpoint dirs, on every host. */
const cleanJob = (name: string, prefix = false) =>
  Promise.all(
    lazyCluster().hosts.map((h) =>
      sh(
        h.name,
        prefix ? 'rm -rf -- "$1"/"$3"-* "$2"/"$3"-*' : 'rm -rf -- "$1"/"$3".* "$2"/"$3"',
        h.paths.runs,
        h.paths.checkpoints,
        name,
      ).catch(() => ''),
    ),
  );

// ---------------------------------------------------------------------------------------------
// sweep: ASHA against every trial to the end, on tests/lab/sweep.test.ts's grid.

/**
 * The grid: 4 learning rates x 3 batch sizes of train.py, 9 epochs of 20 steps (0.2 s each), one
 * trial per host (maxParallel 3: the lab's three hosts), ASHA with rungs at steps 10 and 100,
 * eta 3 (an early first rung, as Ray Tune's ASHA has by default). The objective is the last
 * epoch's mean loss. Chosen because it is what a sweep is for: a spread of learning rates where
 * the good ones show early (lr 0.01 at batch 32 leads from step 10 and ends best, 0.05 against 0.10
 * for the runner-up; lr 0.01 at batch 8 diverges to NaN by step 90), and enough trials (12) for
 * successive halving to matter: with 6 trials and one rung (the lab test's grid) half the steps
 * is the floor even with no overhead (0.95x measured). The best trial is the grid's last: it
 * starts only once the eleven before it had their first rung, ASHA's worst order.
 * Ideal step count with ASHA: 12 x 10 + 4 x 90 + 1 x 80 = 560 of 12 x 180 = 2160 (0.26x).
 */
const SWEEP_STEPS = intEnv('BENCH_SWEEP_STEPS', 180);
const EPOCH_STEPS = 20;
const RUNGS = [10, 100].filter((r) => r < SWEEP_STEPS);
const GRID = { lr: [0.0003, 0.001, 0.003, 0.01], bs: [8, 16, 32] };
const STEP_SLEEP_S = 0.2;
const MAX_PARALLEL = 3;
function sweepDoc(name: string, asha: boolean, extra: { maxParallel?: number } = {}) {
  return {
    apiVersion: 'ugro.dev/v1alpha1',
    kind: 'Sweep',
    metadata: { name },
    spec: {
      template: {
        script: 'train.py',
        args: [
          ...['--epochs', String(Math.ceil(SWEEP_STEPS / EPOCH_STEPS)), '--steps-per-epoch', String(EPOCH_STEPS)],
          ...['--sleep', String(STEP_SLEEP_S), '--lr', '{lr}', '--batch-size', '{bs}'],
        ],
        preemption: { graceSeconds: 10 },
      },
      parameters: { grid: GRID },
      maxParallel: extra.maxParallel ?? MAX_PARALLEL,
      objective: { metric: 'loss', goal: 'minimize' },
      ...(asha ? { earlyStopping: { type: 'asha', rungs: RUNGS, eta: 3 } } : {}),
    },
  };
}

interface SweepRun {
  asha: boolean;
  makespanS: number;
  best?: { index: number; objective: number };
  /** Runs started, over all trials (a paused trial that is promoted runs twice). */
  launches: number;
  /** Each trial's final objective as the sweep recorded it, by index. */
  objectives: (number | undefined)[];
  stopped: number;
}

async function sweepOnce(name: string, asha: boolean): Promise<SweepRun> {
  await cleanJob(name, true);
  const jobsDir = newJobsDir();
  const ctl = startController(jobsDir);
  onCleanup(`controller of ${name}`, () => stopController(ctl));
  try {
    await controllerStarted(ctl);
    const t0 = Date.now();
    writeFileSync(join(jobsDir, `${name}.yaml`), stringify(sweepDoc(name, asha)));
    const done = await waitFor(
      `sweep ${name} to end`,
      () => {
        try {
          const s = parseYamlStatus(readFileSync(join(jobsDir, `${name}.sweep.status.yaml`), 'utf8'));
          return s.phase !== 'Running' && s.completionTime ? s : undefined;
        } catch {
          return undefined;
        }
      },
      400_000,
      250,
    );
    const best = done.trials.find((t) => t.name === done.best?.trial);
    return {
      asha,
      makespanS: (Date.parse(done.completionTime!) - t0) / 1000,
      ...(best && done.best ? { best: { index: best.index, objective: done.best.objective } } : {}),
      launches: done.trials.reduce((n, t) => n + (readStatus(jobsDir, t.name)?.attempt ?? 0), 0),
      objectives: [...done.trials].sort((x, y) => x.index - y.index).map((t) => t.objective),
      stopped: done.trials.filter((t) => t.state === 'stopped').length,
    };
  } finally {
    await stopController(ctl);
    await cleanJob(name, true);
  }
}

const parseYamlStatus = (text: string) => parseYaml(text) as SweepStatus;

async function sweepSection() {
  const n = intEnv('BENCH_SWEEP_RUNS', 1);
  const runs: SweepRun[] = [];
  for (let i = 0; i < n; i++) {
    // Alternating which goes first, so neither always meets a warmer (or busier) machine.
    const order = i % 2 === 0 ? [true, false] : [false, true];
    for (const asha of order) {
      const r = await sweepOnce(`${PREFIX}${asha ? 'asha' : 'full'}-${i}`, asha);
      log(
        `sweep ${asha ? 'ASHA' : 'to the end'} #${i + 1}: ${round(r.makespanS, 1)} s, best t${r.best?.index} ` +
          `(loss ${r.best?.objective}), ${r.launches} runs, ${r.stopped} stopped early; objectives ` +
          r.objectives.map((o, k) => `t${k} ${o === undefined ? '-' : round(o, 2)}`).join(' '),
      );
      runs.push(r);
    }
  }
  const of = (asha: boolean) => runs.filter((r) => r.asha === asha);
  const a = summarize(of(true).map((r) => r.makespanS));
  const f = summarize(of(false).map((r) => r.makespanS));
  const sameBest = of(true).every((r, i) => r.best?.index === of(false)[i]?.best?.index);
  const ratio = a.p50 / f.p50;
  const line = (label: string, rs: SweepRun[], s: Summary) =>
    `   ${label.padEnd(30)} p50 ${round(s.p50, 1)} s (min ${round(s.min, 1)}, max ${round(s.max, 1)}, n ${s.n}); ` +
    `best ${[...new Set(rs.map((r) => `t${r.best?.index} loss ${r.best?.objective}`))].join(' / ')}; ` +
    `${round(summarize(rs.map((r) => r.launches)).p50, 0)} runs`;
  console.log(
    `Sweep makespan (4x3 grid of train.py, lr ${GRID.lr.join('/')} x batch ${GRID.bs.join('/')}, ${SWEEP_STEPS} ` +
      `steps of ${STEP_SLEEP_S} s, maxParallel ${MAX_PARALLEL}, the lab; wall time from the sweep file written to ` +
      'its completionTime):',
  );
  console.log(line(`ASHA (rungs ${RUNGS.join(', ')}, eta 3)`, of(true), a));
  console.log(line('every trial to the end', of(false), f));
  console.log(
    `   ASHA / to the end: ${round(ratio, 2)}x (goal <= 0.5x: ${ratio <= 0.5 ? 'met' : 'NOT met'}); ` +
      `same best trial: ${sameBest ? 'yes' : 'NO'}`,
  );
  return { runs, ashaS: a, fullS: f, ratio, sameBest };
}

// ---------------------------------------------------------------------------------------------
// placement: a 200-trial sweep queued.

function trialJobs(count: number) {
  const doc = sweepDoc('big', false, { maxParallel: count });
  doc.spec.parameters = {
    random: { seed: 7, count, space: { lr: { logUniform: [1e-4, 1e-1] }, bs: { choice: [8, 16, 32, 64] } } },
  } as never;
  const parsed = parseSweep(stringify(doc));
  if (!parsed.ok) throw new Error(`bench sweep invalid: ${JSON.stringify(parsed.issues)}`);
  const spec = { kind: 'valid' as const, sweep: parsed.value, hash: sweepHash(parsed.value.spec), file: 'big.yaml' };
  const now = new Date('2026-01-01T12:00:00Z');
  const first = decideSweep({ name: 'big', now, spec, owner: 'alice', trials: [] });
  return { jobs: first.write, spec, now, status: first.status! };
}

async function placementSection() {
  const runs = intEnv('BENCH_PLACEMENT_RUNS', 200);
  const { jobs, spec, now, status } = trialJobs(200);
  const createdAt = now.toISOString();
  const requests = jobs.map((j) => requestOf(j, { createdAt }));
  const lab: HostSlots[] = lazyCluster()
    .hosts.filter((h) => !h.slurm)
    .map((h) => ({ host: h.name, gpus: gpusOf(h) }));
  const big = placementInputs({ jobs: 0, hosts: 16, gpusPerHost: 8, seed: 42 });
  const cases = {
    lab: { requests, hosts: lab, holdings: [], usage: new Map(), now: now.getTime() },
    big: { ...big, requests },
  };
  const facts: TrialFacts[] = jobs.map((j, index) => ({
    name: j.metadata.name,
    generation: 1,
    index,
    params: JSON.parse(j.metadata.annotations?.['ugro.dev/params'] ?? '{}'),
    job: j,
    phase: 'Queued',
    rungs: [],
  }));
  const times: Record<string, number[]> = { lab: [], big: [], sweep: [] };
  const decided: Record<string, Record<string, number>> = {};
  for (let i = 0; i < runs + 3; i++) {
    for (const [k, c] of Object.entries(cases)) {
      const t = performance.now();
      const out = plan(c);
      if (i >= 3) times[k].push(performance.now() - t);
      decided[k] = {};
      for (const d of out.values()) decided[k][d.kind] = (decided[k][d.kind] ?? 0) + 1;
    }
    const t = performance.now();
    decideSweep({ name: 'big', now, spec, prev: status, owner: 'alice', trials: facts });
    if (i >= 3) times.sweep.push(performance.now() - t);
    await new Promise((r) => setImmediate(r));
  }
  const s = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, summarize(v)]));
  const kinds = (k: string) =>
    Object.entries(decided[k])
      .map(([d, n]) => `${d} ${n}`)
      .join(', ');
  const held = big.holdings.reduce((n, h) => n + h.gpus.length, 0);
  console.log(`Placement with a sweep of 200 trials queued (core plan(), ${runs} runs after 3 warm-up, no lab):`);
  console.log(`   the lab's ${lab.length} hosts, all free:        ${ms(s.lab)}; ${kinds('lab')}`);
  console.log(`   16 hosts x 8 GPUs, ${held}/128 held:   ${ms(s.big)}; ${kinds('big')}`);
  console.log(`   the sweep's own pass (decideSweep, 200 trials queued): ${ms(s.sweep)}`);
  return { runs, lab: s.lab, big: s.big, sweepPass: s.sweep, decisions: decided };
}

// ---------------------------------------------------------------------------------------------
// retention: 50 checkpoints, keep {last: 2, best: 1}.

const KEEP = { last: 2, best: 1, metric: 'loss' };
const CKPTS = 50;

/** `3 deleted on gpu1 (step-1, …), 1.2 MB freed` -> bytes (as printed: 2-3 significant digits). */
function freedBytes(message: string): number {
  const unit: Record<string, number> = { B: 1, kB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12 };
  return [...message.matchAll(/([\d.]+) (B|kB|MB|GB|TB) freed/g)].reduce((n, m) => n + Number(m[1]) * unit[m[2]], 0);
}

/** Seconds a step (each writes a checkpoint): 50 s in all, so pruning while it runs shows. */
const RETENTION_STEP_S = 1;

async function retentionSection() {
  const name = `${PREFIX}retention`;
  const gpu1 = lazyCluster().hosts.find((h) => h.name === 'gpu1')!;
  const dir = join(gpu1.paths.checkpoints, name);
  await cleanJob(name);
  const jobsDir = newJobsDir();
  const ctl = startController(jobsDir);
  onCleanup(`controller of ${name}`, () => stopController(ctl));
  // Every checkpoint's size as it appears (the lab's hosts share this file system).
  const seen = new Map<string, number>();
  let peak = 0;
  const watch = setInterval(() => {
    try {
      const now = readdirSync(dir).filter((f) => /^step-\d+\.pt$/.test(f));
      peak = Math.max(peak, now.length);
      for (const f of now) if (!seen.has(f)) seen.set(f, statSync(join(dir, f)).size);
    } catch {
      /* not there yet, or deleted between readdir and stat */
    }
  }, 20);
  let events: string[] = [];
  let left: string[] = [];
  try {
    await controllerStarted(ctl);
    writeJob(jobsDir, name, {
      script: 'train.py',
      args: [
        ...['--model', 'small-mlp', '--epochs', '1', '--steps-per-epoch', String(CKPTS)],
        ...['--sleep', String(RETENTION_STEP_S)],
        ...['--checkpoint-every', '1', '--metrics-every', '1'],
      ],
      nodes: 1,
      hosts: ['gpu1'],
      checkpoint: { keep: KEEP },
    });
    const st = await waitFor(
      `${name} to end`,
      () => {
        const s = readStatus(jobsDir, name);
        return s && ['Succeeded', 'Failed'].includes(s.phase) ? s : undefined;
      },
      180_000,
    );
    if (st.phase !== 'Succeeded') throw new Error(`${name} ${st.phase}: ${st.message}`);
    // The last pass: the newest two and the best one stay (3 files at most).
    left = await waitFor(
      'retention to settle',
      () => {
        const l = readdirSync(dir).filter((f) => /^step-\d+\.pt$/.test(f));
        return l.length <= 3 ? l : undefined;
      },
      60_000,
    );
    const file = join(jobsDir, '.ugro', 'events.jsonl');
    events = readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { job: string; reason: string; message: string })
      .filter((e) => e.job === name && e.reason === 'CheckpointsPruned')
      .map((e) => e.message);
  } finally {
    clearInterval(watch);
    await stopController(ctl);
  }
  const written = [...seen.values()].reduce((a, b) => a + b, 0);
  const freed = events.reduce((n, m) => n + freedBytes(m), 0);
  const deleted = events.reduce((n, m) => n + [...m.matchAll(/(\d+) deleted on/g)].reduce((k, x) => k + +x[1], 0), 0);
  const leftBytes = left.reduce((n, f) => n + statSync(join(dir, f)).size, 0);

  // One pass, called directly, over 50 copies of a real checkpoint in a directory of its own (cp -p:
  // the run's mtime, so each copy is matched to the run's metrics as the real files are).
  const passDir = `${dir}-pass`;
  const rt = new SshBackend(new SshTransport(pool(), lazyCluster()));
  const passes: number[] = [];
  const decide: number[] = [];
  const copies = Array.from({ length: CKPTS }, (_, i) => `step-${i + 1}.pt`);
  for (let i = 0; i < intEnv('BENCH_RETENTION_PASSES', 10); i++) {
    await sh(
      'gpu1',
      'rm -rf -- "$1" && mkdir -p -- "$1" && cd -- "$1" && src=$2 && shift 2 && ' +
        'for n; do cp -p -- "$src" "$n"; done && echo step-50 > latest',
      passDir,
      join(dir, left[0]),
      ...copies,
    );
    const t = performance.now();
    const l = await rt.listCheckpoints(gpu1, passDir, { runsOf: name });
    const t1 = performance.now();
    const rows = checkpointRows([
      { host: 'gpu1', dir: passDir, ...(l.latest ? { latest: l.latest } : {}), files: l.files, runs: l.runs },
    ]);
    const d = retention({ keep: { ...KEEP, goal: 'minimize' }, rows, restart: [], dependents: [], promoted: [] });
    decide.push(performance.now() - t1);
    await rt.deleteCheckpoints(
      gpu1,
      passDir,
      d.delete.map((x) => x.name),
    );
    passes.push(performance.now() - t);
  }
  await cleanJob(name);
  await sh('gpu1', 'rm -rf -- "$1"', passDir).catch(() => '');
  const pass = summarize(passes);
  const dec = summarize(decide);
  const mb = (b: number) => `${round(b / 1e6, 2)} MB`;
  console.log(`Retention over a run writing ${seen.size} checkpoints (small-mlp, keep {last: 2, best: 1}, the lab):`);
  console.log(
    `   written ${mb(written)} (${seen.size} files seen); ${deleted} deleted in ${events.length} passes, ` +
      `${mb(freed)} freed per the events (${round((100 * freed) / written, 1)}%); left ${left.length} ` +
      `(${left.sort().join(', ')}), ${mb(leftBytes)}; at most ${peak} on disk at once (a running job is pruned ` +
      `while its progress moves, at most every ${RETENTION_WAKE_MS / 1000} s, and at its end; one checkpoint ` +
      `a step of ${RETENTION_STEP_S} s)`,
  );
  console.log(`   one pass over ${CKPTS} checkpoints (list + decide + delete over SSH): ${ms(pass)}`);
  console.log(`   of it, the decision (core/retention.ts): ${ms(dec)}`);
  return { written, files: seen.size, peak, deleted, passes: events.length, freed, left, leftBytes, pass, decide: dec };
}

async function main() {
  const out: Record<string, unknown> = { date: new Date().toISOString() };
  try {
    if (SECTIONS.includes('placement')) out.placement = await placementSection();
    if (SECTIONS.includes('retention')) out.retention = await retentionSection();
    if (SECTIONS.includes('sweep')) out.sweep = await sweepSection();
  } finally {
    await cleanupAll();
  }
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  const file = join(ROOT, '.tmp', `bench-experiments-${String(out.date).replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`written to ${file}`);
}

await main();
