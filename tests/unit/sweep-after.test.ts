/**
 * spec.after on a whole sweep (issue 18): `after: [{sweep: NAME}]` waits for the sweep's phase (its
 * status, noted by loop/sweeps.ts), fails as a job dependency does, and hands the dependent the
 * sweep's best trial's newest checkpoint (UGRO_AFTER_<NAME>_CHECKPOINT). Pure (reconcile with the
 * producers' facts), the loop's book (JobBook), then the loop on in-memory hosts, where the sweep's
 * end wakes the dependent with no timer.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { SpecState } from '../../controller/api/job-state.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import type { SweepStatus } from '../../controller/api/sweep-status.ts';
import { parseTrainingJob, specHash } from '../../controller/api/trainingjob.ts';
import { afterEnv } from '../../controller/core/launch.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import type { JobFacts, LaunchAction, ReconcileResult } from '../../controller/core/types.ts';
import { JobBook } from '../../controller/loop/jobs.ts';
import { loopRig, stopLoopRigs } from '../support/loop-rig.ts';
import { host, job, jobYaml, validSpec, view } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const iso = (s: number) => new Date(T0 + s * 1000).toISOString();
const rec = (spec: SpecState, producers: Map<string, JobFacts>): ReconcileResult =>
  reconcile({
    name: 'eval',
    now: new Date(T0),
    spec,
    parts: [],
    unreachable: new Map(),
    cluster: view(),
    producers,
  });
const launches = (r: ReconcileResult) => r.actions.filter((a): a is LaunchAction => a.type === 'launch');
const EVAL = (after: object[]) => validSpec('eval', { script: 'e.py', hosts: ['gpu-master'], after });
const ck = (h: string, name: string, step: number) => ({ host: h, name, step, sizeBytes: 10, mtimeMs: T0 });

/** A sweep's facts as the book gives them: its phase, and its best trial's spec, status and checkpoints. */
function sweepFacts(phase: string, best?: string, o: Partial<JobFacts> = {}): JobFacts {
  const t = best ? job(best, { script: 't.py' }) : undefined;
  const h = t && specHash(t.spec);
  return {
    ...(t ? { job: t, specHash: h, statusHash: h, since: iso(-100) } : {}),
    sweep: { phase, ...(best ? { best } : {}) },
    ...o,
  };
}

describe('spec.after: {sweep: NAME} in the schema', () => {
  const parseAfter = (after: object[]) => parseTrainingJob(jobYaml('eval', { script: 'e.py', after }));

  it('takes a sweep (phase Succeeded by default) beside jobs', () => {
    const r = parseAfter([{ sweep: 'grid' }, { job: 'prep', phase: 'Completed' }]);
    expect(r.ok && r.value.spec.after).toEqual([
      { sweep: 'grid', phase: 'Succeeded' },
      { job: 'prep', phase: 'Completed' },
    ]);
  });

  it('refuses an entry naming both or neither, and a name twice, saying what to write', () => {
    for (const entry of [{ job: 'a', sweep: 'b' }, { phase: 'Succeeded' }]) {
      const r = parseAfter([entry]);
      expect(!r.ok && r.issues[0]).toMatchObject({
        path: 'spec.after[0]',
        message: 'set exactly one of `job: NAME` (a TrainingJob) or `sweep: NAME` (a whole Sweep)',
      });
    }
    const twice = parseAfter([{ job: 'grid' }, { sweep: 'grid' }]);
    expect(!twice.ok && twice.issues[0]).toMatchObject({
      path: 'spec.after[1].sweep',
      message: 'names sweep grid twice',
    });
  });
});

