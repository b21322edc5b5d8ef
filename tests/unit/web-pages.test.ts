/**
 * The dashboard's pages against hostile values and huge curves (issue 15), pure: every string
 * field the pages render gets markup, quotes and an ampersand, and none comes out as markup; loss
 * curves of 200k and 1M points are drawn (no stack overflow from Math.min(...points)) through a few
 * thousand points that keep the curve's extremes, in the SVG, in the job page's data and in
 * `ugro results --plot`; the metrics history thins a full attempt instead of dropping new points.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import type { Backend, MetricsChunk } from '../../controller/backends/api.ts';
import { writeLossPlot } from '../../controller/cli/plot.ts';
import { MetricsHistory } from '../../controller/observability/history.ts';
import { escapeHtml, jsonForScript } from '../../controller/observability/web/escape.ts';
import { type JobPageInput, jobPage, jobsPage, type PageCommon } from '../../controller/observability/web/html.ts';
import type { JobRow, NodeCard } from '../../controller/observability/web/rows.ts';
import { lossSvg } from '../../controller/observability/web/svg.ts';
import { extent, thinIndices } from '../../controller/observability/web/thin.ts';
import { CLUSTER, run } from './job-fixtures.ts';

const T = Date.parse('2026-03-01T10:00:00Z');
const EVIL = `<img src=x onerror=alert(1)>"'&`;

/** `v` with every string in it replaced by EVIL and the string's path (`paths` gets each path). */
function hostile<V>(v: V, path: string, paths: string[]): V {
  if (typeof v === 'string') {
    paths.push(path);
    return `${EVIL}${path}` as V;
  }
  if (Array.isArray(v)) return v.map((x, i) => hostile(x, `${path}[${i}]`, paths)) as V;
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, hostile(x, `${path}.${k}`, paths)])) as V;
  return v;
}

/** Every field of a row, a node card and a job page set (strings are then made hostile). */
function fullInputs() {
  const row: JobRow = {
    name: 'name',
    phase: 'Running',
    reason: 'reason',
    message: 'message',
    attempt: 2,
    restarts: 1,
    infraRestarts: 1,
    nodes: '1/2',
    hosts: ['gpu1'],
    owner: 'owner',
    revision: 'revision',
    percent: 25,
    etaSeconds: 90,
    samplesPerS: 1500,
    step: 25,
    totalSteps: 100,
    loss: 0.25,
    epoch: 1,
    createdAt: 'created',
  };
  const card: NodeCard = {
    name: 'gpu1',
    status: 'NotReady',
    reason: 'reason',
    rttMs: 3,
    checkedAt: 'checked',
    gpus: [
      {
        index: 0,
        name: 'gpu name',
        memoryTotalMiB: 8192,
        utilizationPct: 50,
        memoryUsedMiB: 1024,
        temperatureC: 60,
        powerW: 100,
        spark: [[T, 50]],
      },
    ],
  };
  const page: Omit<JobPageInput, 'row'> = {
    nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [0, 1], state: 'Running', exitCode: 1 }],
    failures: [{ attempt: 1, reason: 'reason', message: 'message', host: 'gpu1', rank: 0, time: 'time' }],
    series: [{ attempt: 1, points: [1, 2, 3].map((s) => ({ step: s, loss: 1 / s })) }],
    events: [{ time: 'time', job: 'job', type: 'Warning', reason: 'reason', message: 'message' }],
    rank: 0,
    ranks: [0, 1],
    log: { lines: ['line one', 'line two'], offset: 10, dir: 'dir', error: 'error' },
    runId: 'run-id',
  };
  return { row, card, page };
}

/** Fields of the inputs that no page shows (why, for each); every other one must be shown, escaped. */
const NOT_SHOWN = new Set([
  '.row.hosts[0]', // the nodes column counts them
  '.row.createdAt',
  '.card.checkedAt',
  '.page.events[0].job', // the page is that job's
  '.page.log.dir',
  '.page.runId', // in the page's data only (jsonForScript)
]);

