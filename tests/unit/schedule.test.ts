/**
 * schedule(), freePort() and queueOrder(): which hosts a new run gets, and when it gets none,
 * a Queued reason that names every host that was ruled out and why.
 */
import { describe, expect, it } from 'vitest';
import type { TrainingJob } from '../../controller/api/trainingjob.ts';
import { freePort, queueOrder, schedule } from '../../controller/core/schedule.ts';
import { job, view } from './job-fixtures.ts';

const j = (spec: Record<string, unknown>) => job('train', { script: 't.py', ...spec });

describe('schedule', () => {
  it('picks Ready free hosts in cluster order, node ranks 0..n-1', () => {
    expect(schedule(j({ nodes: 2 }), view())).toEqual({
      parts: [
        { host: 'gpu-master', nodeRank: 0, nproc: 1 },
        { host: 'gpu1', nodeRank: 1, nproc: 1 },
      ],
    });
  });

  it('skips NotReady and busy hosts and renumbers node ranks', () => {
    const v = view({ ready: new Set(['gpu1', 'gpu2']), notReady: new Map([['gpu-master', 'clock offset 900 ms']]) });
    expect(schedule(j({ nodes: 2, nprocPerNode: 2 }), v)).toEqual({
      parts: [
        { host: 'gpu1', nodeRank: 0, nproc: 2 },
        { host: 'gpu2', nodeRank: 1, nproc: 2 },
      ],
    });
  });

  it('nodes {min,max}: takes up to max, settles for min', () => {
    expect(schedule(j({ nodes: { min: 1, max: 2 } }), view())).toEqual({
      parts: [
        { host: 'gpu-master', nodeRank: 0, nproc: 1 },
        { host: 'gpu1', nodeRank: 1, nproc: 1 },
      ],
    });
    const twoBusy = view({
      busy: new Map([
        ['gpu-master', 'a'],
        ['gpu1', 'b'],
      ]),
    });
    expect(schedule(j({ nodes: { min: 1, max: 3 } }), twoBusy)).toEqual({
      parts: [{ host: 'gpu2', nodeRank: 0, nproc: 1 }],
    });
  });

  it('the Queued reason names NotReady hosts (with why), busy hosts (with the holder) and the count', () => {
    const v = view({
      ready: new Set(['gpu1', 'gpu2']),
      notReady: new Map([['gpu-master', 'nvidia-smi failed']]),
      busy: new Map([['gpu1', 'bert']]),
    });
    expect(schedule(j({ nodes: 2 }), v)).toEqual({
      waiting:
        'needs 2 free Ready hosts, 1 available: gpu-master NotReady (nvidia-smi failed); gpu1 busy with job bert',
    });
  });

  it('a host never probed is NotReady "not checked yet"; the singular "host" for one node', () => {
    expect(schedule(j({ hosts: ['gpu2'] }), view({ ready: new Set() }))).toEqual({
      waiting: 'needs 1 free Ready host, 0 available: gpu2 NotReady (not checked yet)',
    });
  });

  it('a host held by this same job is not busy for it (its own old run is being replaced)', () => {
    expect(schedule(j({ hosts: ['gpu1'] }), view({ busy: new Map([['gpu1', 'train']]) }))).toEqual({
      parts: [{ host: 'gpu1', nodeRank: 0, nproc: 1 }],
    });
  });

  it('GPU memory shortfall is a reason; the 3% tolerance admits a card reporting a little less', () => {
    const gpus = new Map([
      ['gpu-master', [{ memoryTotalMiB: 12_282 }]], // a "12 GB" card
      ['gpu1', [{ memoryTotalMiB: 8188 }]],
      ['gpu2', [{ memoryTotalMiB: 8188 }]],
    ]);
    expect(schedule(j({ resources: { minGpuMemoryGiB: 12 } }), view({ gpus }))).toEqual({
      parts: [{ host: 'gpu-master', nodeRank: 0, nproc: 1 }],
    });
    expect(schedule(j({ nodes: 2, resources: { minGpuMemoryGiB: 12 } }), view({ gpus }))).toEqual({
      waiting: 'needs 2 free Ready hosts, 1 available: gpu1 has no GPU with 12 GiB; gpu2 has no GPU with 12 GiB',
    });
  });

  it('nprocPerNode "gpu" counts the GPUs (that meet minGpuMemoryGiB) on each host', () => {
    const gpus = new Map([
      ['gpu-master', [{ memoryTotalMiB: 81_920 }, { memoryTotalMiB: 81_920 }, { memoryTotalMiB: 8188 }]],
      ['gpu1', [{ memoryTotalMiB: 8188 }]],
      ['gpu2', []],
    ]);
    expect(schedule(j({ nodes: 2, nprocPerNode: 'gpu' }), view({ gpus }))).toEqual({
      parts: [
        { host: 'gpu-master', nodeRank: 0, nproc: 3 },
        { host: 'gpu1', nodeRank: 1, nproc: 1 },
      ],
    });
    expect(schedule(j({ nodes: 1, nprocPerNode: 'gpu', resources: { minGpuMemoryGiB: 40 } }), view({ gpus }))).toEqual({
      parts: [{ host: 'gpu-master', nodeRank: 0, nproc: 2 }],
    });
    expect(schedule(j({ nodes: 1, nprocPerNode: 'gpu', hosts: ['gpu2'] }), view({ gpus }))).toEqual({
      waiting: 'needs 1 free Ready host, 0 available: gpu2 has no GPU (nprocPerNode: gpu)',
    });
  });

  it('respects spec.hosts', () => {
    expect(schedule(j({ hosts: ['gpu2'] }), view())).toEqual({ parts: [{ host: 'gpu2', nodeRank: 0, nproc: 1 }] });
    expect(schedule(j({ nodes: 2, hosts: ['gpu1', 'gpu2'] }), view({ busy: new Map([['gpu2', 'other']]) }))).toEqual({
      waiting: 'needs 2 free Ready hosts, 1 available: gpu2 busy with job other',
    });
  });

  it('an unknown name in spec.hosts gives a reason naming it and the hosts that exist', () => {
    expect(schedule(j({ nodes: 2, hosts: ['gpu1', 'gpu9'] }), view())).toEqual({
      waiting:
        'needs 2 free Ready hosts, 1 available: spec.hosts names gpu9, ' +
        'not in the cluster file (hosts: gpu-master, gpu1, gpu2)',
    });
  });

  it('jobs queued ahead win, even when hosts are free', () => {
    expect(schedule(j({}), view({ ahead: ['a', 'b', 'c', 'd'] }))).toEqual({
      waiting: 'waiting behind 4 job(s) queued ahead (a, b, c)',
    });
  });
});

