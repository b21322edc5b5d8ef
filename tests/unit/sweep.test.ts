/**
 * Sweeps, the pure parts: the schema (placeholders, names), parameter expansion (grid, seeded
 * random, list), a trial's job (values as whole argv words), ASHA's and the median rule's
 * verdicts, and core/sweep.ts's decisions: trials started up to maxParallel, a trial paused at a
 * rung and promoted later, the sweep's end and best trial, a new generation, a deleted sweep.
 * Also the store's dispatch by `kind`: a Sweep file is no (invalid) TrainingJob and vice versa.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseSweep, STOPPED_ANNOTATION, type SweepState, sweepHash } from '../../controller/api/sweep.ts';
import type { RungValue } from '../../controller/api/sweep-status.ts';
import { decideSweep, type TrialFacts } from '../../controller/core/sweep.ts';
import { expandParameters, parseTrialName, trialJob, trialName } from '../../controller/core/sweep-params.ts';
import { ashaVerdicts, medianVerdicts, rungValues } from '../../controller/core/sweep-stopping.ts';
import { JobStore } from '../../controller/store/store.ts';
import { jobYaml } from './job-fixtures.ts';

const NOW = new Date('2026-03-01T10:00:00Z');

function sweepDoc(name: string, spec: Record<string, unknown>): string {
  return stringify({ apiVersion: 'ugro.dev/v1alpha1', kind: 'Sweep', metadata: { name }, spec });
}

const GRID = {
  template: { script: 'train.py', args: ['--lr', '{lr}', '--batch-size={bs}'] },
  parameters: { grid: { lr: [0.1, 0.01], bs: [8, 16, 32] } },
  maxParallel: 2,
  objective: { metric: 'loss', goal: 'minimize' },
  earlyStopping: { type: 'asha', rungs: [10], eta: 3 },
};

function valid(name: string, spec: Record<string, unknown> = GRID): Extract<SweepState, { kind: 'valid' }> {
  const r = parseSweep(sweepDoc(name, spec));
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return { kind: 'valid', sweep: r.value, hash: sweepHash(r.value.spec), file: `${name}.yaml` };
}

const rung = (value: number, step = 10): RungValue => ({ step, value, mean: value });

describe('sweep schema and parameters', () => {
  it('a placeholder naming no parameter, and a parameter used nowhere, are errors naming the field', () => {
    const r = parseSweep(
      sweepDoc('s', { ...GRID, template: { script: 'train.py', args: ['--lr', '{lrr}'] } }),
      'jobs/s.yaml',
    );
    expect(r.ok).toBe(false);
    const issues = r.ok ? [] : r.issues;
    expect(issues).toContainEqual(expect.objectContaining({ path: 'spec.template.args[1]', line: expect.any(Number) }));
    expect(issues.map((i) => i.message).join('\n')).toMatch(/\{lrr\} names no parameter/);
    expect(issues.map((i) => i.message).join('\n')).toMatch(/parameter bs is used nowhere/);
  });

  it('a name too long for its trials, and two kinds of parameters at once, are refused', () => {
    const long = 'a'.repeat(49);
    const r = parseSweep(sweepDoc(long, GRID));
    expect(r.ok ? '' : r.issues.map((i) => `${i.path}: ${i.message}`).join('\n')).toMatch(
      /metadata.name: .*at most 48/,
    );
    const both = parseSweep(sweepDoc('s', { ...GRID, parameters: { ...GRID.parameters, list: [{ lr: 1, bs: 2 }] } }));
    expect(both.ok ? '' : both.issues.map((i) => i.message).join('\n')).toMatch(/exactly one of `grid`, `random`/);
  });

  it('a grid varies its first parameter slowest; random draws repeat for a seed and stay in range', () => {
    expect(expandParameters(valid('s').sweep.spec.parameters)).toEqual([
      { lr: 0.1, bs: 8 },
      { lr: 0.1, bs: 16 },
      { lr: 0.1, bs: 32 },
      { lr: 0.01, bs: 8 },
      { lr: 0.01, bs: 16 },
      { lr: 0.01, bs: 32 },
    ]);
    const random = (seed: number) =>
      expandParameters({
        random: {
          seed,
          count: 50,
          space: { lr: { logUniform: [1e-4, 1e-1] }, bs: { int: [8, 10] }, opt: { choice: ['sgd', 'adam'] } },
        },
      });
    const a = random(7);
    expect(random(7)).toEqual(a);
    expect(random(8)).not.toEqual(a);
    for (const s of a) {
      expect(s.lr as number).toBeGreaterThanOrEqual(1e-4);
      expect(s.lr as number).toBeLessThanOrEqual(1e-1);
      expect([8, 9, 10]).toContain(s.bs);
      expect(['sgd', 'adam']).toContain(s.opt);
    }
    expect(new Set(a.map((s) => s.bs)).size).toBe(3);
  });

  it("a trial's parameter is a whole argv word or env value, however it reads", () => {
    const sw = valid('s', {
      ...GRID,
      template: { script: 'train.py', args: ['--tag={t}'], env: { TAG: '{t}' } },
      parameters: { list: [{ t: '$(rm -rf /); "x y"' }] },
    });
    const job = trialJob(sw.sweep, sw.hash, 1, 0, { t: '$(rm -rf /); "x y"' }, 'ob');
    expect(job.spec.args).toEqual(['--tag=$(rm -rf /); "x y"']);
    expect(job.spec.env).toEqual({ TAG: '$(rm -rf /); "x y"' });
    expect(job.metadata.labels).toMatchObject({ 'ugro.dev/sweep': 's', 'ugro.dev/trial': '0' });
    expect(job.metadata.annotations).toMatchObject({ 'ugro.dev/owner': 'ob' });
    expect(job.spec.preemptible).toBe(true);
  });

  it("trial names are predictable and parse back; another sweep's never matches", () => {
    expect(trialName('lr', 1, 3)).toBe('lr-t3');
    expect(trialName('lr', 2, 3)).toBe('lr-g2-t3');
    expect(parseTrialName('lr', 'lr-g2-t3')).toEqual({ generation: 2, index: 3 });
    expect(parseTrialName('lr', 'lr-t1-t0')).toBeUndefined();
    expect(parseTrialName('lr', 'lr-g1-t0')).toBeUndefined();
  });
});

describe('early stopping rules', () => {
  it('ASHA keeps the best floor(n/eta) at a rung, judging each trial at the highest rung it reached', () => {
    const t = (name: string, ...vals: number[]) => ({ name, rungs: vals.map((v, i) => rung(v, (i + 1) * 10)) });
    // One trial at rung 1: floor(1/3) = 0: paused.
    expect(ashaVerdicts([10, 20], 3, 'minimize', 'loss', [t('a', 0.5)]).get('a')?.goOn).toBe(false);
    const six = [t('a', 0.5), t('b', 0.4), t('c', 0.9), t('d', 0.1), t('e', 0.7), t('f', 0.3)];
    const v = ashaVerdicts([10, 20], 3, 'minimize', 'loss', six);
    expect([...v].filter(([, x]) => x.goOn).map(([n]) => n)).toEqual(['d', 'f']);
    expect(v.get('a')?.why).toBe('paused at rung 1 (step 10): loss 0.5, not in the best 1/3 (2 of 6; cut-off 0.3)');
    // maximize flips the order; d at rung 2 alone is judged there (floor(1/3) = 0).
    const w = ashaVerdicts([10, 20], 3, 'maximize', 'acc', [...six.slice(0, 3), t('d', 0.1, 0.2)]);
    expect(w.get('c')?.goOn).toBe(true);
    expect(w.get('d')).toMatchObject({ goOn: false, rung: 1 });
  });

  it('the median rule stops a trial whose running mean is worse than the median of the others there', () => {
    const t = (name: string, mean: number) => ({ name, rungs: [{ step: 10, value: mean, mean }] });
    const v = medianVerdicts([10], 3, 'minimize', 'loss', [t('a', 1), t('b', 2), t('c', 3), t('d', 4)]);
    expect(v.get('d')?.goOn).toBe(false);
    expect(v.get('a')?.goOn).toBe(true);
    // Fewer than minTrials others: no verdict.
    expect(medianVerdicts([10], 3, 'minimize', 'loss', [t('a', 1), t('b', 9)]).size).toBe(0);
  });

  // A NaN loss (train.py at lr 0.05) was dropped as unparseable: the trial kept its last finite
  // objective and was never judged. A value that is not finite is null, the worst there is.
  it('a diverged value (null) is worse than any number: never promoted, stopped by the median rule', () => {
    const t = (name: string, v: number | null) => ({ name, rungs: [{ step: 10, value: v, mean: v }] });
    // Three at the rung, eta 3: one slot, which a diverged trial never takes even when it is alone.
    const v = ashaVerdicts([10], 3, 'minimize', 'loss', [t('a', null), t('b', 0.9), t('c', 0.5)]);
    expect([...v].filter(([, x]) => x.goOn).map(([n]) => n)).toEqual(['c']);
    expect(v.get('a')?.why).toMatch(/^paused at rung 1 \(step 10\): loss NaN \(diverged\)/);
    const alone = ashaVerdicts([10], 1, 'maximize', 'acc', [t('a', null)]);
    expect(alone.get('a')?.goOn).toBe(false);
    const m = medianVerdicts([10], 2, 'minimize', 'loss', [t('a', null), t('b', 2), t('c', 3)]);
    expect(m.get('a')?.goOn).toBe(false);
    expect(m.get('b')?.goOn).toBe(true);
    // From the first null on, the running mean is null.
    const pts = [
      { step: 0, value: 1 },
      { step: 5, value: null },
      { step: 10, value: 2 },
    ];
    expect(rungValues([0, 10], pts)).toEqual([
      { step: 0, value: 1, mean: 1 },
      { step: 10, value: 2, mean: null },
    ]);
  });

  it('rung values: the first point at or after each rung, with the running mean up to it', () => {
    const pts = [0, 5, 10, 15, 20].map((step, i) => ({ step, value: i + 1 }));
    expect(rungValues([4, 12, 30], pts)).toEqual([
      { step: 5, value: 2, mean: 1.5 },
      { step: 15, value: 4, mean: 2.5 },
    ]);
  });
});

/** Facts for trials of `sw` as the loop would read them, with the state the test gives. */
function facts(
  sw: Extract<SweepState, { kind: 'valid' }>,
  list: { i: number; phase?: string; paused?: string; rungs?: RungValue[]; objective?: number; gen?: number }[],
): TrialFacts[] {
  const sets = expandParameters(sw.sweep.spec.parameters);
  return list.map((x) => {
    const job = trialJob(sw.sweep, sw.hash, x.gen ?? 1, x.i, sets[x.i], undefined);
    if (x.paused) {
      job.spec.suspend = true;
      (job.metadata.annotations as Record<string, string>)[STOPPED_ANNOTATION] = x.paused;
    }
    return {
      name: job.metadata.name,
      generation: x.gen ?? 1,
      index: x.i,
      params: sets[x.i],
      job,
      rungs: x.rungs ?? [],
      ...(x.phase ? { phase: x.phase } : {}),
      ...(x.objective !== undefined ? { objective: x.objective } : {}),
    };
  });
}

