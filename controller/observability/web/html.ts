/**
 * PURE: the dashboard's pages as HTML, complete without JavaScript (tables, text, the loss curve as
 * SVG); dashboard.js then keeps them live over Server-Sent Events. Every value goes through
 * escapeHtml, and the page's data for the script goes in a JSON script element (jsonForScript).
 */
import { formatDuration, formatRate } from '../../format/progress.ts';
import type { JobEvent } from '../../store/store.ts';
import { escapeHtml as h, jsonForScript } from './escape.ts';
import type { JobRow, NodeCard } from './rows.ts';
import { lossSvg, type PlotSeries } from './svg.ts';
import { thinSeries } from './thin.ts';

/** Columns of steps per attempt in the page's chart data (at most 4 points each; thin.ts). */
export function chartColumns(attempts: number): number {
  return Math.max(50, Math.floor(1200 / Math.max(1, attempts)));
}

/**
 * An attempt's points for the browser's chart: thinned; `total` counts them all, `idx` says which
 * each one is (a stream's `from` counts in the same unit).
 */
export function chartSeries(s: PlotSeries, columns: number) {
  return { attempt: s.attempt, total: s.total ?? s.points.length, ...thinSeries(s.points, columns) };
}

export interface PageCommon {
  cluster: string;
  /** Now, for ages. */
  nowMs: number;
}

export function page(c: PageCommon, title: string, body: string, data: unknown, extraHead = ''): string {
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">' +
    `<title>${h(title)} · UGRO</title><link rel="stylesheet" href="/assets/dashboard.css">${extraHead}` +
    `<script type="application/json" id="ugro-data">${jsonForScript(data)}</script>` +
    '<script src="/assets/dashboard.js" defer></script></head><body>' +
    `<header><a href="/" class="brand">UGRO</a> <span class="cluster">${h(c.cluster)}</span>` +
    '<span id="live" class="live" title="live updates">offline</span></header>' +
    `<main>${body}</main></body></html>\n`
  );
}

function percentText(r: Pick<JobRow, 'percent' | 'step' | 'totalSteps'>): string {
  if (r.percent === undefined) return r.step !== undefined ? `step ${r.step}` : '-';
  const steps = r.step !== undefined && r.totalSteps !== undefined ? ` (${r.step}/${r.totalSteps})` : '';
  return `${r.percent.toFixed(r.percent < 10 ? 1 : 0)}%${steps}`;
}

/** The cells of a job row, in column order: [key, text]. The script fills the same keys. */
function rowCells(r: JobRow, withRevision: boolean): [string, string][] {
  const cells: [string, string][] = [
    ['phase', r.phase],
    ['progress', percentText(r)],
    ['eta', r.etaSeconds !== undefined ? formatDuration(r.etaSeconds) : '-'],
    ['rate', r.samplesPerS !== undefined ? `${formatRate(r.samplesPerS)}/s` : '-'],
    ['loss', r.loss !== undefined ? String(Number(r.loss.toPrecision(4))) : '-'],
    ['owner', r.owner ?? '-'],
  ];
  if (withRevision) cells.push(['revision', r.revision ?? '-']);
  cells.push(
    ['restarts', r.infraRestarts ? `${r.restarts} (${r.infraRestarts} infra)` : String(r.restarts)],
    ['nodes', r.nodes],
    ['reason', [r.reason, r.message].filter(Boolean).join(': ') || '-'],
  );
  return cells;
}

const COLUMN_TITLES: Record<string, string> = {
  phase: 'Phase',
  progress: 'Progress',
  eta: 'ETA',
  rate: 'Samples/s',
  loss: 'Loss',
  owner: 'Owner',
  revision: 'Revision',
  restarts: 'Restarts',
  nodes: 'Nodes',
  reason: 'Reason',
};

