/**
 * spec.after (issue 18): the schema, and the pure step core/steps/dependencies.ts through
 * reconcile(): waits (naming the producer and its phase), DependencyFailed, cycles (Invalid, named),
 * Succeeded vs Completed, a producer deleted or changed, a job already started left alone, and the
 * producer's checkpoint handed to the launch (UGRO_AFTER_<NAME>_CHECKPOINT, copied where missing).
 */
import { describe, expect, it } from 'vitest';
import type { SpecState } from '../../controller/api/job-state.ts';
import type { JobStatus, Phase } from '../../controller/api/status.ts';
import { parseTrainingJob, specHash, type TrainingJob } from '../../controller/api/trainingjob.ts';
import { afterEnv, afterEnvName } from '../../controller/core/launch.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import { findCycle } from '../../controller/core/steps/dependencies.ts';
import type { JobFacts, LaunchAction, ReconcileInput, ReconcileResult } from '../../controller/core/types.ts';
import { host, job, jobYaml, rank, run, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString();

function rec(over: Partial<ReconcileInput> & { spec: SpecState }): ReconcileResult {
  return reconcile({ name: 'train', now: at(0), parts: [], unreachable: new Map(), cluster: view(), ...over });
}
const launches = (r: ReconcileResult) => r.actions.filter((a): a is LaunchAction => a.type === 'launch');
const cond = (s: JobStatus | null | undefined, type: string) => s?.conditions.find((c) => c.type === type);

/** What the loop knows of a producer: its spec, and a status for that spec in `phase`. */
function facts(
  name: string,
  phase: Phase | undefined,
  o: Partial<JobFacts> & { spec?: Record<string, unknown> } = {},
): JobFacts {
  const j = job(name, o.spec ?? { script: 'prep.py' });
  const h = specHash(j.spec);
  return {
    job: j,
    specHash: h,
    ...(phase ? { phase, statusHash: h, since: iso(-100) } : {}),
    ...o,
  };
}
const producers = (...fs: [string, JobFacts][]) => new Map(fs);
const TRAIN = (after: object[], extra: Record<string, unknown> = {}) =>
  validSpec('train', { script: 't.py', after, ...extra });

/** A spec with spec.after set as given, past the schema (which refuses a job naming itself). */
function withAfter(name: string, after: string[]): TrainingJob {
  const j = job(name, { script: 't.py' });
  return { ...j, spec: { ...j.spec, after: after.map((a) => ({ job: a, phase: 'Succeeded' as const })) } };
}
const specOf = (j: TrainingJob): SpecState => ({
  kind: 'valid',
  job: j,
  hash: specHash(j.spec),
  file: `/jobs/${j.metadata.name}.yaml`,
});

describe('spec.after in the schema', () => {
  const parse = (name: string, spec: Record<string, unknown>) => parseTrainingJob(jobYaml(name, spec));

  it('takes a list of jobs; phase defaults to Succeeded (afterok), Completed is afterany', () => {
    const r = parse('train', { script: 't.py', after: [{ job: 'prep' }, { job: 'data', phase: 'Completed' }] });
    expect(r.ok && r.value.spec.after).toEqual([
      { job: 'prep', phase: 'Succeeded' },
      { job: 'data', phase: 'Completed' },
    ]);
  });

  it('a job without it has no `after` in its spec: its spec hash stays what it was', () => {
    const r = parse('train', { script: 't.py' });
    expect(r.ok && 'after' in r.value.spec).toBe(false);
  });

  it.each([
    [{ job: 'Prep_1' }, 'spec.after[0].job'],
    [{ job: 'prep', phase: 'Failed' }, 'spec.after[0].phase'],
    [{ job: 'prep', phase: 'Succeeded', extra: 1 }, 'spec.after[0].extra'],
  ])('refuses %j, naming %s', (entry, path) => {
    const r = parse('train', { script: 't.py', after: [entry] });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues.map((i) => i.path)).toContain(path);
  });

  it('refuses a job waiting for itself (a cycle of one), naming the field and the fix', () => {
    const r = parse('train', { script: 't.py', after: [{ job: 'prep' }, { job: 'train' }] });
    expect(r.ok).toBe(false);
    if (!r.ok)
      expect(r.issues[0]).toMatchObject({
        path: 'spec.after[1].job',
        message: 'a job cannot wait for itself (cycle train -> train): remove this entry',
      });
  });

  it('refuses the same job twice, an empty list and more than 32 jobs', () => {
    const twice = parse('train', { script: 't.py', after: [{ job: 'prep' }, { job: 'prep' }] });
    expect(!twice.ok && twice.issues[0]).toMatchObject({ path: 'spec.after[1].job', message: 'names job prep twice' });
    expect(parse('train', { script: 't.py', after: [] }).ok).toBe(false);
    const many = Array.from({ length: 33 }, (_, i) => ({ job: `p${i}` }));
    const r = parse('train', { script: 't.py', after: many });
    expect(!r.ok && r.issues[0].message).toBe('at most 32 jobs');
  });
});