describe('freePort', () => {
  it('the base port, or the first one above it not in use', () => {
    expect(freePort(view())).toBe(29500);
    expect(freePort(view({ usedPorts: new Set([29500, 29501, 29503]) }))).toBe(29502);
  });
});

describe('queueOrder', () => {
  const q = (name: string, priority: TrainingJob['spec']['priority'], createdAt: string) => ({
    name,
    priority,
    createdAt,
  });

  it('higher priority first, then older, then by name', () => {
    const jobs = [
      q('late-normal', 'normal', '2026-01-01T10:00:00.000Z'),
      q('low', 'low', '2026-01-01T08:00:00.000Z'),
      q('early-normal', 'normal', '2026-01-01T09:00:00.000Z'),
      q('b-tie', 'normal', '2026-01-01T09:00:00.000Z'),
      q('high', 'high', '2026-01-01T11:00:00.000Z'),
      q('p150', 150, '2026-01-01T12:00:00.000Z'),
      q('p-5', -5, '2026-01-01T07:00:00.000Z'),
    ];
    expect([...jobs].sort(queueOrder).map((x) => x.name)).toEqual([
      'p150',
      'high',
      'b-tie',
      'early-normal',
      'late-normal',
      'p-5',
      'low',
    ]);
  });

  it('numeric and named priorities compare by value; equal values are ordered by age', () => {
    expect(
      queueOrder(q('a', 100, '2026-01-01T00:00:00.000Z'), q('b', 'high', '2026-01-02T00:00:00.000Z')),
    ).toBeLessThan(0);
    expect(
      queueOrder(q('a', 0, '2026-01-03T00:00:00.000Z'), q('b', 'normal', '2026-01-02T00:00:00.000Z')),
    ).toBeGreaterThan(0);
  });
});
