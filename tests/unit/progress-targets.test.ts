/**
 * Which hosts the progress watcher asks each second (core/live-progress.ts progressTargets): once
 * an observe has seen a run's metrics line on one of its parts (train.py writes them on global
 * rank 0 alone), only that part's host, not every host of the run (each ask is an ssh exec a
 * second: on the lab's 2 cores that showed in training throughput, npm run bench, throughput).
 * Before any metrics line is seen, every live part is read, as before.
 */
import { describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import { progressTargets } from '../../controller/core/live-progress.ts';
import { run } from './job-fixtures.ts';

const T = '2026-03-01T10:00:00.000Z';
const hosts = (t: Map<string, unknown>) => [...t.keys()].sort();

describe('progress targets once a metrics line was seen', () => {
  const a = run('a', 'abcd1234', 1, ['gpu-master', 'gpu1', 'gpu2'], { createdAt: T });
  const b = run('b', 'abcd1234', 1, ['gpu1', 'gpu2'], { createdAt: T });
  const statuses: Record<string, Pick<JobStatus, 'phase' | 'runId'>> = {
    a: { phase: 'Running', runId: a.runId },
    b: { phase: 'Running', runId: b.runId },
  };
  const targets = (parts: Parameters<typeof progressTargets>[0]) =>
    progressTargets(
      parts,
      (j) => statuses[j],
      () => false,
    );

  it('no metrics seen yet: every live part of the run', () => {
    expect(hosts(targets([a.part('gpu-master'), a.part('gpu1'), a.part('gpu2')]))).toEqual([
      'gpu-master',
      'gpu1',
      'gpu2',
    ]);
  });

  it("rank 0's metrics seen on one part: only that part's host is asked", () => {
    const t = targets([a.part('gpu-master'), a.part('gpu1', { metrics: { step: 7 } }), a.part('gpu2')]);
    expect(Object.fromEntries(t)).toEqual({ gpu1: [{ job: 'a', runId: a.runId, dir: a.dir, nodeRank: 1 }] });
  });

  it('metrics on several parts: the progress part (lowest node rank), as the status takes it', () => {
    const t = targets([a.part('gpu1', { metrics: { step: 7 } }), a.part('gpu2', { metrics: { step: 9 } })]);
    expect(hosts(t)).toEqual(['gpu1']);
  });

  it('each run on its own: one with metrics seen, one without', () => {
    const t = targets([a.part('gpu-master', { metrics: { step: 1 } }), a.part('gpu1'), b.part('gpu1'), b.part('gpu2')]);
    expect(Object.fromEntries([...t].map(([h, l]) => [h, l.map((x) => x.job)]))).toEqual({
      'gpu-master': ['a'],
      gpu1: ['b'],
      gpu2: ['b'],
    });
  });

  it('a part that ended is no lead: the live ones are read', () => {
    const t = targets([a.part('gpu-master', { alive: false, metrics: { step: 3 } }), a.part('gpu1'), a.part('gpu2')]);
    expect(hosts(t)).toEqual(['gpu1', 'gpu2']);
  });
});
