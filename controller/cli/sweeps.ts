/**
 * The sweep verbs' shared part (loaded only by them): `get sweeps`, `describe sweep`, `results
 * sweep --plot`, and `get jobs -l` (label selection, which the trials' `ugro.dev/sweep` label is
 * for). The sweep's status file is read through its schema; the spec through the store.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Cluster } from '../../config/cluster.ts';
import { NotFoundError, UgroError, UsageError } from '../../config/errors.ts';
import { specHash } from '../api/trainingjob.ts';
import type { MetricsReader, RunControl } from '../backends/api.ts';
import { TrialMetrics } from '../loop/sweep-metrics.ts';
import { sweepSvg, type TrialCurve } from '../observability/web/sweep-svg.ts';
import type { JobStore } from '../store/store.ts';
import { SweepFiles } from '../store/sweeps.ts';
import type { SweepRow } from './render/sweeps.ts';

/** Every sweep (a file of kind Sweep, or a status left), or the ones named. */
export async function readSweeps(store: JobStore, names: readonly string[] = []): Promise<SweepRow[]> {
  const files = new SweepFiles(store.dir);
  let wanted = [...names];
  if (!wanted.length) {
    const { specs } = await store.listNames();
    const all = new Set(await files.statusNames());
    for (const n of specs) if ((await store.readSweep(n)).kind !== 'deleted') all.add(n);
    wanted = [...all].sort();
  }
  const rows = await Promise.all(
    wanted.map(async (name) => {
      const [spec, status] = await Promise.all([store.readSweep(name), files.readStatus(name)]);
      return { name, spec, ...(status ? { status } : {}) };
    }),
  );
  const missing = rows.filter((r) => r.spec.kind === 'deleted' && !r.status).map((r) => r.name);
  if (missing.length) throw new NotFoundError(`sweep ${missing.join(', ')} not found in ${store.dir}`);
  return rows;
}

/** `-l k=v,k2!=v2,k3`: a label selector, as kubectl's equality-based one. */
export function labelSelector(raw: string): (labels: Record<string, string> | undefined) => boolean {
  const terms = raw.split(',').map((t) => t.trim());
  const tests = terms.map((t) => {
    const m = /^([A-Za-z0-9._/-]+)\s*(!=|==|=)?\s*([A-Za-z0-9._-]*)$/.exec(t);
    if (!m) throw new UsageError(`-l: ${JSON.stringify(t)} is not KEY, KEY=VALUE or KEY!=VALUE`);
    const [, k, op, v] = m;
    if (!op) return (l: Record<string, string>) => k in l;
    return op === '!=' ? (l: Record<string, string>) => l[k] !== v : (l: Record<string, string>) => l[k] === v;
  });
  return (labels) => tests.every((f) => f(labels ?? {}));
}

/** The jobs whose labels match (their spec files are read through the store). */
export async function jobsWithLabels(store: JobStore, selector: string): Promise<string[]> {
  const match = labelSelector(selector);
  const { specs } = await store.listNames();
  const out: string[] = [];
  for (const n of specs.sort()) {
    const s = await store.readSpec(n);
    if (s.kind === 'valid' && match(s.job.metadata.labels)) out.push(n);
  }
  return out;
}

/** Every trial's objective curve of the sweep's current generation on one SVG, its rungs marked. */
export async function writeSweepPlot(
  runtime: Pick<RunControl, 'observe'> & MetricsReader,
  cluster: Cluster,
  store: JobStore,
  row: SweepRow,
  file: string,
): Promise<{ trials: number; points: number; unreachable: string[] }> {
  const s = row.status;
  if (!s) throw new NotFoundError(`sweep ${row.name} has no status yet`);
  if (!runtime.readMetrics) throw new UgroError('this backend cannot read metrics files');
  const metric = s.objective?.metric ?? 'loss';
  const reader = new TrialMetrics(runtime, (n) => cluster.hosts.find((h) => h.name === n));
  const unreachable = new Set<string>();
  const curves: TrialCurve[] = [];
  for (const t of s.trials.filter((x) => x.generation === s.generation)) {
    const spec = await store.readSpec(t.name);
    if (spec.kind !== 'valid') continue;
    const parts = (
      await Promise.all(
        cluster.hosts.map((h) =>
          runtime.observe(h, t.name).then(
            (o) => o.parts,
            () => {
              unreachable.add(h.name);
              return [];
            },
          ),
        ),
      )
    ).flat();
    // A long run takes more than one read: read on until the series stops growing.
    let points = (await reader.series(t.name, specHash(spec.job.spec), metric, parts)) ?? [];
    for (let i = 0; i < 1000; i++) {
      const more = (await reader.series(t.name, specHash(spec.job.spec), metric, parts)) ?? [];
      if (more.length === points.length) break;
      points = more;
    }
    // A diverged (not finite) value has no place on the chart: the curve ends where it was finite.
    const finite = points.filter((p): p is { step: number; value: number } => p.value !== null);
    curves.push({ name: t.name, points: finite, best: s.best?.trial === t.name });
  }
  const svg = sweepSvg(curves, s.rungs ?? [], { title: `${row.name}: ${metric} by step`, metric });
  const tmp = join(dirname(file), `.${process.pid}.${Date.now()}.ugro-plot.tmp`);
  try {
    writeFileSync(tmp, svg, { flag: 'wx' });
    renameSync(tmp, file);
  } catch (e) {
    throw new UgroError(`cannot write ${file}: ${(e as Error).message}`);
  }
  return {
    trials: curves.length,
    points: curves.reduce((n, c) => n + c.points.length, 0),
    unreachable: [...unreachable],
  };
}
