/**
 * Progress between reconciles, through the whole controller on in-memory hosts (FakeHosts with
 * SshBackend's real parsing), its dashboard view and /metrics (Observability, as `ugro
 * controller` wires them), the real store on a temp jobs dir and a hand-driven clock. What it
 * proves: a metrics line written on a host is in the status file, the view and /metrics after
 * one progress tick, without a reconcile; nothing is written when the step did not move; a
 * progress write never lands inside a reconcile (which would write its older step back); nothing
 * is asked of any host when nothing runs, or once the controller stopped.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import type { ExecResult } from '../../controller/backends/ssh/pool.ts';
import { Controller } from '../../controller/loop/controller.ts';
import { Observability } from '../../controller/observability/wire.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS, jobYaml } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const CMD = { command: ['python3', '/opt/t.py'] };
const PROGRESS_MS = 500;
const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

async function rig() {
  const clock = { ms: T0 };
  const fake = new FakeHosts(HOSTS, { now: () => clock.ms, cluster: CLUSTER });
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-progress-'));
  const log = memoryLogger();
  const runtime = new SshBackend(fake);
  const obs = new Observability({
    cluster: CLUSTER,
    runtime,
    log,
    http: 'off',
    healthEveryMs: 30_000,
    now: () => clock.ms,
  });
  const timers = new Map<number, () => void>();
  const ctl = new Controller({
    cluster: CLUSTER,
    jobsDir: jobs,
    runtime,
    log,
    now: () => new Date(clock.ms),
    owner: 'test-controller',
    watch: async () => ({ close: async () => {} }),
    lock: async () => ({ release: async () => {} }),
    every: (ms, fn) => {
      timers.set(ms, fn);
      return () => timers.delete(ms);
    },
    queueTimers: { setTimeout: () => ({ unref() {} }) as unknown as NodeJS.Timeout, clearTimeout: () => {} },
    observer: obs.view,
    progressEveryMs: PROGRESS_MS,
  });
  obs.attach(ctl);
  await ctl.start();
  await ctl.idle();
  stops.push(() => ctl.stop());
  const statusFile = (n: string) => join(jobs, `${n}.status.yaml`);
  const r = {
    clock,
    fake,
    ctl,
    obs,
    timers,
    status: (n: string) => parse(readFileSync(statusFile(n), 'utf8')) as JobStatus,
    statusText: (n: string) => readFileSync(statusFile(n), 'utf8'),
    write: (n: string, spec: Record<string, unknown>) => writeFileSync(join(jobs, `${n}.yaml`), jobYaml(n, spec)),
    async pass(...names: string[]) {
      for (const n of names) ctl.enqueue(n);
      await ctl.idle();
    },
    /** One tick of the progress timer, and the writes it caused. */
    async progressTick() {
      await ctl.progress.tick();
      await ctl.idle();
    },
    reads: () => fake.calls.filter((c) => c.op === 'run' && c.script === 'progress'),
    /** A 2-node job, Running: its run dir and the host of node rank 0. */
    async running(name: string) {
      r.write(name, { ...CMD, nodes: 2 });
      await r.pass(name);
      const s = r.status(name);
      const dir = s.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2');
      for (const n of s.nodes) fake.startRanks(n.host, dir, 1);
      await r.pass(name);
      expect(r.status(name).phase).toBe('Running');
      return { dir, host: s.nodes.find((n) => n.nodeRank === 0)!.host };
    },
  };
  return r;
}