describe('waiting for a producer', () => {
  it('a producer that does not exist yet: Queued, WaitingForDependency, saying so; nothing launched or polled', () => {
    const r = rec({ spec: TRAIN([{ job: 'prep' }]), producers: producers() });
    expect(r.actions).toEqual([]);
    expect(r.requeueAfterMs).toBeUndefined();
    expect(r.status).toMatchObject({
      phase: 'Queued',
      reason: 'WaitingForDependency',
      message: 'waits for job prep, which does not exist yet',
    });
    expect(cond(r.status, 'DependenciesMet')).toMatchObject({ status: 'False', reason: 'WaitingForDependency' });
  });

  it('names every producer it waits for and its phase; one already met is not named', () => {
    const r = rec({
      spec: TRAIN([{ job: 'prep' }, { job: 'data' }, { job: 'tok' }]),
      producers: producers(['prep', facts('prep', 'Running')], ['data', facts('data', 'Succeeded')]),
    });
    expect(r.status?.message).toBe('waits for job prep (Running), job tok, which does not exist yet');
  });

  it('a producer Queued, Suspended or Invalid is waited for (an Invalid one may be fixed)', () => {
    for (const [phase, says] of [
      ['Queued', 'job prep (Queued)'],
      ['Suspended', 'job prep (Suspended)'],
      ['Invalid', 'job prep, which is Invalid (fix its spec)'],
    ] as const) {
      const r = rec({ spec: TRAIN([{ job: 'prep' }]), producers: producers(['prep', facts('prep', phase)]) });
      expect(r.status).toMatchObject({ phase: 'Queued', message: `waits for ${says}` });
    }
  });

  it('a producer Succeeded: launched at once, with a DependenciesMet event', () => {
    const r = rec({ spec: TRAIN([{ job: 'prep' }]), producers: producers(['prep', facts('prep', 'Succeeded')]) });
    expect(r.status?.phase).toBe('Starting');
    expect(launches(r)).toHaveLength(1);
    expect(r.events).toContainEqual({
      reason: 'DependenciesMet',
      message: 'job prep Succeeded: scheduling',
      type: 'Normal',
    });
    expect(cond(r.status, 'DependenciesMet')).toMatchObject({ status: 'True', message: 'job prep Succeeded' });
  });
});

describe('Succeeded (afterok) against Completed (afterany)', () => {
  for (const phase of ['Failed', 'Cancelled'] as const) {
    it(`a producer ${phase}: Failed/DependencyFailed for Succeeded, launched for Completed`, () => {
      const p = producers([
        'prep',
        facts('prep', phase, { reason: phase === 'Failed' ? 'BackoffLimitExceeded' : 'X' }),
      ]);
      const ok = rec({ spec: TRAIN([{ job: 'prep' }]), producers: p });
      expect(ok.status).toMatchObject({ phase: 'Failed', reason: 'DependencyFailed' });
      expect(ok.status?.message).toMatch(new RegExp(`^cannot start: job prep ${phase} \\(.*\\): it had to succeed`));
      expect(ok.status?.completionTime).toBe(iso(0));
      expect(ok.actions).toEqual([]);
      const any = rec({ spec: TRAIN([{ job: 'prep', phase: 'Completed' }]), producers: p });
      expect(any.status?.phase).toBe('Starting');
      expect(cond(any.status, 'DependenciesMet')?.message).toContain(`job prep ${phase}`);
    });
  }

  it('DependencyFailed is final for this spec: the producer succeeding later does not start it', () => {
    const S = TRAIN([{ job: 'prep' }]);
    const failed = rec({ spec: S, producers: producers(['prep', facts('prep', 'Failed')]) });
    const later = rec({ spec: S, status: failed.status!, producers: producers(['prep', facts('prep', 'Succeeded')]) });
    expect(later.status).toMatchObject({ phase: 'Failed', reason: 'DependencyFailed' });
    expect(later.actions).toEqual([]);
  });
});

