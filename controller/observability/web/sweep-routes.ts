/**
 * What the dashboard reads for sweeps (server.ts routes to it): the sweep of each job row that is
 * a trial (for its link), and a sweep's page from its status file (read through its schema) with
 * its best trials' curves.
 */
import { SWEEP_LABEL } from '../../api/sweep.ts';
import { parseTrialName } from '../../core/sweep-params.ts';
import { isJobName, type JobStore } from '../../store/store.ts';
import { SweepFiles } from '../../store/sweeps.ts';
import type { AttemptSeries } from '../history.ts';
import type { DashboardView } from '../view.ts';
import type { PageCommon } from './html.ts';
import { bestFirst, curveOf, sweepPage } from './sweep-page.ts';

/** Curves on a sweep's page: its best trials (each one a read of its metrics). */
const MAX_SWEEP_CURVES = 32;

/** The sweep of each job that is a trial: its name's pattern, then its label (the spec as the store read it). */
export async function sweepsOf(store: JobStore, jobs: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const sweeps = await new SweepFiles(store.dir).statusNames();
  if (!sweeps.length) return out;
  for (const j of jobs) {
    const s = sweeps.find((n) => parseTrialName(n, j));
    if (!s) continue;
    const spec = await store.readSpec(j).catch(() => undefined);
    if (spec?.kind === 'valid' && spec.job.metadata.labels?.[SWEEP_LABEL] === s) out.set(j, s);
  }
  return out;
}

/** One curve of a trial's attempts: by step, a later attempt's value where two meet (a resume). */
export function lossPoints(series: readonly AttemptSeries[]): { step: number; value: number }[] {
  const by = new Map<number, number>();
  for (const a of [...series].sort((x, y) => x.attempt - y.attempt))
    for (const p of a.points) if (Number.isFinite(p.loss)) by.set(p.step, p.loss);
  return [...by].sort(([a], [b]) => a - b).map(([step, value]) => ({ step, value }));
}

/** A sweep's page; undefined when there is no such sweep (no status). */
export async function sweepPageOf(
  o: { store: JobStore; view: Pick<DashboardView, 'status' | 'refreshLoss'> },
  c: PageCommon,
  name: string,
): Promise<string | undefined> {
  const s = isJobName(name) ? await new SweepFiles(o.store.dir).readStatus(name) : undefined;
  if (!s) return undefined;
  const cur = bestFirst(
    s.trials.filter((t) => t.generation === s.generation),
    s.objective?.goal ?? 'minimize',
  ).slice(0, MAX_SWEEP_CURVES);
  // The dashboard's loss history has every point of a trial; another objective: the status's rung values.
  const curves = await Promise.all(
    cur.map(async (t) => {
      const read =
        s.objective?.metric === 'loss' && o.view.status(t.name)
          ? lossPoints(await o.view.refreshLoss(t.name).catch(() => []))
          : undefined;
      return curveOf(t, s.best?.trial === t.name, read);
    }),
  );
  return sweepPage(c, name, s, curves);
}
