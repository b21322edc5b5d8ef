/**
 * The sweep's renderers (issue 18): `ugro get sweeps` (table and -o json rows), `describe sweep`
 * (trials best first for the goal, parameters, why each stopped, earlier generations, an invalid
 * file's issues, control characters cleaned) and the chart (web/sweep-svg.ts: one polyline per
 * trial with every point, the best drawn thicker, each rung a dashed line at its step, text escaped,
 * a long curve thinned to the pixel columns), read back from the SVG text.
 */
import { describe, expect, it } from 'vitest';
import type { SweepState } from '../../controller/api/sweep.ts';
import type { SweepStatus, TrialRecord } from '../../controller/api/sweep-status.ts';
import { byObjective, describeSweep, sweepJson, sweepsTable } from '../../controller/cli/render/sweeps.ts';
import { sweepSvg } from '../../controller/observability/web/sweep-svg.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');

const trial = (index: number, over: Partial<TrialRecord> = {}): TrialRecord => ({
  name: `lr-t${index}`,
  generation: 1,
  index,
  params: { lr: 10 ** -index, bs: 32 },
  state: 'succeeded',
  rungs: [],
  ...over,
});

function status(trials: TrialRecord[], over: Partial<SweepStatus> = {}): SweepStatus {
  return {
    phase: 'Succeeded',
    message: '2 trial(s) ran to the end, 1 stopped early, 0 failed',
    generation: 1,
    owner: 'ob',
    createdAt: new Date(T0 - 90_000).toISOString(),
    objective: { metric: 'loss', goal: 'minimize' },
    rungs: [10],
    trials,
    best: { trial: 'lr-t2', objective: 0.123456789, step: 40 },
    counts: { total: 3, pending: 0, running: 0, paused: 0, stopped: 1, succeeded: 2, failed: 0 },
    ...over,
  };
}

const TRIALS = [
  trial(0, { objective: 0.5, step: 40 }),
  trial(1, {
    state: 'stopped',
    objective: 0.9,
    step: 10,
    rungs: [{ step: 10, value: 0.9, mean: 1.1 }],
    why: 'paused at rung 1 (step 10): loss 0.9, not in the best 1/3 (1 of 3)',
  }),
  trial(2, { objective: 0.123456789, step: 40 }),
  trial(3, { state: 'running' }),
];
const DELETED: SweepState = { kind: 'deleted' };

describe('get sweeps', () => {
  it('-o json: phase, generation, counts, the best trial and its objective, the owner', () => {
    expect(sweepJson({ name: 'lr', spec: DELETED, status: status(TRIALS) })).toEqual({
      name: 'lr',
      phase: 'Succeeded',
      message: '2 trial(s) ran to the end, 1 stopped early, 0 failed',
      generation: 1,
      objective: { metric: 'loss', goal: 'minimize' },
      trials: { total: 3, pending: 0, running: 0, paused: 0, stopped: 1, succeeded: 2, failed: 0 },
      best: { trial: 'lr-t2', objective: 0.123456789, step: 40 },
      owner: 'ob',
    });
    // No status yet: Pending (Invalid when its file is), nothing counted.
    const invalid: SweepState = { kind: 'invalid', file: '/jobs/x.yaml', issues: [] };
    expect(sweepJson({ name: 'x', spec: invalid })).toMatchObject({ phase: 'Invalid', trials: null, best: null });
    expect(sweepJson({ name: 'y', spec: DELETED }).phase).toBe('Pending');
  });

  it('the table: one row per sweep, done/total, the best with its objective to 5 digits, the age', () => {
    const text = sweepsTable(
      [
        { name: 'lr', spec: DELETED, status: status(TRIALS) },
        { name: 'new', spec: DELETED },
      ],
      new Date(T0),
    );
    const [head, lr, fresh] = text.split('\n');
    expect(head.split(/\s+/)).toEqual([
      'NAME',
      'PHASE',
      'GEN',
      'DONE',
      'RUNNING',
      'PAUSED',
      'STOPPED',
      'FAILED',
      'BEST',
      'OBJECTIVE',
      'AGE',
    ]);
    expect(lr.split(/\s+/)).toEqual([
      'lr',
      'Succeeded',
      '1',
      '2/3',
      '0',
      '0',
      '1',
      '0',
      'lr-t2',
      'loss',
      '0.12346',
      '1m30s',
    ]);
    expect(fresh.split(/\s+/)).toEqual(['new', 'Pending', ...Array(9).fill('-')]);
    expect(sweepsTable([], new Date(T0))).toBe('No sweeps.');
  });
});

