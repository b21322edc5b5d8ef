/**
 * How long `ugro doctor` takes on the lab (a benchmark: it prints numbers and never fails on them):
 *
 *   npm run bench:doctor                      (builds dist/, takes the lab lock; BENCH_DOCTOR_RUNS=N, default 5)
 *
 * Runs the real command (`node bin/ugro.mjs --cluster .lab/cluster.yaml doctor -o json`) N times,
 * alternating with `--no-allreduce`, and prints the wall time's p50/min/max of each, with the
 * command's own figure (report.ms: from the first ssh to the last answer) and the all-reduce's
 * share. The lab's three hosts share this machine's 2 cores with whatever else runs.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { DoctorReport } from '../../controller/backends/doctor.ts';
import { round, summarize } from './lib.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const RUNS = Math.max(1, Number(process.env.BENCH_DOCTOR_RUNS ?? 5));

function once(extra: string[]): { wallMs: number; report: DoctorReport } {
  const t0 = performance.now();
  const r = spawnSync(
    'node',
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', join(ROOT, '.lab/cluster.yaml'), 'doctor', '-o', 'json', ...extra],
    { encoding: 'utf8', timeout: 120_000 },
  );
  const wallMs = performance.now() - t0;
  const report = JSON.parse(r.stdout) as DoctorReport;
  if (!report.ok)
    console.error(`note: a run reported failed checks: ${report.checks.map((c) => c.message).join('; ')}`);
  return { wallMs, report };
}

const full: number[] = [];
const inner: number[] = [];
const noAr: number[] = [];
const bw: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const a = once([]);
  full.push(a.wallMs);
  inner.push(a.report.ms);
  for (const p of a.report.allreduce.pairs) if (p.busbwGBps) bw.push(p.busbwGBps);
  noAr.push(once(['--no-allreduce']).wallMs);
}
const row = (name: string, xs: number[]) => {
  const s = summarize(xs);
  const sec = (ms: number) => round(ms / 1000, 2);
  return `${name.padEnd(44)} p50 ${sec(s.p50)} s  (min ${sec(s.min)}, max ${sec(s.max)}, n ${s.n})`;
};
console.log(`ugro doctor on the lab (3 hosts), ${RUNS} runs each, alternating`);
console.log(row('ugro doctor (wall, process start to exit)', full));
console.log(row('  of it, the checks (report.ms)', inner));
console.log(row('ugro doctor --no-allreduce (wall)', noAr));
const b = summarize(bw);
console.log(
  `${'gloo all-reduce bus bandwidth per pair'.padEnd(44)} p50 ${round(b.p50, 2)} GB/s ` +
    `(min ${round(b.min, 2)}, max ${round(b.max, 2)})`,
);