describe('a dependency on a sweep', () => {
  const S = EVAL([{ sweep: 'grid' }]);

  it('waits while the sweep runs (or does not exist yet, or is Invalid), naming it', () => {
    for (const [f, says] of [
      [undefined, 'sweep grid, which does not exist yet'],
      [sweepFacts('Running'), 'sweep grid (Running)'],
      [sweepFacts('Invalid'), 'sweep grid, which is Invalid (fix its spec)'],
    ] as const) {
      const r = rec(S, new Map(f ? [['grid', f]] : []));
      expect(r.status).toMatchObject({ phase: 'Queued', reason: 'WaitingForDependency', message: `waits for ${says}` });
      expect(r.actions).toEqual([]);
    }
  });

  it("Succeeded: launched with the best trial's newest checkpoint, named after the sweep, copied to its host", () => {
    const f = sweepFacts('Succeeded', 'grid-t3', { checkpoints: [ck('gpu1', 'step-40', 40)] });
    const r = rec(S, new Map([['grid', f]]));
    expect(r.status?.phase).toBe('Starting');
    expect(r.events).toContainEqual({
      reason: 'DependenciesMet',
      message: 'sweep grid Succeeded (best trial grid-t3): scheduling',
      type: 'Normal',
    });
    const [launch] = launches(r);
    expect(launch.after).toEqual([
      {
        job: 'grid',
        trial: 'grid-t3',
        name: 'step-40',
        from: 'gpu1',
        fromDir: '/home/ob/ugro/checkpoints/grid-t3',
        dirs: { 'gpu-master': '/home/alice/ugro/checkpoints/grid-t3' },
        copyTo: ['gpu-master'],
      },
    ]);
    expect(afterEnv(launch.after, 'gpu-master')).toEqual({
      UGRO_AFTER_GRID_CHECKPOINT: '/home/alice/ugro/checkpoints/grid-t3/step-40.pt',
    });
  });

  it('Failed: DependencyFailed for Succeeded, launched for Completed; deleted or Deleting: DependencyFailed', () => {
    const failed = new Map([['grid', sweepFacts('Failed', undefined, { sweep: { phase: 'Failed', message: 'x' } })]]);
    expect(rec(S, failed).status).toMatchObject({
      phase: 'Failed',
      reason: 'DependencyFailed',
      message: 'cannot start: sweep grid Failed (x): it had to succeed (spec.after)',
    });
    expect(rec(EVAL([{ sweep: 'grid', phase: 'Completed' }]), failed).status?.phase).toBe('Starting');
    for (const [f, says] of [
      [{ deleted: true } as JobFacts, 'sweep grid was deleted'],
      [sweepFacts('Deleting'), 'sweep grid is being deleted'],
    ] as const)
      expect(rec(S, new Map([['grid', f]])).status?.message).toBe(`cannot start: ${says} (spec.after)`);
  });

  it('a sweep named as a job, or a job named as a sweep, waits saying what to write', () => {
    const asJob = rec(EVAL([{ job: 'grid' }]), new Map([['grid', sweepFacts('Succeeded', 'grid-t0')]]));
    expect(asJob.status?.message).toBe('waits for job grid, which is a Sweep: write `sweep: grid` to wait for it');
    const prep = job('prep', { script: 'p.py' });
    const asSweep = rec(EVAL([{ sweep: 'prep' }]), new Map([['prep', { job: prep, phase: 'Succeeded' }]]));
    expect(asSweep.status?.message).toBe(
      'waits for sweep prep, which is a TrainingJob: write `job: prep` to wait for it',
    );
  });
});

describe("the loop's book: a sweep's facts", () => {
  it("are its phase and best trial's; a change is reported; its dependents hold the trial's checkpoint", async () => {
    const book = new JobBook(
      { specMtime: async () => undefined },
      () => new Date(T0),
      () => {},
    );
    const t = job('grid-t1', { script: 't.py' });
    const st = { phase: 'Succeeded', specHash: specHash(t.spec), createdAt: iso(-50) } as JobStatus;
    await book.remember('grid-t1', t, st);
    book.noteCheckpoints('grid-t1', specHash(t.spec), [ck('gpu1', 'step-9', 9)]);
    await book.remember('eval', job('eval', { script: 'e.py', after: [{ sweep: 'grid' }] }), undefined);
    expect(book.noteSweep('grid', { phase: 'Running' })).toBe(true);
    expect(book.noteSweep('grid', { phase: 'Running', message: 'other counts' })).toBe(false);
    expect(book.noteSweep('grid', { phase: 'Succeeded', best: 'grid-t1' })).toBe(true);
    expect(book.facts('grid')).toMatchObject({
      job: t,
      checkpoints: [ck('gpu1', 'step-9', 9)],
      sweep: { phase: 'Succeeded', best: 'grid-t1' },
    });
    expect(book.facts('grid')?.phase).toBeUndefined();
    // Retention asks who depends on the trial: the sweep's dependents do, through it.
    expect(book.dependentsOf('grid-t1')).toEqual(['eval']);
    expect(book.noteSweep('grid', undefined)).toBe(true);
    expect(book.facts('grid')).toEqual({ deleted: true });
  });
});

