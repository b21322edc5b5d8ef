/**
 * spec.after in the controller loop (issue 18), on in-memory hosts (tests/support/fake-hosts.ts):
 * a dependent waits while its producer runs and starts exactly when the producer Succeeds, woken by
 * the producer's change (the loop's index producer -> dependents), never by a timer: requeues and
 * the resync never fire here. It reads the producer's checkpoint, copied to its host first.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { Controller } from '../../controller/loop/controller.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { inertLoop } from '../support/inert-loop.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS, host, jobYaml } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');

interface Rig {
  ctl: Controller;
  fake: FakeHosts;
  jobs: string;
  pass(...names: string[]): Promise<void>;
  status(name: string): JobStatus | undefined;
  write(name: string, spec: Record<string, unknown>): void;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.ctl.stop();
});

async function rig(o: { fake?: FakeHosts; jobs?: string } = {}): Promise<Rig> {
  const fake = o.fake ?? new FakeHosts(HOSTS, { now: () => T0, cluster: CLUSTER });
  const jobs = o.jobs ?? mkdtempSync(join(tmpdir(), 'ugro-after-'));
  const ctl = new Controller({
    cluster: CLUSTER,
    jobsDir: jobs,
    runtime: new SshBackend(fake),
    log: memoryLogger(),
    now: () => new Date(T0),
    owner: 'test-controller',
    ...inertLoop,
  });
  await ctl.start();
  await ctl.idle();
  const r: Rig = {
    ctl,
    fake,
    jobs,
    async pass(...names) {
      for (const n of names) ctl.enqueue(n);
      await ctl.idle();
    },
    status(name) {
      const f = join(jobs, `${name}.status.yaml`);
      return existsSync(f) ? (parse(readFileSync(f, 'utf8')) as JobStatus) : undefined;
    },
    write(name, spec) {
      writeFileSync(join(jobs, `${name}.yaml`), jobYaml(name, spec));
    },
  };
  rigs.push(r);
  return r;
}

const CMD = { command: ['python3', '/opt/t.py'] };
const dirOf = (s: JobStatus | undefined) => `${s?.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
const launchesOf = (f: FakeHosts, job: string) =>
  f.calls.filter((c) => c.op === 'run' && c.script === 'launch' && c.args?.some((a) => a.includes(`"job":"${job}"`)));

/** prep runs on gpu1 and writes a checkpoint; its run ends with `code`. */
async function prepRuns(r: Rig, code: number): Promise<void> {
  const s = r.status('prep')!;
  r.fake.startRanks('gpu1', dirOf(s), [{ rank: 0, localRank: 0 }]);
  await r.pass('prep');
  expect(r.status('prep')?.phase).toBe('Running');
  r.fake.writeCheckpoint('gpu1', `${host('gpu1').paths.checkpoints}/prep`, 'step-40', 'prep weights');
  r.fake.endRank('gpu1', dirOf(s), 0, code);
  r.fake.endRun('gpu1', dirOf(s), code);
}

