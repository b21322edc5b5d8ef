/**
 * The pure parts of what the controller shows (issue 11): progress and ETA from metrics lines,
 * which status changes notify, the dashboard's escaping, rows and pages, the loss curve as SVG,
 * the telemetry ring's memory bound. No I/O.
 */
import { describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import type { NodeHealth } from '../../controller/backends/health.ts';
import { parseNvidiaSmiCsv } from '../../controller/backends/health.ts';
import { notificationOf } from '../../controller/core/notifications.ts';
import { estimateProgress, pointOf } from '../../controller/core/progress.ts';
import { etaNow, formatDuration, formatRate, progressBar } from '../../controller/format/progress.ts';
import { SampleRing, Telemetry } from '../../controller/observability/telemetry.ts';
import { cleanLogLine, escapeHtml, jsonForScript } from '../../controller/observability/web/escape.ts';
import { jobPage, jobsPage, sparkPoints } from '../../controller/observability/web/html.ts';
import { jobRowOf } from '../../controller/observability/web/rows.ts';
import { lossSvg, ticks } from '../../controller/observability/web/svg.ts';

const T = Date.parse('2026-03-01T10:00:00Z');

function status(p: Partial<JobStatus> = {}): JobStatus {
  return {
    phase: 'Running',
    observedGeneration: 1,
    attempt: 1,
    nodes: [],
    createdAt: '2026-03-01T09:00:00Z',
    conditions: [],
    ...p,
  };
}

describe('progress and ETA (core/progress.ts, format/progress.ts)', () => {
  it('percent, samples/s and an ETA from the rate over the points seen', () => {
    const last = { step: 300, total_steps: 1000, loss: 0.5, samples_per_s: 640, epoch: 1 };
    const pts = [
      { step: 100, atMs: T },
      { step: 200, atMs: T + 10_000 },
      { step: 300, atMs: T + 20_000 },
    ];
    const e = estimateProgress(last, pts);
    expect(e).toMatchObject({ step: 300, totalSteps: 1000, percent: 30, samplesPerS: 640, loss: 0.5, epoch: 1 });
    expect(e.stepsPerS).toBeCloseTo(10);
    expect(e.etaSeconds).toBeCloseTo(70);
  });

  it('no rate from one point, none from a step that did not move; done means ETA 0', () => {
    const last = { step: 50, total_steps: 100 };
    expect(estimateProgress(last, [{ step: 50, atMs: T }]).etaSeconds).toBeUndefined();
    expect(
      estimateProgress(last, [
        { step: 50, atMs: T },
        { step: 50, atMs: T + 5000 },
      ]).etaSeconds,
    ).toBeUndefined();
    expect(estimateProgress({ step: 100, total_steps: 100 }, []).etaSeconds).toBe(0);
    expect(estimateProgress({ step: 120, total_steps: 100 }, []).percent).toBe(100);
  });

  it('the rate looks back five minutes at most: a slowdown shows at once', () => {
    const pts = [
      { step: 0, atMs: T },
      { step: 1000, atMs: T + 60_000 }, // fast at first
      { step: 1010, atMs: T + 600_000 },
      { step: 1020, atMs: T + 700_000 },
    ];
    const e = estimateProgress({ step: 1020, total_steps: 2020 }, pts);
    expect(e.stepsPerS).toBeCloseTo(0.1);
    expect(e.etaSeconds).toBeCloseTo(10_000);
  });

  it('hostile metrics (strings, NaN, negative) are ignored, not shown', () => {
    expect(estimateProgress({ step: 'x', total_steps: -1, loss: 'NaN' } as never, [])).toEqual({});
    expect(pointOf({ step: 5, time: 1_772_359_200 }, 0)).toEqual({ step: 5, atMs: 1_772_359_200_000 });
    expect(pointOf({ step: 5 }, T)).toEqual({ step: 5, atMs: T });
    expect(pointOf({ step: -5 }, T)).toBeUndefined();
  });

  it('formats: durations, rates, bars; an ETA ages', () => {
    expect([45, 192, 3720, 183_600].map(formatDuration)).toEqual(['45s', '3m12s', '1h02m', '2d03h']);
    expect(formatDuration(undefined)).toBe('-');
    expect([0.25, 87.31, 1234.5, 12_345, 2_500_000].map(formatRate)).toEqual(['0.25', '87.3', '1.2k', '12k', '2.5M']);
    expect(progressBar(50, 10)).toBe('[#####.....]');
    expect(progressBar(undefined, 4)).toBe('[    ]');
    expect(etaNow(100, T, T + 30_000)).toBe(70);
    expect(etaNow(10, T, T + 30_000)).toBe(0);
  });
});

describe('notifications (core/notifications.ts)', () => {
  const failure = (attempt: number, time: string, reason = 'RankFailed') => ({
    attempt,
    class: 'training' as const,
    reason,
    message: 'rank 1 exited 1',
    time,
  });

  it('Succeeded and Failed once, on the change only', () => {
    const at = '2026-03-01T10:00:00Z';
    expect(notificationOf('j', status(), status({ phase: 'Succeeded' }), at, 'lab')).toMatchObject({
      kind: 'Succeeded',
      job: 'j',
      text: 'UGRO on lab: job j succeeded (attempt 1)',
    });
    expect(notificationOf('j', status({ phase: 'Succeeded' }), status({ phase: 'Succeeded' }), at)).toBeUndefined();
    const f = notificationOf('j', status(), status({ phase: 'Failed', message: 'rank 0 exited 2\nmore' }), at);
    expect(f?.text).toBe('UGRO: job j failed (attempt 1): rank 0 exited 2');
    expect(notificationOf('j', status(), status({ phase: 'Running' }), at)).toBeUndefined();
    expect(notificationOf('j', status(), null, at)).toBeUndefined();
  });

  it('Restarting when a new failure is recorded and the job goes on; Preempted on that reason', () => {
    const at = '2026-03-01T10:00:00Z';
    const f1 = failure(1, '2026-03-01T09:59:00Z');
    const n = notificationOf(
      'j',
      status(),
      status({ phase: 'Queued', reason: 'BackoffRestart', attempt: 1, failures: [f1] }),
      at,
    );
    expect(n).toMatchObject({ kind: 'Restarting' });
    expect(n?.text).toContain('is restarting (attempt 1, RankFailed)');
    // The same failure seen again is not a new restart.
    expect(notificationOf('j', status({ failures: [f1] }), status({ attempt: 2, failures: [f1] }), at)).toBeUndefined();
    expect(notificationOf('j', status(), status({ phase: 'Queued', reason: 'Preempted' }), at)?.kind).toBe('Preempted');
  });
});

describe('escaping and pages (controller/observability/web)', () => {
  it('text, attributes and JSON in a script element cannot become markup', () => {
    expect(escapeHtml('<script>alert(1)</script> & "x" \'y\'')).toBe(
      '&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot; &#39;y&#39;',
    );
    const j = jsonForScript({ a: '</script><script>alert(1)</script>', b: '\u2028' });
    expect(j).not.toContain('<');
    expect(JSON.parse(j)).toEqual({ a: '</script><script>alert(1)</script>', b: '\u2028' });
    expect(cleanLogLine('\x1b[31mred\x1b[0m\x07 ok\tx')).toBe('red ok\tx');
  });

  it('the jobs page shows every row escaped, with a progress bar, and works without JavaScript', () => {
    const rows = [
      jobRowOf(
        'evil',
        status({
          message: '<img src=x onerror=alert(1)>',
          progress: { step: 25, total_steps: 100, loss: 0.25, samples_per_s: 1500 },
          estimate: { percent: 25, etaSeconds: 90, at: new Date(T).toISOString() },
        }),
        T + 30_000,
      ),
    ];
    expect(rows[0]).toMatchObject({ percent: 25, etaSeconds: 60, samplesPerS: 1500, loss: 0.25 });
    const html = jobsPage({ cluster: '<c>', nowMs: T }, rows, []);
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('<progress max="100" value="25"></progress> <span>25% (25/100)</span>');
    expect(html).toContain('>1m00s<');
    expect(html).toContain('>1.5k/s<');
    expect(html).toContain('&lt;c&gt;');
    // Without GitOps there is no revision column; with it there is.
    expect(html).not.toContain('>Revision<');
    const git = jobRowOf('g', { ...status(), revision: '0123456789abcdef0123' } as JobStatus, T);
    expect(jobsPage({ cluster: 'c', nowMs: T }, [git], [])).toContain('>0123456789ab<');
  });

  it('the job page: the log line <script> stays text; the loss curve is an SVG with every point', () => {
    const row = jobRowOf('j', status(), T);
    const html = jobPage(
      { cluster: 'c', nowMs: T },
      {
        row,
        nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [0, 1], state: 'Running' }],
        failures: [],
        series: [
          { attempt: 1, points: [1, 2, 3].map((s) => ({ step: s * 10, loss: 1 / s })) },
          { attempt: 2, points: [3, 4].map((s) => ({ step: s * 10, loss: 1 / s })) },
        ],
        events: [{ time: 't', job: 'j', type: 'Normal', reason: 'Started', message: '<b>x</b>' }],
        rank: 0,
        ranks: [0, 1],
        log: { lines: ['<script>alert(1)</script>'], offset: 27 },
      },
    );
    expect(html).not.toMatch(/<script>alert/);
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('data-points="5"');
    expect(html).toContain('&lt;b&gt;x&lt;/b&gt;');
    expect(html.match(/<script/g)?.length).toBe(3); // the data element, dashboard.js, uPlot
  });

  it('SVG plot: one polyline per attempt, restarts marked, round ticks, escaped title', () => {
    const svg = lossSvg(
      [
        { attempt: 1, points: [0, 10, 20].map((s) => ({ step: s, loss: 2 - s / 20 })) },
        { attempt: 2, points: [15, 25, 35].map((s) => ({ step: s, loss: 1.5 - s / 50 })) },
      ],
      { title: 'a <b> & c' },
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.match(/<polyline class="attempt"/g)?.length).toBe(2);
    expect(svg).toContain('data-attempt="2" data-points="3"');
    expect(svg.match(/class="restart"/g)?.length).toBe(1);
    expect(svg).toContain('restart: attempt 2');
    expect(svg).toContain('a &lt;b&gt; &amp; c');
    expect(lossSvg([], { title: 'none' })).toContain('no metrics yet');
    expect(ticks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(ticks(0, 1000)).toEqual([0, 200, 400, 600, 800, 1000]);
    // NaN losses are left out, never drawn as 0.
    expect(lossSvg([{ attempt: 1, points: [{ step: 1, loss: Number.NaN }] }])).toContain('no metrics yet');
  });

  it('sparklines: the last hour across 120 px, gaps left out', () => {
    expect(
      sparkPoints([
        [T - 3_600_000, 0],
        [T - 1_800_000, Number.NaN],
        [T, 100],
      ]),
    ).toBe('0.0,28.0 120.0,0.0');
  });
});

