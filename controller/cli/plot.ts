/**
 * `ugro results NAME --plot FILE.svg`: the job's loss curve (every attempt of its current spec,
 * read from rank 0's metrics.jsonl on the host that ran it; restarts marked) written as SVG.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Cluster } from '../../config/cluster.ts';
import { UgroError } from '../../config/errors.ts';
import type { RunPart } from '../api/run.ts';
import type { JobStatus } from '../api/status.ts';
import type { MetricsReader, RunControl } from '../backends/api.ts';
import { MetricsHistory } from '../observability/history.ts';
import { lossSvg } from '../observability/web/svg.ts';

export async function writeLossPlot(
  runtime: Pick<RunControl, 'observe'> & MetricsReader,
  cluster: Cluster,
  name: string,
  status: JobStatus,
  file: string,
): Promise<{ points: number; attempts: number; unreachable: string[] }> {
  if (!runtime.readMetrics) throw new UgroError('this backend cannot read metrics files');
  const parts: RunPart[] = [];
  const unreachable: string[] = [];
  await Promise.all(
    cluster.hosts.map(async (h) => {
      try {
        parts.push(...(await runtime.observe(h, name)).parts);
      } catch (e) {
        unreachable.push(`${h.name} (${(e as Error).message.replace(`${h.name}: `, '')})`);
      }
    }),
  );
  // One refresh reads at most 64 chunks of each file: read on until no offset moves (a long run).
  const history = new MetricsHistory(runtime, cluster.hosts);
  let series = await history.refresh(name, parts, status.specHash);
  for (let moved = true, rounds = 0; moved && rounds < 10_000; rounds++) {
    const before = series.map((s) => s.offset).join();
    series = await history.refresh(name, parts, status.specHash);
    moved = series.map((s) => s.offset).join() !== before;
  }
  // lossSvg draws each line through at most 4 points per pixel column, however many there are.
  const svg = lossSvg(
    series.map((s) => ({ attempt: s.attempt, points: s.points, total: s.total })),
    { title: `${name}: loss by step` },
  );
  const tmp = join(dirname(file), `.${process.pid}.${Date.now()}.ugro-plot.tmp`);
  try {
    writeFileSync(tmp, svg, { flag: 'wx' });
    renameSync(tmp, file);
  } catch (e) {
    throw new UgroError(`cannot write ${file}: ${(e as Error).message}`);
  }
  // Every point read (a very long run's history holds fewer: thinned).
  const points = series.reduce((n, s) => n + s.total, 0);
  return { points, attempts: series.length, unreachable };
}