describe('progress between reconciles', () => {
  it('a metrics line written on the host is in the status file, the view and /metrics after one tick', async () => {
    const r = await rig();
    expect(r.timers.has(PROGRESS_MS)).toBe(true);
    const { dir, host } = await r.running('train');
    const reconciles = r.ctl.stats.reconciles;
    r.fake.writeMetrics(host, dir, { step: 7, total_steps: 100, loss: 0.5 });
    await r.progressTick();
    expect(r.ctl.stats.reconciles).toBe(reconciles);
    const s = r.status('train');
    expect(s.progress).toEqual({ step: 7, total_steps: 100, loss: 0.5 });
    expect(s.phase).toBe('Running');
    expect(s.estimate?.percent).toBe(7);
    expect(r.obs.view.status('train')?.progress?.step).toBe(7);
    const text = await r.obs.metrics.render();
    expect(text).toMatch(/^ugro_job_step\{job="train"\} 7$/m);
    expect(text).toMatch(/^ugro_job_loss\{job="train"\} 0\.5$/m);
    // Each tick after: the newest line, whatever the number of lines written in between.
    r.fake.writeMetrics(host, dir, { step: 8, total_steps: 100, loss: 0.4 });
    r.fake.writeMetrics(host, dir, { step: 9, total_steps: 100, loss: 0.3 });
    r.clock.ms += PROGRESS_MS;
    await r.progressTick();
    expect(r.status('train').progress).toEqual({ step: 9, total_steps: 100, loss: 0.3 });
    expect(await r.obs.metrics.render()).toMatch(/^ugro_job_step\{job="train"\} 9$/m);
  });

  it('nothing is written when the step did not move; one exec per host per tick', async () => {
    const r = await rig();
    const { dir, host } = await r.running('same');
    r.fake.writeMetrics(host, dir, { step: 3, loss: 1 });
    await r.progressTick();
    const text = r.statusText('same');
    let persisted = 0;
    const persistedBefore = r.obs.view.persisted.bind(r.obs.view);
    r.obs.view.persisted = (...a) => {
      persisted++;
      persistedBefore(...a);
    };
    r.fake.writeMetrics(host, dir, { step: 3, loss: 0.9 });
    const before = r.reads().length;
    r.clock.ms += PROGRESS_MS;
    await r.progressTick();
    r.clock.ms += PROGRESS_MS;
    await r.progressTick();
    expect(persisted).toBe(0);
    expect(r.statusText('same')).toBe(text);
    // The job's two hosts, once each per tick.
    expect(r.reads().length - before).toBe(4);
  });

  it('a progress write waits for a reconcile in flight (which would otherwise write its older step back)', async () => {
    const r = await rig();
    const { dir, host } = await r.running('race');
    r.fake.writeMetrics(host, dir, { step: 1 });
    await r.progressTick();
    // The next reconcile observes the hosts now (step 1), and is held before it writes.
    let release!: () => void;
    const gate = new Promise<void>((ok) => {
      release = ok;
    });
    let observing!: () => void;
    const observed = new Promise<void>((ok) => {
      observing = ok;
    });
    const run = r.fake.run.bind(r.fake);
    r.fake.run = async (h, script, args, opts): Promise<ExecResult> => {
      const res = run(h, script, args, opts);
      if (script === 'observe') {
        observing();
        await gate;
      }
      return res;
    };
    r.ctl.enqueue('race');
    await observed;
    r.fake.writeMetrics(host, dir, { step: 2 });
    await r.ctl.progress.tick();
    expect(r.status('race').progress).toEqual({ step: 1 });
    release();
    await r.ctl.idle();
    expect(r.status('race').progress).toEqual({ step: 2 });
    expect(r.obs.view.status('race')?.progress).toEqual({ step: 2 });
  });

  it('nothing runs, or the controller stopped: no host is asked', async () => {
    const r = await rig();
    r.write('queued', { ...CMD, nodes: 3, hosts: ['gpu1'] });
    await r.pass('queued');
    for (let i = 0; i < 3; i++) await r.progressTick();
    expect(r.reads()).toEqual([]);
    const { dir, host } = await r.running('late');
    await r.ctl.stop();
    r.fake.writeMetrics(host, dir, { step: 1 });
    await r.progressTick();
    expect(r.reads()).toEqual([]);
    expect(r.timers.has(PROGRESS_MS)).toBe(false);
  });
});
