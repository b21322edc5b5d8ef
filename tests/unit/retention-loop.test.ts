/**
 * spec.checkpoint.keep while the job trains, in the loop against in-memory hosts: the bench saw all
 * 50 checkpoints of a run on disk at once, because retention ran only at the job's reconciles (its
 * resync, 60 s). A progress update now wakes the job's reconcile at most every RETENTION_WAKE_MS,
 * and that reconcile's observe sees the new checkpoints: they are pruned as the job writes them.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { RETENTION_WAKE_MS } from '../../controller/core/retention.ts';
import { Controller } from '../../controller/loop/controller.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { inertLoop } from '../support/inert-loop.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const ctls: Controller[] = [];
afterEach(async () => {
  for (const c of ctls.splice(0)) await c.stop();
});

describe('retention while a job trains', () => {
  it('a progress update wakes the reconcile (at most every RETENTION_WAKE_MS): pruned without a resync', async () => {
    const clock = { ms: T0 };
    const fake = new FakeHosts(HOSTS, { now: () => clock.ms, cluster: CLUSTER });
    const jobs = mkdtempSync(join(tmpdir(), 'ugro-keep-loop-'));
    const ctl = new Controller({
      cluster: CLUSTER,
      jobsDir: jobs,
      runtime: new SshBackend(fake),
      log: memoryLogger(),
      now: () => new Date(clock.ms),
      owner: 'test-controller',
      ...inertLoop,
    });
    ctls.push(ctl);
    await ctl.start();
    const job = {
      apiVersion: 'ugro.dev/v1alpha1',
      kind: 'TrainingJob',
      metadata: { name: 'keep' },
      spec: { command: ['python3', '/opt/t.py'], nodes: 1, checkpoint: { keep: { last: 2 } } },
    };
    writeFileSync(join(jobs, 'keep.yaml'), stringify(job));
    ctl.enqueue('keep');
    await ctl.idle();
    const st = parse(readFileSync(join(jobs, 'keep.status.yaml'), 'utf8')) as JobStatus;
    const host = st.nodes[0].host;
    const h = HOSTS.find((x) => x.name === host)!;
    const dir = `${st.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
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