describe('GPU telemetry (observability/telemetry.ts)', () => {
  const node = (name: string, ready: boolean, util: number): NodeHealth => ({
    name,
    address: 'x:22',
    user: 'u',
    role: 'worker',
    status: ready ? 'Ready' : 'NotReady',
    reasons: ready ? [] : ['down'],
    warnings: [],
    gpus: [0, 1].map((index) => ({
      index,
      name: 'RTX',
      memoryTotalMiB: 8192,
      memoryUsedMiB: 100 + util,
      utilizationPct: util,
      driver: '570',
      temperatureC: 40,
    })),
    checkedAt: '',
  });

  it('a ring keeps the newest `capacity` samples and never grows', () => {
    const r = new SampleRing(4);
    const bytes = r.byteLength;
    for (let i = 0; i < 100_000; i++) r.push(i, [i, i, i, i]);
    expect(r.length).toBe(4);
    expect(r.byteLength).toBe(bytes);
    expect(r.series().t).toEqual([99_996, 99_997, 99_998, 99_999]);
    expect(r.latest()?.values[0]).toBe(99_999);
    expect(() => new SampleRing(1)).toThrow();
  });

  it('an hour at the health cadence, bounded: 16 hosts x 8 GPUs fit in a few MB whatever runs how long', () => {
    const t = new Telemetry({ everyMs: 1000 });
    expect(t.capacity).toBe(3600); // capped at maxSamples
    const hosts = Array.from({ length: 16 }, (_, i) => ({
      ...node(`h${i}`, true, 50),
      gpus: Array.from({ length: 8 }, (_, g) => ({ ...node('x', true, 50).gpus[0], index: g })),
    }));
    for (let s = 0; s < 3 * 3600; s++) t.record(hosts, T + s * 1000);
    expect(t.gpus()).toHaveLength(128);
    expect(t.bytes()).toBe(128 * 3600 * (8 + 4 * 4));
    expect(t.bytes()).toBeLessThan(12 * 1024 * 1024);
    expect(t.series('h3', 7)?.t.length).toBe(3600);
  });

  it('NotReady hosts get no sample (a gap, nothing invented); missing fields are NaN', () => {
    const t = new Telemetry({ everyMs: 30_000 });
    t.record([node('a', true, 10)], T);
    t.record([node('a', false, 99)], T + 30_000);
    t.record([node('a', true, 20)], T + 60_000);
    const s = t.series('a', 0)!;
    expect(s.t).toEqual([T, T + 60_000]);
    expect(s.v[0]).toEqual([10, 20]);
    expect(Number.isNaN(s.v[3][0])).toBe(true); // no power reported
    expect(t.isReady('a')).toBe(true);
  });

  it('nvidia-smi with temperature and power; older six-field output still parses; [N/A] is left out', () => {
    const g = parseNvidiaSmiCsv(
      '0, NVIDIA H100 80GB HBM3, 81559, 1024, 37, 570.133.07, 41, 118.52\n' +
        '1, NVIDIA RTX 4070, 8188, 0, 0, 570.133.07, [N/A], [N/A]\n' +
        '2, NVIDIA RTX 3070, 8192, 5, 1, 570.133.07\n',
    );
    expect(g[0]).toMatchObject({ utilizationPct: 37, temperatureC: 41, powerW: 118.52 });
    expect(g[1].temperatureC).toBeUndefined();
    expect(g[1].powerW).toBeUndefined();
    expect(g[2]).toMatchObject({ memoryUsedMiB: 5, utilizationPct: 1 });
  });
});