describe('every field the pages render, hostile', () => {
  it('never becomes markup: jobs page (rows, node cards), job page (summary, nodes, failures, events, log)', () => {
    const paths: string[] = [];
    const { row, card, page } = hostile(fullInputs(), '', paths);
    const common: PageCommon = hostile({ cluster: 'cluster', nowMs: T }, '.common', paths);
    // The phase and node status are shown and classed: hostile too, whatever their types say.
    const html = [
      jobsPage(common, [row], [card]),
      jobPage(common, { row, ...page }),
      lossSvg(page.series, { title: row.name }),
    ].join('\n');
    expect(html).not.toContain('<img');
    expect(paths.length).toBeGreaterThan(25);
    for (const p of paths) {
      const value = `${EVIL}${p}`;
      // Not raw (the quotes and ampersand too), and shown escaped unless it is known not to be shown.
      expect(html, p).not.toContain(`"'&${p}`);
      if (NOT_SHOWN.has(p)) continue;
      const shown = html.includes(escapeHtml(value)) || html.includes(jsonForScript(value).slice(1, -1));
      expect(shown, `${p} is not rendered: list it in NOT_SHOWN or render it`).toBe(true);
    }
    // The only script elements: the page's data (JSON, inert) and the dashboard's own files.
    expect(jobsPage(common, [row], [card]).match(/<script/g)?.length).toBe(2);
    expect(jobPage(common, { row, ...page }).match(/<script/g)?.length).toBe(3);
  });

  it('each field checked separately: one hostile value at a time, the rest plain', () => {
    const paths: string[] = [];
    hostile(fullInputs(), '', paths);
    for (const only of paths) {
      const mark = (v: unknown, path: string): unknown => {
        if (typeof v === 'string') return path === only ? `${EVIL}${path}` : v;
        if (Array.isArray(v)) return v.map((x, i) => mark(x, `${path}[${i}]`));
        if (v && typeof v === 'object')
          return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mark(x, `${path}.${k}`)]));
        return v;
      };
      const { row, card, page } = mark(fullInputs(), '') as ReturnType<typeof fullInputs>;
      const html =
        jobsPage({ cluster: 'c', nowMs: T }, [row], [card]) + jobPage({ cluster: 'c', nowMs: T }, { row, ...page });
      expect(html, only).not.toContain('<img');
    }
  });
});

/** A loss curve of `n` points: 1/(1+s/1000), with one spike of 100 at step `spike` and one dip of -5. */
function curve(n: number, spike = Math.floor(n * 0.7777)) {
  const points: { step: number; loss: number; n: number }[] = new Array(n);
  for (let i = 0; i < n; i++) points[i] = { step: i, loss: 1 / (1 + i / 1000), n: i };
  points[spike].loss = 100;
  points[Math.floor(n / 3)].loss = -5;
  return points;
}

/** The polyline's points as [x, y] pixels. */
const drawn = (svg: string, attempt: number) =>
  (new RegExp(`data-attempt="${attempt}"[^>]* points="([^"]*)"`).exec(svg)?.[1] ?? '')
    .split(' ')
    .map((p) => p.split(',').map(Number));

