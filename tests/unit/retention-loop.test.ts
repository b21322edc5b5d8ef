/**
 * spec.checkpoint.keep while the job trains, in the loop against in-memory hosts: the bench saw all
 * 50 checkpoints of a run on disk at once, because retention ran only at the job's reconciles (its
 * resync, 60 s). A progress update now wakes the job's reconcile at most every RETENTION_WAKE_MS,
 * and that reconcile's observe sees the new checkpoints: they are pruned as the job writes them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RETENTION_WAKE_MS } from '../../controller/core/retention.ts';
import { loopRig, runDirOfStatus, stopLoopRigs } from '../support/loop-rig.ts';
import { HOSTS } from './job-fixtures.ts';

afterEach(stopLoopRigs);

describe('retention while a job trains', () => {
  it('a progress update wakes the reconcile (at most every RETENTION_WAKE_MS): pruned without a resync', async () => {
    const { ctl, fake, clock, ...r } = await loopRig({ prefix: 'keep-loop' });
    const job = {
      apiVersion: 'ugro.dev/v1alpha1',
      kind: 'TrainingJob',
      metadata: { name: 'keep' },
      spec: { command: ['python3', '/opt/t.py'], nodes: 1, checkpoint: { keep: { last: 2 } } },
    };
    r.write('keep', stringify(job));
    await r.pass('keep');
    const st = r.status('keep')!;
    const host = st.nodes[0].host;
    const h = HOSTS.find((x) => x.name === host)!;
    const dir = runDirOfStatus(st);
    const ckpt = `${h.paths.checkpoints}/keep`;
    fake.startRanks(host, dir, 1);
    const pts = () =>
      fake
        .files(host, `${ckpt}/`)
        .filter((f) => f.endsWith('.pt'))
        .map((f) => f.slice(ckpt.length + 1))
        .sort();
    // Five checkpoints and a metrics line: the progress update wakes the reconcile, which prunes.
    for (const s of [5, 10, 15, 20, 25]) fake.writeCheckpoint(host, ckpt, `step-${s}`, 'x'.repeat(100));
    fake.writeMetrics(host, dir, { step: 25, loss: 0.5 });
    await ctl.progress.tick();
    await ctl.idle();
    await waitUntil(() => pts().length === 2);
    expect(pts()).toEqual(['step-20.pt', 'step-25.pt']);
    // Within RETENTION_WAKE_MS of that wake, progress alone does not reconcile again; after it, it does.
    for (const s of [30, 35]) fake.writeCheckpoint(host, ckpt, `step-${s}`, 'x'.repeat(100));
    clock.ms += 1000;
    fake.writeMetrics(host, dir, { step: 35, loss: 0.4 });
    await ctl.progress.tick();
    await ctl.idle();
    expect(pts()).toEqual(['step-20.pt', 'step-25.pt', 'step-30.pt', 'step-35.pt']);
    clock.ms += RETENTION_WAKE_MS;
    fake.writeMetrics(host, dir, { step: 36, loss: 0.3 });
    await ctl.progress.tick();
    await ctl.idle();
    await waitUntil(() => pts().length === 2);
    expect(pts()).toEqual(['step-30.pt', 'step-35.pt']);
  });
});

/** Retention runs beside the reconcile (never waited for): wait for its deletes, briefly. */
async function waitUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}