describe('spec.after in the controller loop', () => {
  it('train waits while prep runs, and starts when prep Succeeds (woken by it), reading its checkpoint', async () => {
    const r = await rig();
    r.write('prep', { ...CMD, hosts: ['gpu1'] });
    r.write('train', { ...CMD, hosts: ['gpu2'], after: [{ job: 'prep' }] });
    await r.pass('train', 'prep');
    expect(r.status('train')).toMatchObject({ phase: 'Queued', reason: 'WaitingForDependency' });
    expect(r.status('prep')?.phase).toBe('Starting');
    await prepRuns(r, 0);
    expect(r.status('train')).toMatchObject({ message: 'waits for job prep (Running)' });
    expect(r.fake.launchOf('gpu2', dirOf(r.status('train')))).toBeUndefined();
    // Only prep is reconciled: its Succeeded wakes train.
    await r.pass('prep');
    expect(r.status('prep')?.phase).toBe('Succeeded');
    const train = r.status('train')!;
    expect(train).toMatchObject({ phase: 'Starting', attempt: 1 });
    // prep's checkpoint was copied from gpu1 to gpu2, into prep's dir there, before the launch.
    const want = `${host('gpu2').paths.checkpoints}/prep/step-40.pt`;
    expect(r.fake.readFile('gpu2', want)).toBe('prep weights');
    expect(r.fake.launchOf('gpu2', dirOf(train))?.ugroEnv).toMatchObject({ UGRO_AFTER_PREP_CHECKPOINT: want });
    const events = readFileSync(join(r.jobs, '.ugro', 'events.jsonl'), 'utf8');
    expect(events).toContain('"job":"train","type":"Normal","reason":"DependenciesMet","message":"job prep Succeeded');
    expect(events).toContain("prep's step-40 copied from gpu1 to gpu2 (spec.after)");
  });

  it('prep fails: train is Failed/DependencyFailed at once, never launched', async () => {
    const r = await rig();
    r.write('prep', { ...CMD, hosts: ['gpu1'] });
    r.write('train', { ...CMD, hosts: ['gpu2'], after: [{ job: 'prep' }] });
    await r.pass('prep', 'train');
    await prepRuns(r, 3);
    await r.pass('prep');
    expect(r.status('prep')?.phase).toBe('Failed');
    expect(r.status('train')).toMatchObject({ phase: 'Failed', reason: 'DependencyFailed' });
    expect(r.status('train')?.message).toMatch(/^cannot start: job prep Failed/);
    expect(launchesOf(r.fake, 'train')).toHaveLength(0);
  });

  it('prep deleted while train waits: DependencyFailed naming it; a producer created later is waited for', async () => {
    const r = await rig();
    r.write('eval', { ...CMD, hosts: ['gpu2'], after: [{ job: 'late' }] });
    await r.pass('eval');
    expect(r.status('eval')?.message).toBe('waits for job late, which does not exist yet');
    r.write('prep', { ...CMD, hosts: ['gpu1'] });
    r.write('train', { ...CMD, hosts: ['gpu2'], after: [{ job: 'prep' }] });
    await r.pass('prep', 'train');
    rmSync(join(r.jobs, 'prep.yaml'));
    // The run is stopped, then its status goes: train learns it from that, not from a timer.
    await r.pass('prep');
    await r.pass('prep');
    expect(r.status('prep')).toBeUndefined();
    expect(r.status('train')).toMatchObject({
      phase: 'Failed',
      reason: 'DependencyFailed',
      message: 'cannot start: job prep was deleted (spec.after)',
    });
    // late appears and succeeds: eval, woken by it, starts.
    r.write('late', { ...CMD, hosts: ['gpu1'] });
    await r.pass('late');
    expect(r.status('eval')?.message).toBe('waits for job late (Starting)');
  });

  it('a job waiting for another holds no GPUs: a lower-priority job takes them meanwhile', async () => {
    const r = await rig();
    r.write('train', { ...CMD, hosts: ['gpu1'], priority: 'high', after: [{ job: 'prep' }] });
    await r.pass('train');
    r.write('other', { ...CMD, hosts: ['gpu1'], priority: 'low' });
    await r.pass('other');
    expect(r.status('train')?.reason).toBe('WaitingForDependency');
    expect(r.status('other')).toMatchObject({ phase: 'Starting' });
  });

  it('a cycle among job files: every job in it is Invalid naming it', async () => {
    const r = await rig();
    r.write('a', { ...CMD, after: [{ job: 'b' }] });
    r.write('b', { ...CMD, after: [{ job: 'a' }] });
    await r.pass('a');
    await r.pass('b');
    expect(r.status('a')).toMatchObject({ phase: 'Invalid', message: 'spec.after: cycle a -> b -> a' });
    expect(r.status('b')).toMatchObject({ phase: 'Invalid', message: 'spec.after: cycle b -> a -> b' });
    // The cycle broken: b's change wakes a, which now waits for b.
    r.write('b', { ...CMD, hosts: ['gpu1'] });
    await r.pass('b');
    expect(r.status('a')).toMatchObject({ phase: 'Queued', message: 'waits for job b (Starting)' });
  });

  it('after a controller restart, a producer that had Succeeded is observed once for its checkpoint', async () => {
    const r0 = await rig();
    r0.write('prep', { ...CMD, hosts: ['gpu1'] });
    await r0.pass('prep');
    await prepRuns(r0, 0);
    await r0.pass('prep');
    expect(r0.status('prep')?.phase).toBe('Succeeded');
    await r0.ctl.stop();
    rigs.splice(rigs.indexOf(r0), 1);
    const r = await rig({ fake: r0.fake, jobs: r0.jobs });
    r.write('train', { ...CMD, hosts: ['gpu2'], after: [{ job: 'prep' }] });
    await r.pass('train');
    const train = r.status('train')!;
    expect(train.phase).toBe('Starting');
    const want = `${host('gpu2').paths.checkpoints}/prep/step-40.pt`;
    expect(r.fake.launchOf('gpu2', dirOf(train))?.ugroEnv).toMatchObject({ UGRO_AFTER_PREP_CHECKPOINT: want });
  });
});
