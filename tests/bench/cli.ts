/**
 * How fast `ugro` starts (a benchmark, not a test: it prints numbers and never fails on them).
 * Needs no lab and no root:
 *
 *   node --import tsx tests/bench/cli.ts [--runs N]      (or: npm run bench:cli)
 *
 * It builds dist/ first (what `npm ci` does), writes two jobs directories (100 and 1000 jobs,
 * each a spec plus a status written by the real store, in a mix of phases), then runs each
 * command N times (default 25; at least 3, under 20 a quick look only) round-robin, after two
 * warm-up runs, and prints the median wall time and its ratio to `node -e 0`. Goals: --help at
 * most 1.5x, get jobs on 100 jobs at most 2x.
 * tests/bench/run.ts can call runCliBench() and fold the figures into its own report.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { JobStatus } from '../../controller/api/status.ts';
import { JobStore } from '../../controller/store/store.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/ugro.mjs');

const PHASES = ['Running', 'Succeeded', 'Failed', 'Queued'] as const;

function specYaml(name: string, i: number): string {
  return [
    '# yaml-language-server: $schema=../controller/api/trainingjob.schema.json',
    'apiVersion: ugro.dev/v1alpha1',
    'kind: TrainingJob',
    'metadata:',
    `  name: ${name}`,
    '  labels: { team: research }',
    'spec:',
    '  script: train.py',
    `  args: ["--model", "tiny-mlp", "--epochs", "${3 + (i % 5)}", "--lr", "0.01"]`,
    `  nodes: ${1 + (i % 3)}`,
    '  nprocPerNode: 1',
    `  priority: ${['high', 'normal', 'low'][i % 3]}`,
    '  restartPolicy: { maxRestarts: 2, backoffSeconds: 10 }',
    '  activeDeadlineSeconds: 86400',
    '',
  ].join('\n');
}

/** A status as the controller writes it: nodes, conditions, progress; failures and a log tail when Failed. */
function status(name: string, i: number): JobStatus {
  const phase = PHASES[i % PHASES.length];
  const at = (s: number) => new Date(Date.UTC(2025, 2, 1, 10, 0, s % 60, 0) + i * 60_000).toISOString();
  const hosts = ['gpu-master', 'gpu1', 'gpu2'].slice(0, 1 + (i % 3));
  const started = phase !== 'Queued';
  const condition = (type: string, reason: string) => ({
    type,
    status: 'True' as const,
    reason,
    message: `${reason} for ${name}`,
    lastTransitionTime: at(5),
  });
  return {
    phase,
    observedGeneration: 1,
    specHash: 'abcd1234',
    attempt: started ? 1 + (i % 2) : 0,
    ...(started ? { runId: `${name}.abcd1234.1`, rdzvEndpoint: '10.0.0.10:29500', startTime: at(5) } : {}),
    nodes: started
      ? hosts.map((host, r) => ({
          host,
          nodeRank: r,
          globalRanks: [r],
          pid: 1000 + r,
          state: phase === 'Running' ? 'Running' : phase === 'Failed' && r === 0 ? 'Failed' : 'Succeeded',
          ...(phase === 'Running' ? {} : { exitCode: phase === 'Failed' && r === 0 ? 3 : 0 }),
        }))
      : [],
    createdAt: at(0),
    ...(phase === 'Succeeded' || phase === 'Failed' ? { completionTime: at(50) } : {}),
    ...(started ? { progress: { epoch: 1 + (i % 7), loss: 0.5 / (1 + (i % 9)), step: 40 * i } } : {}),
    restarts: { infra: 0, training: phase === 'Failed' ? 1 : 0 },
    ...(phase === 'Failed'
      ? {
          exitCode: 3,
          failedRank: 0,
          failedHost: hosts[0],
          logTail: Array.from({ length: 20 }, (_, k) => `epoch ${k} step ${k * 40} loss 0.${k} lr 0.01`),
          failures: [
            {
              attempt: 1,
              class: 'training' as const,
              reason: 'RankFailed',
              message: 'rank 0 exited with code 3',
              host: hosts[0],
              rank: 0,
              exitCode: 3,
              time: at(50),
            },
          ],
        }
      : {}),
    conditions: started
      ? [condition('HostsReachable', 'Reachable'), condition('Scheduled', 'Placed'), condition('Running', 'Started')]
      : [condition('Scheduled', 'Unschedulable')],
  };
}