describe('get jobs: progress, ETA, samples/s, bars (cli/render/jobs.ts)', () => {
  const now = new Date(T + 60_000);
  const running = {
    phase: 'Running',
    attempt: 1,
    nodes: [{ host: 'gpu1', state: 'Running' }],
    createdAt: new Date(T - 120_000).toISOString(),
    progress: { epoch: 1, step: 450, total_steps: 1000, loss: 0.25, samples_per_s: 1234.5 },
    estimate: { percent: 45, etaSeconds: 300, at: new Date(T).toISOString() },
  };

  it('ETA (as of now) and SAMPLES/S columns appear when a job reports them; PROGRESS shows the percent', async () => {
    const { jobsTable, projectStatus } = await import('../../controller/cli/render/jobs.ts');
    const rows = [
      { name: 'llama', status: projectStatus(running) },
      { name: 'plain', status: { phase: 'Queued' } },
    ];
    expect(jobsTable(rows, false, now)).toBe(
      [
        'NAME   PHASE    ATTEMPT  RESTARTS  NODES  PROGRESS       ETA    SAMPLES/S  AGE',
        'llama  Running  1        0         1/1    45% loss 0.25  4m00s  1.2k       3m',
        'plain  Queued   0        0         -      -              -      -          -',
      ].join('\n'),
    );
    // -w: a bar in front.
    expect(jobsTable(rows.slice(0, 1), false, now, { bars: true }).split('\n')[1]).toContain(
      '[#########...........] 45% loss 0.25',
    );
    // A finished job has no ETA or rate; without an estimate the percent comes from the metrics line.
    const done = { ...running, phase: 'Succeeded', estimate: undefined };
    expect(jobsTable([{ name: 'done', status: done }], false, now).split('\n')[1]).toMatch(
      /^done {2}Succeeded {2}1 {8}0 {9}1\/1 {4}45% loss 0.25 {2}- {4}- {10}3m$/,
    );
  });
});
