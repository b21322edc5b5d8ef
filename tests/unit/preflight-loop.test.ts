/**
 * spec.preflight in the controller loop, on in-memory hosts (tests/support/fake-hosts.ts) with an
 * injected preflight function (the lab runs the real one, tests/lab/doctor.test.ts): it gets exactly
 * the gang's hosts and port before anything starts; a failure keeps the job Queued PreflightFailed with
 * nothing launched and its hosts free, and the next attempt checks again and starts; an infra budget
 * spent fails the job; a job that does not ask is never checked.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import type { PreflightPair } from '../../controller/core/preflight.ts';
import { loopRig, stopLoopRigs } from '../support/loop-rig.ts';
import { jobYaml } from './job-fixtures.ts';

const CMD = { command: ['python3', '/opt/t.py'] };
const CUT: PreflightPair[] = [
  { from: 'gpu-master', to: 'gpu2', port: 29500, result: 'timeout', message: 'no answer within 2000 ms' },
  { from: 'gpu1', to: 'gpu2', port: 29500, result: 'timeout', message: 'no answer within 2000 ms' },
];

afterEach(stopLoopRigs);

/** A controller on in-memory hosts whose preflight answers `answers` in turn (the last one repeats). */
async function rig(answers: PreflightPair[][]) {
  const calls: { hosts: string[]; port: number }[] = [];
  const r = await loopRig({
    prefix: 'preflight',
    options: {
      preflight: async (hosts: Host[], o) => {
        calls.push({ hosts: hosts.map((h) => h.name), port: o.port });
        return answers[Math.min(calls.length, answers.length) - 1];
      },
    },
  });
  const { ctl, fake } = r;
  await ctl.idle();
  return {
    ctl,
    fake,
    clock: r.clock,
    calls,
    write: (name: string, spec: Record<string, unknown>) => r.write(name, jobYaml(name, spec)),
    pass: r.pass,
    status: r.status,
    launches: () => fake.calls.filter((c) => c.op === 'run' && c.script === 'launch'),
    events: async (name: string) => (await ctl.store.readEvents(name, 100)).map((e) => [e.reason, e.message]),
  };
}

describe('spec.preflight in the controller loop', () => {
  it('fails, then passes: Queued PreflightFailed naming the pairs with nothing launched, then it starts', async () => {
    const r = await rig([CUT, []]);
    r.write('pf', { ...CMD, nodes: 3, preflight: true });
    await r.pass('pf');
    expect(r.calls).toEqual([{ hosts: ['gpu-master', 'gpu1', 'gpu2'], port: 29500 }]);
    let st = r.status('pf')!;
    expect(st).toMatchObject({ phase: 'Queued', reason: 'PreflightFailed', restarts: { infra: 1 } });
    expect(st.message).toBe(
      'attempt 1: preflight failed: gpu-master -> gpu2:29500: timeout (no answer within 2000 ms); ' +
        'gpu1 -> gpu2:29500: timeout (no answer within 2000 ms); retry 1 of 10 in 1 s',
    );
    expect(st.failures).toMatchObject([{ attempt: 1, class: 'infra', reason: 'PreflightFailed', host: 'gpu2' }]);
    expect(r.launches()).toEqual([]);
    // Its hosts are free meanwhile.
    r.write('other', { ...CMD, nodes: 1, hosts: ['gpu2'] });
    await r.pass('other');
    expect(r.status('other')!.phase).toBe('Starting');
    r.write('other', { ...CMD, nodes: 1, hosts: ['gpu2'], suspend: true });
    await r.pass('other');
    // Before its backoff is over: still waiting, not checked again.
    await r.pass('pf');
    expect(r.calls).toHaveLength(1);
    st = r.status('pf')!;
    // A reconcile meanwhile words it as the backoff it is, still naming the pairs (as for LaunchFailed).
    expect(st).toMatchObject({ phase: 'Queued', reason: 'BackoffRestart' });
    expect(st.message).toMatch(/^attempt 1 failed: preflight failed: gpu-master -> gpu2:29500: timeout/);
    expect(st.conditions.find((c) => c.type === 'Running')).toMatchObject({ reason: 'PreflightFailed' });
    r.clock.ms += 1000;
    await r.pass('pf');
    await r.pass('pf');
    st = r.status('pf')!;
    expect(r.calls).toHaveLength(2);
    expect(st).toMatchObject({ phase: 'Starting', attempt: 2 });
    expect(r.launches().filter((c) => c.args?.[0]?.includes('pf.'))).toHaveLength(3);
    const events = await r.events('pf');
    expect(events.map(([reason]) => reason)).toContain('PreflightFailed');
    expect(events.find(([reason]) => reason === 'PreflightPassed')?.[1]).toMatch(
      /^preflight: gpu-master, gpu1, gpu2 reach each other from port 29500 \(6 pairs, \d+\.\d s\)$/,
    );
  });

  it('always failing: Failed PreflightFailed once maxInfraRestarts is spent, never launched', async () => {
    const r = await rig([CUT]);
    r.write('doomed', { ...CMD, nodes: 2, preflight: true, restartPolicy: { maxInfraRestarts: 1 } });
    await r.pass('doomed');
    expect(r.status('doomed')).toMatchObject({ phase: 'Queued', reason: 'PreflightFailed' });
    for (let i = 0; i < 4 && r.status('doomed')!.phase !== 'Failed'; i++) {
      r.clock.ms += 2000;
      await r.pass('doomed');
    }
    const st = r.status('doomed')!;
    expect(st).toMatchObject({ phase: 'Failed', reason: 'PreflightFailed', restarts: { infra: 2 } });
    expect(st.message).toMatch(/^attempt 2: preflight failed: .*gpu2:29500: timeout.* \(gave up after 1 retry\)$/);
    expect(r.calls).toHaveLength(2);
    expect(r.launches()).toEqual([]);
  });

  it('a job without spec.preflight is never checked', async () => {
    const r = await rig([CUT]);
    r.write('plain', { ...CMD, nodes: 3 });
    await r.pass('plain');
    expect(r.calls).toEqual([]);
    expect(r.status('plain')!.phase).toBe('Starting');
  });
});
