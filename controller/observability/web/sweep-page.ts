/**
 * PURE: the dashboard's page of a sweep (/sweeps/NAME): its summary, every trial's curve on one
 * chart with the rungs marked (sweep-svg.ts), and its trials best first with their parameters,
 * objective, state and why each stopped. Every value goes through escapeHtml. Which trial curves
 * it draws is the server's choice (server.ts reads them); `curveOf` turns what is known into one.
 */
import type { SweepStatus, TrialRecord } from '../../api/sweep-status.ts';
import { escapeHtml as h } from './escape.ts';
import { type PageCommon, page } from './html.ts';
import { sweepSvg, type TrialCurve } from './sweep-svg.ts';

const num = (v: number | undefined) => (v === undefined ? '-' : String(Number(v.toPrecision(5))));

/** Trials best first for the goal (those without an objective last), then by index. */
export function bestFirst(trials: readonly TrialRecord[], goal: 'minimize' | 'maximize'): TrialRecord[] {
  const sign = goal === 'minimize' ? 1 : -1;
  const key = (t: TrialRecord) => (t.objective === undefined ? Number.POSITIVE_INFINITY : sign * t.objective);
  return [...trials].sort((a, b) => key(a) - key(b) || a.index - b.index);
}

/**
 * A trial's curve: its metrics' points when read (the loss history the dashboard keeps), else what
 * the sweep's status knows (the value at each rung, then its newest objective).
 */
export function curveOf(t: TrialRecord, best: boolean, read?: readonly { step: number; value: number }[]): TrialCurve {
  if (read?.length) return { name: t.name, points: read, ...(best ? { best } : {}) };
  const points = t.rungs.flatMap((r) => (r.value === null ? [] : [{ step: r.step, value: r.value }]));
  const last = points[points.length - 1];
  if (t.objective !== undefined && t.step !== undefined && (!last || t.step > last.step))
    points.push({ step: t.step, value: t.objective });
  return { name: t.name, points, ...(best ? { best } : {}) };
}

export function sweepPage(c: PageCommon, name: string, s: SweepStatus, curves: readonly TrialCurve[]): string {
  const metric = s.objective?.metric ?? 'objective';
  const cur = bestFirst(
    s.trials.filter((t) => t.generation === s.generation),
    s.objective?.goal ?? 'minimize',
  );
  const k = s.counts;
  const summary: [string, string][] = [
    ['Phase', `${s.phase}${s.message ? `: ${s.message.split('\n', 1)[0]}` : ''}`],
    ['Generation', String(s.generation)],
    ['Owner', s.owner ?? '-'],
    ['Objective', s.objective ? `${s.objective.metric} (${s.objective.goal})` : '-'],
    ['Best', s.best ? `${s.best.trial}: ${num(s.best.objective)}` : '-'],
    [
      'Trials',
      `${k.total}: ${k.succeeded} ran to the end, ${k.running} running, ${k.paused} paused, ` +
        `${k.stopped} stopped, ${k.failed} failed, ${k.pending} pending`,
    ],
  ];
  const rows = cur
    .map((t) => {
      const params = Object.entries(t.params)
        .map(([p, v]) => `${p}=${v}`)
        .join(' ');
      const objective = t.diverged ? 'NaN (diverged)' : num(t.objective);
      return (
        `<tr data-trial="${h(t.name)}"><td><a href="/jobs/${encodeURIComponent(t.name)}">${h(t.name)}</a></td>` +
        `<td>${h(params)}</td><td>${h(objective)}</td><td>${h(t.step ?? '-')}</td>` +
        `<td class="state ${h(t.state)}">${h(t.state)}</td><td>${h(t.why ?? '')}</td></tr>`
      );
    })
    .join('');
  const older = s.trials.length - cur.length;
  const body =
    `<h2>Sweep <span class="sweep-name">${h(name)}</span> <span class="phase ${h(s.phase)}">${h(s.phase)}</span></h2>` +
    `<dl class="summary">${summary.map(([t, v]) => `<dt>${h(t)}</dt><dd>${h(v)}</dd>`).join('')}</dl>` +
    `<h3>Curves</h3><div id="sweep-chart" class="chart">` +
    `${sweepSvg(curves, s.rungs ?? [], { title: `${name}: ${metric} by step`, metric })}</div>` +
    `<h3>Trials</h3><table class="trials" id="trials"><thead><tr><th>Trial</th><th>Parameters</th>` +
    `<th>${h(metric)}</th><th>Step</th><th>State</th><th>Why stopped</th></tr></thead><tbody>${rows}</tbody></table>` +
    (older > 0 ? `<p class="older">Earlier generations: ${h(older)} trial(s)</p>` : '');
  return page(c, `sweep ${name}`, body, { page: 'sweep', sweep: name });
}