describe('a producer deleted or changed', () => {
  it('deleted: DependencyFailed naming it, for Completed too', () => {
    for (const phase of ['Succeeded', 'Completed']) {
      const r = rec({ spec: TRAIN([{ job: 'prep', phase }]), producers: producers(['prep', { deleted: true }]) });
      expect(r.status).toMatchObject({
        phase: 'Failed',
        reason: 'DependencyFailed',
        message: 'cannot start: job prep was deleted (spec.after)',
      });
    }
  });

  it('its spec changed after it succeeded: its new version is waited for (its current generation counts)', () => {
    const old = facts('prep', 'Succeeded');
    const changed: JobFacts = { ...old, specHash: 'abcdef01' };
    const r = rec({ spec: TRAIN([{ job: 'prep' }]), producers: producers(['prep', changed]) });
    expect(r.status).toMatchObject({
      phase: 'Queued',
      reason: 'WaitingForDependency',
      message: 'waits for job prep (its new spec is not started yet)',
    });
    // Its new version running: still waited for.
    const running = rec({ spec: TRAIN([{ job: 'prep' }]), producers: producers(['prep', facts('prep', 'Running')]) });
    expect(running.status?.reason).toBe('WaitingForDependency');
  });

  it('a job already started this generation is left alone: its producer failing or going does not stop it', () => {
    const S = TRAIN([{ job: 'prep' }]);
    const r1 = run('train', S.hash, 1, ['gpu-master'], { createdAt: iso(-50) });
    const status: JobStatus = {
      phase: 'Running',
      observedGeneration: 1,
      specHash: S.hash,
      attempt: 1,
      runId: r1.runId,
      nodes: [],
      createdAt: iso(-60),
      conditions: [],
    };
    const running = rec({
      spec: S,
      status,
      parts: [r1.part('gpu-master', { ranks: [rank(0)] })],
      producers: producers(['prep', { deleted: true }]),
    });
    expect(running.status?.phase).toBe('Running');
    expect(running.actions).toEqual([]);
    // Its run failed and it restarts: attempt 2 launches although its producer has failed since.
    const S2 = TRAIN([{ job: 'prep' }], { restartPolicy: { maxRestarts: 3, backoffSeconds: 0 } });
    const r2 = run('train', S2.hash, 1, ['gpu-master'], { createdAt: iso(-50) });
    const again = rec({
      spec: S2,
      status: { ...status, specHash: S2.hash },
      parts: [r2.part('gpu-master', { exit: 1, finishedAtMs: T0 - 10_000 })],
      producers: producers(['prep', facts('prep', 'Failed')]),
    });
    expect(launches(again).map((a) => a.attempt)).toEqual([2]);
  });
});

describe('cycles through spec.after', () => {
  it('findCycle follows the edges from a job back to it, each job once', () => {
    const g: Record<string, string[]> = { a: ['b', 'x'], b: ['c'], c: ['a'], x: ['x'] };
    expect(findCycle('a', (n) => g[n])).toEqual(['a', 'b', 'c', 'a']);
    expect(findCycle('x', (n) => g[n])).toEqual(['x', 'x']);
    // d reaches the cycle a -> b -> c -> a but is not in it: not its cycle to report.
    expect(findCycle('d', (n) => ({ ...g, d: ['a'] })[n])).toBeUndefined();
  });

  it.each([
    [['a'], {}, 'spec.after: cycle a -> a'],
    [['b'], { b: ['a'] }, 'spec.after: cycle a -> b -> a'],
    [['b'], { b: ['c'], c: ['a'] }, 'spec.after: cycle a -> b -> c -> a'],
  ])('a -> %j with %j: Invalid, DependencyCycle, naming the cycle', (after, others, msg) => {
    const a = withAfter('a', after);
    const ps = producers(
      ...Object.entries(others as Record<string, string[]>).map(([n, to]): [string, JobFacts] => {
        const j = withAfter(n, to);
        return [n, { job: j, specHash: specHash(j.spec), phase: 'Queued', statusHash: specHash(j.spec) }];
      }),
    );
    const r = rec({ name: 'a', spec: specOf(a), producers: ps });
    expect(r.status).toMatchObject({ phase: 'Invalid', reason: 'DependencyCycle', message: msg });
    expect(cond(r.status, 'Valid')).toMatchObject({ status: 'False', reason: 'DependencyCycle', message: msg });
    expect(r.actions).toEqual([]);
  });

  it('the cycle broken (b no longer waits for a): a waits for b as any job does', () => {
    const a = withAfter('a', ['b']);
    const b = job('b', { script: 't.py' });
    const ps = producers(['b', { job: b, specHash: specHash(b.spec), phase: 'Running', statusHash: specHash(b.spec) }]);
    const r = rec({ name: 'a', spec: specOf(a), producers: ps });
    expect(r.status).toMatchObject({ phase: 'Queued', message: 'waits for job b (Running)' });
    expect(cond(r.status, 'Valid')?.status).toBe('True');
  });
});