/** A jobs directory with `n` jobs, written through the real store (the controller's status format). */
export async function writeJobsDir(dir: string, n: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const store = new JobStore(dir);
  for (let i = 0; i < n; i++) {
    const name = `job-${String(i).padStart(4, '0')}`;
    writeFileSync(join(dir, `${name}.yaml`), specYaml(name, i));
    await store.writeStatus(name, status(name, i));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Case {
  key: string;
  argv: string[];
  env?: Record<string, string>;
  /** Goal as a ratio to `node -e 0`. */
  goal?: number;
}

function build(): void {
  const b = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`build failed: ${b.stderr}`);
}

function timeOnce(c: Case): number {
  const ms = spawnTimed(c);
  if (ms !== undefined) return ms;
  // A source file changed under us (bin/ugro.mjs then runs the sources): rebuild, measure again.
  build();
  const again = spawnTimed(c);
  if (again === undefined) throw new Error(`${c.key}: dist/ is stale right after a build`);
  return again;
}

/** Wall time of one run; undefined if it ran the sources instead of dist/ when dist/ was meant. */
function spawnTimed(c: Case): number | undefined {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, c.argv, {
    cwd: tmpdir(), // not the repository: the CLI must find its files from its own location
    env: { ...process.env, UGRO_CLUSTER: '/nonexistent/cluster.yaml', ...c.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const err = r.stderr.toString();
  if (r.status !== 0) throw new Error(`${c.key}: exit ${r.status}: ${err.trim()}`);
  if (!c.env?.UGRO_FROM_SOURCE && err.includes('running the sources through tsx')) return undefined;
  return ms;
}

/**
 * Medians (ms) of each command and their ratios to `node -e 0`, e.g. `{ 'node -e 0': 41.2,
 * 'ugro --help': 52.0, 'ugro --help / node -e 0': 1.26, … }`.
 */
export async function runCliBench(
  opts: { runs?: number; log?: (s: string) => void } = {},
): Promise<Record<string, number>> {
  // Fewer than 20 runs (BENCH_CLI_RUNS, --runs) is a quick look, not the figure: said when logged.
  const runs = Math.max(3, opts.runs ?? 25);
  const log = opts.log ?? ((s: string) => console.log(s));
  build();
  const tmp = mkdtempSync(join(tmpdir(), 'ugro-bench-cli-'));
  try {
    await writeJobsDir(join(tmp, 'jobs100'), 100);
    await writeJobsDir(join(tmp, 'jobs1000'), 1000);
    const cases: Case[] = [
      { key: 'node -e 0', argv: ['-e', '0'] },
      { key: 'ugro --help', argv: [BIN, '--help'], goal: 1.5 },
      { key: 'ugro get jobs (100 jobs)', argv: [BIN, '--jobs', join(tmp, 'jobs100'), 'get', 'jobs'], goal: 2 },
      { key: 'ugro get jobs (1000 jobs)', argv: [BIN, '--jobs', join(tmp, 'jobs1000'), 'get', 'jobs'] },
      // Without the per-user cache: every status file parsed (what the first listing after a change costs).
      {
        key: 'ugro get jobs (100 jobs, no cache)',
        argv: [BIN, '--jobs', join(tmp, 'jobs100'), 'get', 'jobs'],
        env: { XDG_CACHE_HOME: '', HOME: '' },
      },
      {
        key: 'ugro get jobs -o json (100 jobs)',
        argv: [BIN, '--jobs', join(tmp, 'jobs100'), 'get', 'jobs', '-o', 'json'],
      },
      { key: 'ugro --help from sources (tsx)', argv: [BIN, '--help'], env: { UGRO_FROM_SOURCE: '1' } },
    ];
    // get jobs keeps a per-user cache: one in the scratch directory, never the caller's ~/.cache.
    for (const c of cases) c.env = { XDG_CACHE_HOME: join(tmp, 'cache'), ...c.env };
    const times = new Map(cases.map((c) => [c.key, [] as number[]]));
    for (const c of cases) for (let i = 0; i < 2; i++) timeOnce(c); // warm the page cache
    for (let i = 0; i < runs; i++) for (const c of cases) times.get(c.key)!.push(timeOnce(c));

    const base = median(times.get('node -e 0')!);
    const out: Record<string, number> = { runs };
    const quick = runs < 20 ? ' (under 20: a quick look only)' : '';
    log(`ugro CLI start-up: median of ${runs} runs each${quick} (node ${process.version})`);
    for (const c of cases) {
      const m = median(times.get(c.key)!);
      const ratio = m / base;
      out[c.key] = Math.round(m * 10) / 10;
      if (c.key !== 'node -e 0') out[`${c.key} / node -e 0`] = Math.round(ratio * 100) / 100;
      const goal = c.goal ? `  goal <= ${c.goal}x: ${ratio <= c.goal ? 'met' : 'NOT met'}` : '';
      log(`  ${c.key.padEnd(34)} ${m.toFixed(1).padStart(7)} ms  ${ratio.toFixed(2).padStart(5)}x${goal}`);
    }
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--runs');
  await runCliBench({ runs: i > 0 ? Number(process.argv[i + 1]) : undefined });
}