describe('decideSweep', () => {
  const sw = valid('lr');

  it('starts maxParallel trials, then one more for each that ends', () => {
    const d = decideSweep({ name: 'lr', now: NOW, spec: sw, trials: [] });
    expect(d.write.map((j) => j.metadata.name)).toEqual(['lr-t0', 'lr-t1']);
    expect(d.status).toMatchObject({ phase: 'Running', generation: 1, counts: { total: 6, pending: 4, running: 2 } });
    const next = decideSweep({
      name: 'lr',
      now: NOW,
      spec: sw,
      prev: d.status ?? undefined,
      trials: facts(sw, [
        { i: 0, phase: 'Succeeded', objective: 0.2 },
        { i: 1, phase: 'Running' },
      ]),
    });
    expect(next.write.map((j) => j.metadata.name)).toEqual(['lr-t2']);
  });

  it('pauses a trial below the cut at its rung, promotes it later when enough trials reached the rung', () => {
    // t0 reached rung 1 alone: paused (suspend with the reason), t2 starts in its slot.
    const d = decideSweep({
      name: 'lr',
      now: NOW,
      spec: sw,
      trials: facts(sw, [
        { i: 0, phase: 'Running', rungs: [rung(0.1)] },
        { i: 1, phase: 'Running' },
      ]),
    });
    const paused = d.write.find((j) => j.metadata.name === 'lr-t0');
    expect(paused?.spec.suspend).toBe(true);
    expect(paused?.metadata.annotations?.[STOPPED_ANNOTATION]).toMatch(/^paused at rung 1 \(step 10\): loss 0.1/);
    expect(d.write.map((j) => j.metadata.name)).toContain('lr-t2');
    // All six at rung 1, t0 best: it and t3 (second best) are promoted; the others stay paused.
    const at = [0.1, 0.5, 0.6, 0.2, 0.7, 0.8];
    const all = facts(
      sw,
      at.map((v, i) => ({ i, phase: 'Suspended', paused: 'paused at rung 1', rungs: [rung(v)] })),
    );
    const e = decideSweep({ name: 'lr', now: NOW, spec: sw, prev: d.status ?? undefined, trials: all });
    expect(e.write.map((j) => [j.metadata.name, j.spec.suspend])).toEqual([
      ['lr-t0', false],
      ['lr-t3', false],
    ]);
    expect(e.write[0].metadata.annotations?.[STOPPED_ANNOTATION]).toBeUndefined();
    expect(e.events.map((x) => x.reason)).toEqual(['TrialPromoted', 'TrialPromoted']);
    expect(e.status?.phase).toBe('Running');
    // Both promoted ran to the end: done; the four paused ones are stopped at rung 1; the best is named.
    const end = all.map((t) =>
      t.index === 0 || t.index === 3
        ? {
            ...t,
            phase: 'Succeeded',
            objective: t.index === 0 ? 0.05 : 0.01,
            job: { ...t.job!, spec: { ...t.job!.spec, suspend: false } },
          }
        : t,
    );
    const f = decideSweep({ name: 'lr', now: NOW, spec: sw, prev: e.status ?? undefined, trials: end });
    expect(f.write).toEqual([]);
    expect(f.status).toMatchObject({
      phase: 'Succeeded',
      best: { trial: 'lr-t3', objective: 0.01 },
      counts: { total: 6, succeeded: 2, stopped: 4, paused: 0, running: 0, pending: 0 },
    });
    expect(f.status?.trials.find((t) => t.name === 'lr-t1')).toMatchObject({
      state: 'stopped',
      why: 'paused at rung 1',
    });
  });

  it('a trial whose newest line diverged loses its last finite objective: never the best', () => {
    const prev = decideSweep({
      name: 'lr',
      now: NOW,
      spec: sw,
      trials: facts(sw, [
        { i: 0, phase: 'Running', objective: 0.01 },
        { i: 1, phase: 'Running', objective: 0.5 },
      ]),
    }).status;
    expect(prev?.trials.find((t) => t.name === 'lr-t0')?.objective).toBe(0.01);
    const [t0, t1] = facts(sw, [
      { i: 0, phase: 'Succeeded' },
      { i: 1, phase: 'Succeeded', objective: 0.4 },
    ]);
    const d = decideSweep({
      name: 'lr',
      now: NOW,
      spec: sw,
      prev: prev ?? undefined,
      trials: [{ ...t0, diverged: true }, t1],
    });
    const r0 = d.status?.trials.find((t) => t.name === 'lr-t0');
    expect(r0).toMatchObject({ diverged: true });
    expect(r0?.objective).toBeUndefined();
    expect(d.status?.best).toMatchObject({ trial: 'lr-t1', objective: 0.4 });
    // Its next pass reads no objective (the line is still NaN): it stays diverged.
    const again = decideSweep({ name: 'lr', now: NOW, spec: sw, prev: d.status ?? undefined, trials: [t0, t1] });
    expect(again.status?.trials.find((t) => t.name === 'lr-t0')).toMatchObject({ diverged: true });
  });

  it('does not end while a paused trial is still stopping (its job not yet Suspended)', () => {
    const first = decideSweep({ name: 'lr', now: NOW, spec: sw, trials: [] });
    const stopping = facts(
      sw,
      [0, 1, 2, 3, 4, 5].map((i) =>
        i === 5
          ? { i, phase: 'Running', paused: 'paused at rung 1', rungs: [rung(0.9)] }
          : { i, phase: 'Succeeded', objective: 0.1 + i / 100 },
      ),
    );
    const d = decideSweep({ name: 'lr', now: NOW, spec: sw, prev: first.status ?? undefined, trials: stopping });
    expect(d.status?.phase).toBe('Running');
    const settled = stopping.map((t) => (t.index === 5 ? { ...t, phase: 'Suspended' } : t));
    const e = decideSweep({ name: 'lr', now: NOW, spec: sw, prev: d.status ?? undefined, trials: settled });
    expect(e.status?.phase).toBe('Succeeded');
  });

  it('an edited spec is a new generation: running trials of the old one are suspended and kept', () => {
    const first = decideSweep({ name: 'lr', now: NOW, spec: sw, trials: [] });
    const edited = valid('lr', { ...GRID, parameters: { grid: { lr: [0.3], bs: [4] } } });
    const old = facts(sw, [
      { i: 0, phase: 'Running' },
      { i: 1, phase: 'Succeeded', objective: 0.4 },
    ]);
    const d = decideSweep({ name: 'lr', now: NOW, spec: edited, prev: first.status ?? undefined, trials: old });
    expect(d.write.map((j) => [j.metadata.name, j.spec.suspend])).toEqual([
      ['lr-t0', true],
      ['lr-g2-t0', false],
    ]);
    expect(d.write[0].metadata.annotations?.[STOPPED_ANNOTATION]).toMatch(/superseded by generation 2/);
    expect(d.status).toMatchObject({ generation: 2, counts: { total: 1, running: 1 } });
    expect(d.status?.trials.map((t) => [t.name, t.state])).toEqual([
      ['lr-g2-t0', 'running'],
      ['lr-t0', 'superseded'],
      ['lr-t1', 'succeeded'],
    ]);
    expect(d.events.map((e) => e.reason)).toContain('NewGeneration');
  });

  it('a deleted sweep removes its trial files, then its status', () => {
    const first = decideSweep({ name: 'lr', now: NOW, spec: sw, trials: [] });
    const d = decideSweep({
      name: 'lr',
      now: NOW,
      spec: { kind: 'deleted' },
      prev: first.status ?? undefined,
      trials: facts(sw, [
        { i: 0, phase: 'Running' },
        { i: 1, phase: 'Running' },
      ]),
    });
    expect(d.remove).toEqual(['lr-t0', 'lr-t1']);
    expect(d.status?.phase).toBe('Deleting');
    expect(
      decideSweep({ name: 'lr', now: NOW, spec: { kind: 'deleted' }, prev: d.status ?? undefined, trials: [] }).status,
    ).toBeNull();
  });

  it('an invalid sweep leaves its trials alone and says why', () => {
    const d = decideSweep({
      name: 'lr',
      now: NOW,
      spec: {
        kind: 'invalid',
        file: 'lr.yaml',
        issues: [{ path: 'spec.maxParallel', message: 'must be >= 1', line: 7 }],
      },
      trials: facts(sw, [{ i: 0, phase: 'Running' }]),
    });
    expect(d.write).toEqual([]);
    expect(d.status).toMatchObject({ phase: 'Invalid', message: 'line 7: spec.maxParallel: must be >= 1' });
  });
});