describe('describe sweep', () => {
  it('lists the trials best first with their parameters and why each stopped; those without an objective last', () => {
    const text = describeSweep({ name: 'lr', spec: DELETED, status: status(TRIALS) }, []);
    expect(text).toMatch(/^Name:\s+lr$/m);
    expect(text).toMatch(/^Phase:\s+Succeeded \(2 trial\(s\) ran to the end, 1 stopped early, 0 failed\)$/m);
    expect(text).toMatch(/^Owner:\s+ob$/m);
    expect(text).toMatch(/^Best:\s+lr-t2: 0.12346$/m);
    expect(text).toMatch(/^Trials:\s+3 \(2 ran to the end, 0 running, 0 paused, 1 stopped, 0 failed, 0 pending\)$/m);
    const rows = text.split('\n').filter((l) => /^lr-t\d/.test(l));
    expect(rows.map((r) => r.split(/\s+/)[0])).toEqual(['lr-t2', 'lr-t0', 'lr-t1', 'lr-t3']);
    expect(rows[2]).toMatch(
      /^lr-t1\s+stopped\s+10\s+0.9\s+0.9\s+lr=0.1 bs=32\s+paused at rung 1 \(step 10\): loss 0.9, not in the best/,
    );
    expect(rows[3]).toMatch(/^lr-t3\s+running\s+-\s+-\s+-\s+lr=0.001 bs=32$/);
    expect(text).toMatch(/Events:\n {2}<none>$/);
  });

  it('maximize puts the highest first; earlier generations are named; hostile text is cleaned', () => {
    const trials = [
      trial(0, { objective: 0.5, why: 'a\u001b[2Jb' }),
      trial(1, { objective: 0.9 }),
      trial(0, { name: 'lr-g1-t0', generation: 1, objective: 0.1 }),
    ].map((t, i) => (i < 2 ? { ...t, generation: 2, name: `lr-g2-t${t.index}` } : t));
    const s = status(trials, { generation: 2, objective: { metric: 'acc', goal: 'maximize' } });
    expect(byObjective(trials.slice(0, 2), 'maximize').map((t) => t.index)).toEqual([1, 0]);
    const text = describeSweep({ name: 'lr', spec: DELETED, status: s }, []);
    const rows = text.split('\n').filter((l) => /^lr-g2-t\d/.test(l));
    expect(rows.map((r) => r.split(/\s+/)[0])).toEqual(['lr-g2-t1', 'lr-g2-t0']);
    expect(text).toContain('Earlier generations: 1 trial(s) (lr-g1-t0)');
    expect(text).not.toContain('\u001b');
    expect(rows[1]).toMatch(/a\?\[2Jb$/);
  });

  it("an invalid sweep file's issues are listed with file and line", () => {
    const spec: SweepState = {
      kind: 'invalid',
      file: '/jobs/lr.yaml',
      issues: [{ path: 'spec.maxParallel', message: 'must be at least 1', line: 7 }],
    };
    const text = describeSweep({ name: 'lr', spec }, []);
    expect(text).toMatch(/^Phase:\s+Invalid$/m);
    expect(text).toContain('  /jobs/lr.yaml:7: spec.maxParallel: must be at least 1');
  });
});

/** What the chart draws, read back from its text. */
function chart(svg: string) {
  const attr = (tag: string, name: string) => new RegExp(`\\s${name}="([^"]*)"`).exec(tag)?.[1];
  const lines = [...svg.matchAll(/<polyline class="trial"[^>]*\/>/g)].map((m) => ({
    trial: attr(m[0], 'data-trial'),
    points: Number(attr(m[0], 'data-points')),
    width: Number(attr(m[0], 'stroke-width')),
    xy: (attr(m[0], 'points') ?? '').split(' ').map((p) => p.split(',').map(Number)),
  }));
  const rungs = [
    ...svg.matchAll(/<g class="rung" data-step="(\d+)"><line x1="([\d.]+)"[^>]*\/><text[^>]*>([^<]*)</g),
  ].map((m) => ({ step: Number(m[1]), x: Number(m[2]), label: m[3] }));
  return { lines, rungs };
}

describe('the sweep chart (web/sweep-svg.ts)', () => {
  const curve = (n: number, f: (s: number) => number) =>
    Array.from({ length: n }, (_, i) => ({ step: (i + 1) * 5, value: f((i + 1) * 5) }));

  it("draws every trial's curve through all its points, the best thicker, each rung at its step", () => {
    const svg = sweepSvg(
      [
        { name: 'lr-t0', points: curve(8, (s) => 1 / s) },
        { name: 'lr-t1', points: curve(2, (s) => 2 / s) },
        { name: 'lr-t2', points: curve(8, (s) => 0.5 / s), best: true },
      ],
      [10, 30],
      { title: 'lr: loss by step', metric: 'loss' },
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    const { lines, rungs } = chart(svg);
    expect(lines.map((l) => [l.trial, l.points, l.xy.length, l.width])).toEqual([
      ['lr-t0', 8, 8, 1.5],
      ['lr-t1', 2, 2, 1.5],
      ['lr-t2', 8, 8, 3],
    ]);
    expect(svg).toContain('>lr-t2 (best)</text>');
    expect(rungs.map((r) => [r.step, r.label])).toEqual([
      [10, 'rung 1'],
      [30, 'rung 2'],
    ]);
    // A rung sits where the curves are at its step: lr-t0's 2nd point is step 10, its 6th step 30.
    const t0 = lines[0].xy;
    expect(rungs[0].x).toBeCloseTo(t0[1][0], 1);
    expect(rungs[1].x).toBeCloseTo(t0[5][0], 1);
    // Steps grow left to right; a lower loss is drawn higher (smaller y).
    for (const l of lines) for (let i = 1; i < l.xy.length; i++) expect(l.xy[i][0]).toBeGreaterThan(l.xy[i - 1][0]);
    expect(lines[2].xy[0][1]).toBeGreaterThan(lines[0].xy[0][1]);
  });

  it('escapes names and the title; no points: says so; a long curve is thinned, its count kept', () => {
    const evil = sweepSvg([{ name: 'x"><script>', points: curve(3, (s) => s) }], [], {
      title: '<b>t</b>',
      metric: 'a&b',
    });
    expect(evil).not.toContain('<script>');
    expect(evil).toContain('data-trial="x&quot;&gt;&lt;script&gt;"');
    expect(evil).toContain('&lt;b&gt;t&lt;/b&gt;');
    expect(sweepSvg([{ name: 'a', points: [] }], [10], { title: 't', metric: 'loss' })).toContain('no metrics yet');
    const long = chart(sweepSvg([{ name: 'a', points: curve(50_000, Math.sin) }], [], { title: 't', metric: 'm' }));
    expect(long.lines[0].points).toBe(50_000);
    // 546 px of plot (760 - 64 - 150): at most 4 points per pixel column.
    expect(long.lines[0].xy.length).toBeLessThanOrEqual(4 * 546 + 2);
  });
});