describe('huge loss curves', () => {
  it('thinIndices: ascending, at most 4 (+ a gap) per column, first, last and every extreme kept', () => {
    const xs = Array.from({ length: 10_000 }, (_, i) => i);
    const ys = xs.map((i) => Math.sin(i / 50));
    ys[1234] = 9;
    ys[4321] = -9;
    ys[5000] = Number.NaN;
    const keep = thinIndices(xs, ys, 100);
    expect(keep.length).toBeLessThanOrEqual(500);
    expect([...keep].sort((a, b) => a - b)).toEqual(keep);
    for (const i of [0, 9999, 1234, 4321, 5000]) expect(keep).toContain(i);
    expect(thinIndices([1, 2, Number.NaN, 4], [1, 2, 3, 4], 100)).toEqual([0, 1, 3]);
    expect(extent([3, Number.NaN, -1, Number.POSITIVE_INFINITY, 2])).toEqual({ lo: -1, hi: 3 });
    expect(extent([Number.NaN])).toBeUndefined();
  });

  for (const n of [200_000, 1_000_000]) {
    it(`SVG of ${n} points: drawn through a few thousand, the spike and the dip still drawn`, () => {
      const pts = curve(n);
      const svg = lossSvg(
        [
          { attempt: 1, points: pts.slice(0, n / 2) },
          { attempt: 2, points: pts.slice(n / 2) },
        ],
        { title: 'big' },
      );
      expect(svg).toContain(`data-attempt="1" data-points="${n / 2}"`);
      expect(svg).toContain(`data-attempt="2" data-points="${n / 2}"`);
      const a1 = drawn(svg, 1);
      const a2 = drawn(svg, 2);
      expect(a1.length + a2.length).toBeLessThan(6000);
      // The spike (loss 100, in attempt 2) reaches the top of the plot; the dip (attempt 1) the bottom.
      expect(Math.min(...a2.map(([, y]) => y))).toBeLessThan(50);
      expect(Math.max(...a1.map(([, y]) => y))).toBeGreaterThan(295);
      expect(svg.length).toBeLessThan(200_000);
    });

    it(`the job page with ${n} points: 200, its chart data a few thousand points that say how many there are`, () => {
      const pts = curve(n);
      const html = jobPage(
        { cluster: 'c', nowMs: T },
        {
          ...fullInputs().page,
          row: fullInputs().row,
          series: [{ attempt: 1, points: pts, total: n }],
        },
      );
      expect(html).toContain(`data-points="${n}"`);
      const data = JSON.parse(/<script type="application\/json" id="ugro-data">(.*?)<\/script>/.exec(html)![1]);
      const s = data.series[0];
      expect(s.total).toBe(n);
      expect(s.steps.length).toBeLessThanOrEqual(4 * 1200 + 1200);
      expect(s.steps.length).toBe(s.loss.length);
      expect(s.idx.length).toBe(s.steps.length);
      expect(s.loss).toContain(100);
      expect(s.loss).toContain(-5);
      expect(s.idx[s.idx.length - 1]).toBe(n - 1);
      expect(html.length).toBeLessThan(400_000);
    });
  }

  it('the history thins a full attempt to half and reads on: the newest points kept, all counted', async () => {
    const lines = 10_000;
    const readMetrics = async (_h: unknown, _d: string, offset: number): Promise<MetricsChunk> => {
      const end = Math.min(lines, offset + 1000);
      const chunk = [];
      for (let s = offset; s < end; s++) chunk.push({ step: s, loss: s === 7777 ? 50 : 1 / (1 + s), time: s });
      return { lines: chunk, next: end, size: lines };
    };
    const r = run('big', 'abcdef12', 1, ['gpu1'], { createdAt: new Date(T).toISOString() });
    const h = new MetricsHistory({ readMetrics } as Pick<Backend, 'readMetrics'>, CLUSTER.hosts, {
      maxPoints: 1000,
    });
    const [a] = await h.refresh('big', [r.part('gpu1', { alive: false, exit: 0 })], 'abcdef12');
    expect(a.total).toBe(lines);
    expect(a.points.length).toBeLessThanOrEqual(1000);
    expect(a.points[a.points.length - 1]).toMatchObject({ step: lines - 1, n: lines - 1 });
    expect(a.points.some((p) => p.loss === 50)).toBe(true);
    const ns = a.points.map((p) => p.n);
    expect([...ns].sort((x, y) => x - y)).toEqual(ns);
  });

  for (const n of [200_000, 1_000_000]) {
    it(`ugro results --plot of a run with ${n} metrics lines: the whole run drawn, every line counted`, async () => {
      const r = run('long', 'abcdef12', 1, ['gpu1'], { createdAt: new Date(T).toISOString() });
      const part = r.part('gpu1', { alive: false, exit: 0 });
      const runtime = {
        observe: async (h: { name: string }) => ({ parts: h.name === 'gpu1' ? [part] : [] }),
        readMetrics: async (_h: unknown, _d: string, offset: number): Promise<MetricsChunk> => {
          // Chunks of 5000 lines: 64 of them (one refresh) are not the whole file.
          const end = Math.min(n, offset + 5000);
          const chunk = [];
          for (let s = offset; s < end; s++) chunk.push({ step: s, loss: s === n - 10 ? 100 : 1 / (1 + s / 1000) });
          return { lines: chunk, next: end, size: n };
        },
      } as unknown as Backend;
      const file = join(mkdtempSync(join(tmpdir(), 'ugro-plot-')), 'loss.svg');
      const status = { specHash: 'abcdef12' } as JobStatus;
      const res = await writeLossPlot(runtime, CLUSTER, 'long', status, file);
      expect(res).toMatchObject({ points: n, attempts: 1 });
      const svg = readFileSync(file, 'utf8');
      const line = drawn(svg, 1);
      expect(line.length).toBeLessThan(3000);
      // The last steps are drawn: the spike 10 steps before the end reaches the top, at the right edge.
      const top = line.reduce((a, b) => (b[1] < a[1] ? b : a));
      expect(top[1]).toBeLessThan(50);
      expect(top[0]).toBeGreaterThan(700);
    }, 60_000);
  }
});