function jobRowHtml(r: JobRow, withRevision: boolean, sweep?: string): string {
  const cells = rowCells(r, withRevision)
    .map(([k, v]) => {
      if (k === 'progress')
        return (
          `<td data-k="progress"><progress max="100" value="${h(r.percent ?? 0)}"></progress> ` +
          `<span>${h(v)}</span></td>`
        );
      return `<td data-k="${k}"${k === 'phase' ? ` class="phase ${h(r.phase)}"` : ''}>${h(v)}</td>`;
    })
    .join('');
  const trialOf = sweep ? ` <a class="sweep" href="/sweeps/${encodeURIComponent(sweep)}">sweep ${h(sweep)}</a>` : '';
  const link = `<a href="/jobs/${encodeURIComponent(r.name)}">${h(r.name)}</a>${trialOf}`;
  return `<tr data-job="${h(r.name)}"><td>${link}</td>${cells}</tr>`;
}

export function sparkPoints(spark: readonly [number, number][], w = 120, hgt = 28, spanMs = 3_600_000): string {
  if (!spark.length) return '';
  const end = spark[spark.length - 1][0];
  return spark
    .filter(([, v]) => Number.isFinite(v))
    .map(([t, v]) => {
      const x = Math.max(0, w - ((end - t) / spanMs) * w);
      const y = hgt - (Math.max(0, Math.min(100, v)) / 100) * hgt;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' ');
}

function gpuLine(g: NodeCard['gpus'][number]): string {
  const mem =
    g.memoryUsedMiB !== undefined
      ? `${(g.memoryUsedMiB / 1024).toFixed(1)}/${(g.memoryTotalMiB / 1024).toFixed(1)} GiB`
      : '-';
  const vals: [string, string][] = [
    ['util', g.utilizationPct !== undefined ? `${Math.round(g.utilizationPct)}%` : '-'],
    ['mem', mem],
    ['temp', g.temperatureC !== undefined ? `${Math.round(g.temperatureC)}°C` : '-'],
    ['power', g.powerW !== undefined ? `${Math.round(g.powerW)} W` : '-'],
  ];
  return (
    `<li data-gpu="${h(g.index)}"><span class="gpu-name">GPU ${h(g.index)}: ${h(g.name)}</span> ` +
    vals.map(([k, v]) => `<span data-k="${k}">${h(v)}</span>`).join(' ') +
    '<svg class="spark" width="120" height="28" viewBox="0 0 120 28" aria-label="utilization, last hour">' +
    `<polyline points="${sparkPoints(g.spark)}"/></svg></li>`
  );
}

function nodeCardHtml(n: NodeCard): string {
  const reason = n.reason ? `<div class="reason">${h(n.reason)}</div>` : '';
  const rtt = n.rttMs !== undefined ? `<span class="rtt">ssh ${n.rttMs.toFixed(0)} ms</span>` : '';
  return (
    `<section class="node ${h(n.status)}" data-node="${h(n.name)}"><h3>${h(n.name)} ` +
    `<span class="status">${h(n.status)}</span> ${rtt}</h3>${reason}` +
    `<ul class="gpus">${n.gpus.map(gpuLine).join('') || '<li>no GPUs reported</li>'}</ul></section>`
  );
}

/** `sweepOf`: the sweep of each job that is a sweep's trial (labelled ugro.dev/sweep): a link to its page. */
export function jobsPage(
  c: PageCommon,
  rows: readonly JobRow[],
  nodes: readonly NodeCard[],
  sweepOf: ReadonlyMap<string, string> = new Map(),
): string {
  const withRevision = rows.some((r) => r.revision);
  const cols = rowCells(rows[0] ?? ({ phase: '', restarts: 0, infraRestarts: 0, nodes: '' } as JobRow), withRevision);
  const head = `<tr><th>Job</th>${cols.map(([k]) => `<th data-k="${k}">${COLUMN_TITLES[k]}</th>`).join('')}</tr>`;
  const body =
    `<section class="nodes" id="nodes">${nodes.map(nodeCardHtml).join('')}</section>` +
    `<h2>Jobs <span class="count" id="job-count">${rows.length}</span></h2>` +
    `<table class="jobs" id="jobs" data-revision="${withRevision ? 1 : 0}"><thead>${head}</thead><tbody>` +
    rows.map((r) => jobRowHtml(r, withRevision, sweepOf.get(r.name))).join('') +
    '</tbody></table>';
  return page(c, 'Jobs', body, { page: 'jobs', revision: withRevision });
}

export interface JobPageInput {
  row: JobRow;
  /** Status details: nodes (host, ranks, state), failures. */
  nodes: { host: string; nodeRank: number; globalRanks: number[]; state: string; exitCode?: number }[];
  failures: { attempt: number; reason: string; message: string; host?: string; rank?: number; time: string }[];
  series: PlotSeries[];
  /** Lines counted per attempt (the chart has one point per line with a step and a loss). */
  events: JobEvent[];
  rank: number;
  ranks: number[];
  log: { lines: string[]; offset: number; dir?: string; error?: string };
  runId?: string;
}

export function jobPage(c: PageCommon, j: JobPageInput): string {
  const r = j.row;
  const dl = rowCells(r, !!r.revision)
    .map(([k, v]) => `<dt>${COLUMN_TITLES[k]}</dt><dd data-k="${k}">${h(v)}</dd>`)
    .join('');
  const nodes = j.nodes
    .map(
      (n) =>
        `<tr><td>${h(n.host)}</td><td>${h(n.nodeRank)}</td><td>${h(n.globalRanks.join(', '))}</td>` +
        `<td>${h(n.state)}</td><td>${h(n.exitCode)}</td></tr>`,
    )
    .join('');
  const failures = j.failures
    .map(
      (f) =>
        `<tr><td>${h(f.attempt)}</td><td>${h(f.reason)}</td><td>${h(f.host)}</td><td>${h(f.rank)}</td>` +
        `<td>${h(f.time)}</td><td>${h(f.message)}</td></tr>`,
    )
    .join('');
  const rankLinks = j.ranks
    .map((k) =>
      k === j.rank
        ? `<strong>rank ${h(k)}</strong>`
        : `<a href="/jobs/${encodeURIComponent(r.name)}?rank=${h(k)}">rank ${h(k)}</a>`,
    )
    .join(' ');
  const events = j.events
    .slice()
    .reverse()
    .map(
      (e) =>
        `<tr class="${h(e.type)}"><td>${h(e.time)}</td><td>${h(e.type)}</td><td>${h(e.reason)}</td>` +
        `<td>${h(e.message)}</td></tr>`,
    )
    .join('');
  const points = j.series.reduce((n, s) => n + (s.total ?? s.points.length), 0);
  const body =
    `<h2>Job <span class="job-name">${h(r.name)}</span> <span class="phase ${h(r.phase)}" data-k="phase">` +
    `${h(r.phase)}</span></h2><dl class="summary" id="summary">${dl}<dt>Attempt</dt><dd data-k="attempt">` +
    `${h(r.attempt)}</dd></dl>` +
    `<h3>Loss</h3><div id="loss" class="chart" data-points="${points}">` +
    `${lossSvg(j.series, { title: `${r.name}: loss by step` })}</div>` +
    `<h3>Log <span class="ranks">${rankLinks}</span></h3>` +
    (j.log.error ? `<p class="error" id="log-error">${h(j.log.error)}</p>` : '') +
    `<pre id="log" class="log">${j.log.lines.map((l) => `<span>${h(l)}\n</span>`).join('')}</pre>` +
    `<h3>Nodes</h3><table class="nodes-of-job"><thead><tr><th>Host</th><th>Node rank</th><th>Global ranks</th>` +
    `<th>State</th><th>Exit</th></tr></thead><tbody id="job-nodes">${nodes}</tbody></table>` +
    (failures
      ? '<h3>Failures</h3><table><thead><tr><th>Attempt</th><th>Reason</th><th>Host</th><th>Rank</th><th>Time</th>' +
        `<th>Message</th></tr></thead><tbody>${failures}</tbody></table>`
      : '') +
    '<h3>Events</h3><table class="events"><thead><tr><th>Time</th><th>Type</th><th>Reason</th><th>Message</th></tr>' +
    `</thead><tbody id="events">${events}</tbody></table>`;
  const data = {
    page: 'job',
    job: r.name,
    rank: j.rank,
    logOffset: j.log.offset,
    runId: j.runId ?? null,
    // Thinned: the page stays small and the browser draws a few thousand points, not a million.
    series: j.series.map((s) => chartSeries(s, chartColumns(j.series.length))),
  };
  const head =
    '<link rel="stylesheet" href="/assets/uPlot.min.css"><script src="/assets/uPlot.iife.min.js" defer></script>';
  return page(c, r.name, body, data, head);
}