describe('a dependency on a sweep in the controller loop', () => {
  afterEach(stopLoopRigs);

  it('eval waits for the whole sweep and starts, woken by its end, with the best trial copied over', async () => {
    // No timer fires: the sweep is passed by hand (kick), jobs only through enqueues.
    const { ctl, fake, jobs, read, status } = await loopRig({ prefix: 'sweep-after' });
    const settle = async () => {
      for (let i = 0; i < 3; i++) {
        await ctl.sweeps.kick();
        await ctl.idle();
      }
    };
    const sweep = {
      apiVersion: 'ugro.dev/v1alpha1',
      kind: 'Sweep',
      metadata: { name: 'lr', annotations: { 'ugro.dev/owner': 'ob' } },
      spec: {
        template: { command: ['python3', '/opt/t.py', '--lr={lr}'], hosts: ['gpu1'] },
        parameters: { grid: { lr: [0.1, 0.01] } },
        maxParallel: 1,
        objective: { metric: 'loss', goal: 'minimize' },
      },
    };
    writeFileSync(join(jobs, 'lr.yaml'), stringify(sweep));
    writeFileSync(
      join(jobs, 'eval.yaml'),
      jobYaml('eval', { command: ['e'], hosts: ['gpu2'], after: [{ sweep: 'lr' }] }),
    );
    ctl.enqueue('eval');
    await ctl.sweeps.touched('lr');
    await settle();
    expect(status('eval')).toMatchObject({ phase: 'Queued', message: 'waits for sweep lr (Running)' });

    // Each trial runs on gpu1, writes its loss and a checkpoint, and succeeds; lr-t1 has the lower loss.
    for (const [name, loss] of [
      ['lr-t0', 0.5],
      ['lr-t1', 0.2],
    ] as const) {
      const st = status(name) as JobStatus;
      const dir = `${st.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
      fake.startRanks('gpu1', dir, 1);
      fake.writeMetrics('gpu1', dir, { step: 20, loss });
      fake.writeCheckpoint('gpu1', `${host('gpu1').paths.checkpoints}/${name}`, 'step-20', `${name} weights`);
      await ctl.progress.tick();
      fake.endRank('gpu1', dir, 0, 0);
      fake.endRun('gpu1', dir, 0);
      ctl.enqueue(name);
      await ctl.idle();
      expect(status(name)?.phase).toBe('Succeeded');
      if (name === 'lr-t0') {
        await settle();
        expect(status('eval')?.message).toBe('waits for sweep lr (Running)');
      }
    }
    // Only the sweep is passed: its Succeeded wakes eval.
    await settle();
    expect(read<SweepStatus>('lr.sweep.status.yaml')).toMatchObject({ phase: 'Succeeded', best: { trial: 'lr-t1' } });
    const ev = status('eval') as JobStatus;
    expect(ev).toMatchObject({ phase: 'Starting', attempt: 1 });
    const want = `${host('gpu2').paths.checkpoints}/lr-t1/step-20.pt`;
    expect(fake.readFile('gpu2', want)).toBe('lr-t1 weights');
    const dir = `${ev.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
    expect(fake.launchOf('gpu2', dir)?.ugroEnv).toMatchObject({ UGRO_AFTER_LR_CHECKPOINT: want });
    const events = readFileSync(join(jobs, '.ugro', 'events.jsonl'), 'utf8');
    expect(events).toContain("sweep lr's best trial lr-t1's step-20 copied from gpu1 to gpu2 (spec.after)");
  });
});
