/**
 * The sweeps' part of the loop, whole, against in-memory hosts (tests/support/fake-hosts.ts): a
 * Sweep file in the jobs dir becomes trial job files (labelled, owned, launched by the job
 * reconciler); a trial whose metrics cross a rung below the cut is paused (its file suspended,
 * its run stopped: Suspended, not Failed); the sweep's status is on disk; deleting the sweep
 * deletes its trials' files and, once they are gone, its status.
 */
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import type { SweepStatus } from '../../controller/api/sweep-status.ts';
import type { TrainingJob } from '../../controller/api/trainingjob.ts';
import { loopRig, runDirOfStatus, stopLoopRigs } from '../support/loop-rig.ts';

afterEach(stopLoopRigs);

async function rig() {
  const r = await loopRig({ prefix: 'sweep-loop' });
  const { ctl } = r;
  return {
    ...r,
    trial: (n: string) => r.read<TrainingJob>(`${n}.yaml`),
    sweep: (n: string) => r.read<SweepStatus>(`${n}.sweep.status.yaml`),
    /** A sweep pass, then the job reconciles it caused, until both are quiet. */
    async settle() {
      for (let i = 0; i < 3; i++) {
        await ctl.sweeps.kick();
        await ctl.idle();
      }
    },
  };
}

const SWEEP = {
  apiVersion: 'ugro.dev/v1alpha1',
  kind: 'Sweep',
  metadata: { name: 'lr', annotations: { 'ugro.dev/owner': 'ob' } },
  spec: {
    template: { command: ['python3', '/opt/t.py', '--lr={lr}'] },
    parameters: { grid: { lr: [0.1, 0.01, 0.001] } },
    maxParallel: 2,
    objective: { metric: 'loss', goal: 'minimize' },
    earlyStopping: { type: 'asha', rungs: [10], eta: 3 },
  },
};

describe('sweeps in the loop', () => {
  it('trials are written, launched, paused at a rung below the cut, and removed with the sweep', async () => {
    const r = await rig();
    writeFileSync(join(r.jobs, 'lr.yaml'), stringify(SWEEP));
    await r.ctl.sweeps.touched('lr');
    await r.settle();
    // The sweep file itself is no job: no job status for it.
    expect(r.status('lr')).toBeUndefined();
    const t0 = r.trial('lr-t0');
    expect(t0?.metadata.labels).toMatchObject({ 'ugro.dev/sweep': 'lr', 'ugro.dev/trial': '0' });
    expect(t0?.metadata.annotations?.['ugro.dev/owner']).toBe('ob');
    expect(t0?.spec.command).toEqual(['python3', '/opt/t.py', '--lr=0.1']);
    expect(r.trial('lr-t2')).toBeUndefined(); // maxParallel 2
    expect(r.status('lr-t0')?.phase).toBe('Starting');
    expect(r.sweep('lr')).toMatchObject({ phase: 'Running', generation: 1, counts: { total: 3, running: 2 } });

    // lr-t0 writes a metrics line past the rung: it reached rung 1 alone, floor(1/3) = 0: paused.
    const st = r.status('lr-t0') as JobStatus;
    const host = st.nodes[0].host;
    const dir = runDirOfStatus(st);
    r.fake.startRanks(host, dir, 1);
    r.fake.writeMetrics(host, dir, { step: 5, loss: 0.9 });
    r.fake.writeMetrics(host, dir, { step: 10, loss: 0.4 });
    await r.ctl.progress.tick();
    await r.settle();
    expect(r.trial('lr-t0')?.spec.suspend).toBe(true);
    expect(r.trial('lr-t0')?.metadata.annotations?.['ugro.dev/sweep-stopped']).toMatch(
      /^paused at rung 1 \(step 10\): loss 0.4/,
    );
    expect(r.status('lr-t0')?.phase).toBe('Suspended');
    // Its own status says why: the sweep's reason, not only "spec.suspend is true".
    expect(r.status('lr-t0')?.message).toMatch(/^sweep lr: paused at rung 1 \(step 10\): loss 0.4, not in the best/);
    expect(r.fake.isAlive(host, dir)).toBe(false);
    const s = r.sweep('lr') as SweepStatus;
    expect(s.trials.find((t) => t.name === 'lr-t0')).toMatchObject({
      state: 'paused',
      rungs: [{ step: 10, value: 0.4, mean: 0.65 }],
    });
    // Its slot went to the next trial.
    expect(r.trial('lr-t2')?.spec.command).toEqual(['python3', '/opt/t.py', '--lr=0.001']);

    // Deleting the sweep deletes its trials' files; the job reconciler stops them; then the status goes.
    unlinkSync(join(r.jobs, 'lr.yaml'));
    await r.ctl.sweeps.touched('lr');
    await r.settle();
    for (const n of ['lr-t0', 'lr-t1', 'lr-t2']) expect(r.trial(n)).toBeUndefined();
    expect(r.sweep('lr')).toBeUndefined();
    expect(r.ctl.sweeps.list()).toEqual([]);
  });

  // train.py at a high lr writes `"loss": NaN` (Python's json): that line was dropped, so the trial
  // stayed at its last finite step and loss and the rule never judged it.
  it('a trial whose loss goes NaN is judged diverged at the step: stopped by the median rule, never best', async () => {
    const r = await rig();
    const median = { ...SWEEP, spec: { ...SWEEP.spec, earlyStopping: { type: 'median', steps: [10], minTrials: 1 } } };
    writeFileSync(join(r.jobs, 'lr.yaml'), stringify(median));
    await r.ctl.sweeps.touched('lr');
    await r.settle();
    const run = (n: string) => {
      const st = r.status(n) as JobStatus;
      const at = { host: st.nodes[0].host, dir: runDirOfStatus(st) };
      r.fake.startRanks(at.host, at.dir, 1);
      return at;
    };
    const a = run('lr-t0');
    const b = run('lr-t1');
    r.fake.writeMetrics(b.host, b.dir, { step: 10, loss: 0.5 });
    r.fake.writeMetrics(a.host, a.dir, { step: 5, loss: 0.2 });
    r.fake.writeMetrics(a.host, a.dir, '{"step": 10, "loss": NaN, "samples_per_s": 90.5}');
    await r.ctl.progress.tick();
    await r.settle();
    const t0 = (r.sweep('lr') as SweepStatus).trials.find((t) => t.name === 'lr-t0');
    expect(t0).toMatchObject({ step: 10, diverged: true, rungs: [{ step: 10, value: null, mean: null }] });
    expect(t0?.objective).toBeUndefined();
    expect(r.trial('lr-t0')?.metadata.annotations?.['ugro.dev/sweep-stopped']).toMatch(
      /^stopped at step 10: mean loss NaN \(diverged\), worse than the median 0.5/,
    );
    expect(r.trial('lr-t1')?.spec.suspend).toBeFalsy();
  });
});
