/**
 * spec.checkpoint.keep's decision (core/retention.ts): the last N and the best M by a metric stay,
 * the other step-N checkpoints go on every host that holds them; and each "never" rule holds
 * whatever the policy says: the newest, each host's `latest`, what a restart resumes from, what a
 * dependent not yet started will be handed, a promoted one. A name a person gave is never managed.
 */
import { describe, expect, it } from 'vitest';
import type { CheckpointRow } from '../../controller/core/checkpoints.ts';
import { bytesText, type KeepPolicy, retention } from '../../controller/core/retention.ts';

function row(step: number, o: { loss?: number; hosts?: string[]; latest?: string; name?: string } = {}): CheckpointRow {
  const name = o.name ?? `step-${step}`;
  return {
    name,
    ...(o.name ? {} : { step }),
    sizeBytes: 1000,
    mtimeMs: step * 1000,
    copies: (o.hosts ?? ['gpu1']).map((host) => ({ host, dir: '/c/j', latest: o.latest === host })),
    ...(o.loss !== undefined ? { metrics: { step, loss: o.loss } } : {}),
  };
}

const rows = [10, 20, 30, 40, 50].map((s) => row(s, { loss: { 10: 0.9, 20: 0.2, 30: 0.5, 40: 0.4, 50: 0.6 }[s] }));
const none = { restart: [], dependents: [], promoted: [] };
const last = (n: number): KeepPolicy => ({ last: n, metric: 'loss', goal: 'minimize' });
const deleted = (d: ReturnType<typeof retention>) => d.delete.map((x) => x.name).sort();

describe('retention', () => {
  it('keeps the last N, deletes the rest on every host holding them, and says why', () => {
    const d = retention({ keep: last(2), rows: [...rows, row(5, { hosts: ['gpu1', 'gpu2'] })], ...none });
    expect(deleted(d)).toEqual(['step-10', 'step-20', 'step-30', 'step-5', 'step-5']);
    expect(d.delete.filter((x) => x.name === 'step-5').map((x) => x.host)).toEqual(['gpu1', 'gpu2']);
    expect(d.delete[0].why).toBe('not among the last 2');
    expect(d.keep).toEqual([
      { name: 'step-50', why: ['newest', 'among the last 2'] },
      { name: 'step-40', why: ['among the last 2'] },
    ]);
  });

  it('keeps the best M by the metric (minimize or maximize), with the last N', () => {
    const min = retention({ keep: { last: 1, best: 2, metric: 'loss', goal: 'minimize' }, rows, ...none });
    expect(deleted(min)).toEqual(['step-10', 'step-30']);
    const max = retention({ keep: { best: 1, metric: 'loss', goal: 'maximize' }, rows, ...none });
    expect(deleted(max)).toEqual(['step-20', 'step-30', 'step-40']);
  });

  it('never deletes the newest, even when the policy keeps only the best', () => {
    const d = retention({ keep: { best: 1, metric: 'loss', goal: 'minimize' }, rows, ...none });
    expect(deleted(d)).toEqual(['step-10', 'step-30', 'step-40']);
    expect(d.keep.find((k) => k.name === 'step-50')?.why).toEqual(['newest']);
  });

  it("never deletes a host's latest (what a restart there resumes from)", () => {
    const d = retention({ keep: last(1), rows: [row(50), row(30, { hosts: ['gpu2'], latest: 'gpu2' })], ...none });
    expect(deleted(d)).toEqual([]);
    expect(d.keep.find((k) => k.name === 'step-30')?.why).toEqual(['newest on gpu2']);
  });

  it('never deletes what a restart needs (the next resume point, spec.checkpoint.resumeFrom)', () => {
    const d = retention({ keep: last(1), rows, ...none, restart: ['step-20'] });
    expect(deleted(d)).toEqual(['step-10', 'step-30', 'step-40']);
  });

  it('never deletes what a dependent that has not started will be handed', () => {
    const d = retention({ keep: last(1), rows, ...none, dependents: [{ job: 'eval', name: 'step-30' }] });
    expect(deleted(d)).toEqual(['step-10', 'step-20', 'step-40']);
    expect(d.keep.find((k) => k.name === 'step-30')?.why).toEqual(['job eval (spec.after) will start from it']);
  });

  it('never deletes a promoted checkpoint', () => {
    const d = retention({ keep: last(1), rows, ...none, promoted: [{ name: 'step-10', model: 'mlp:v1' }] });
    expect(deleted(d)).toEqual(['step-20', 'step-30', 'step-40']);
    expect(d.keep.find((k) => k.name === 'step-10')?.why).toEqual(['promoted as mlp:v1']);
  });

  it('leaves a checkpoint a person named alone, and a checkpoint without the metric is never among the best', () => {
    const d = retention({
      keep: { best: 1, metric: 'acc', goal: 'maximize' },
      rows: [row(0, { name: 'final' }), ...rows],
      ...none,
    });
    expect(deleted(d)).toEqual(['step-10', 'step-20', 'step-30', 'step-40']);
  });

  it('says sizes like df -H', () => {
    expect([512, 12_000, 340_000_000, 1_234_000_000].map(bytesText)).toEqual(['512 B', '12.0 kB', '340 MB', '1.2 GB']);
  });
});