describe("the producer's checkpoint for the launch (UGRO_AFTER_<NAME>_CHECKPOINT)", () => {
  const ck = (h: string, name: string, step: number, mtimeMs = T0) => ({ host: h, name, step, sizeBytes: 10, mtimeMs });

  it('its newest complete checkpoint of its current generation, its path on each host, copied where missing', () => {
    const p = facts('prep-data', 'Succeeded', {
      // step-900 is older than the producer's generation: an earlier spec's, not this one's.
      checkpoints: [ck('gpu1', 'step-20', 20), ck('gpu2', 'step-900', 900, T0 - 200_000)],
    });
    const S = TRAIN([{ job: 'prep-data' }], { hosts: ['gpu-master'] });
    const r = rec({ spec: S, producers: producers(['prep-data', p]) });
    const [launch] = launches(r);
    expect(launch.after).toEqual([
      {
        job: 'prep-data',
        name: 'step-20',
        from: 'gpu1',
        fromDir: '/home/ob/ugro/checkpoints/prep-data',
        dirs: { 'gpu-master': '/home/alice/ugro/checkpoints/prep-data' },
        copyTo: ['gpu-master'],
      },
    ]);
    expect(afterEnvName('prep-data')).toBe('UGRO_AFTER_PREP_DATA_CHECKPOINT');
    expect(afterEnv(launch.after, 'gpu-master')).toEqual({
      UGRO_AFTER_PREP_DATA_CHECKPOINT: '/home/alice/ugro/checkpoints/prep-data/step-20.pt',
    });
  });

  it("on the producer's own host, or with a shared checkpoint dir, nothing is copied; none known: no variable", () => {
    const S = TRAIN([{ job: 'prep' }], { hosts: ['gpu1'] });
    const here = rec({
      spec: S,
      producers: producers(['prep', facts('prep', 'Succeeded', { checkpoints: [ck('gpu1', 'step-5', 5)] })]),
    });
    expect(launches(here)[0].after?.[0]).toMatchObject({ from: 'gpu1', copyTo: [] });
    const shared = facts('prep', 'Succeeded', {
      spec: { script: 'p.py', checkpoint: { shared: true } },
      checkpoints: [ck('gpu2', 'step-5', 5)],
    });
    const s = rec({ spec: S, producers: producers(['prep', shared]) });
    expect(launches(s)[0].after?.[0]).toMatchObject({ from: 'gpu2', copyTo: [] });
    const none = rec({ spec: S, producers: producers(['prep', facts('prep', 'Succeeded')]) });
    expect(launches(none)[0].after).toBeUndefined();
    expect(afterEnv(launches(none)[0].after, 'gpu1')).toEqual({});
  });

  it('a restart (attempt 2) gets it too, on its new host', () => {
    const S = TRAIN([{ job: 'prep' }], { hosts: ['gpu2'], restartPolicy: { maxRestarts: 3, backoffSeconds: 0 } });
    const r1 = run('train', S.hash, 1, ['gpu2'], { createdAt: iso(-50) });
    const r = rec({
      spec: S,
      status: {
        phase: 'Running',
        observedGeneration: 1,
        specHash: S.hash,
        attempt: 1,
        nodes: [],
        createdAt: iso(-60),
        conditions: [],
      },
      parts: [r1.part('gpu2', { exit: 1, finishedAtMs: T0 - 10_000 })],
      producers: producers(['prep', facts('prep', 'Succeeded', { checkpoints: [ck('gpu1', 'step-5', 5)] })]),
    });
    const [launch] = launches(r);
    expect(launch.attempt).toBe(2);
    expect(launch.after?.[0]).toMatchObject({ name: 'step-5', copyTo: ['gpu2'] });
    expect(host('gpu2').paths.checkpoints).toBe('/home/ollie/ugro/checkpoints');
  });
});