describe('the store tells a Sweep from a TrainingJob by kind', () => {
  it('a Sweep file is no job (not an invalid one), a TrainingJob no sweep, a bad sweep invalid', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-sweep-store-'));
    writeFileSync(join(dir, 'lr.yaml'), sweepDoc('lr', GRID));
    writeFileSync(join(dir, 'job.yaml'), jobYaml('job', { script: 'train.py' }));
    writeFileSync(join(dir, 'bad.yaml'), sweepDoc('bad', { ...GRID, maxParallel: 0 }));
    const store = new JobStore(dir);
    expect(await store.readSpec('lr')).toEqual({ kind: 'deleted' });
    expect((await store.readSweep('lr')).kind).toBe('valid');
    expect((await store.readSpec('job')).kind).toBe('valid');
    expect(await store.readSweep('job')).toEqual({ kind: 'deleted' });
    const bad = await store.readSweep('bad');
    expect(bad.kind === 'invalid' && bad.issues).toEqual([expect.objectContaining({ path: 'spec.maxParallel' })]);
    // A kind that is neither stays an invalid TrainingJob, naming the field.
    writeFileSync(join(dir, 'odd.yaml'), jobYaml('odd', { script: 'train.py' }).replace('TrainingJob', 'Trainingjob'));
    const odd = await store.readSpec('odd');
    expect(odd.kind === 'invalid' && odd.issues.map((i) => i.path)).toContain('kind');
  });
});
