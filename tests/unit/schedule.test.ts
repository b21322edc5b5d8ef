/**
 * schedule() for a single job from the cluster view (the controller's whole-queue pass is in
 * placement.test.ts), the launch parts of a placement, the per-rank batch split, freePort and
 * queueOrder.
 */
import { describe, expect, it } from 'vitest';
import { UgroError } from '../../config/errors.ts';
import { splitBatch } from '../../controller/core/batch.ts';
import type { Decision } from '../../controller/core/placement.ts';
import { freePort, partsOf, queueOrder, requestOf, schedule } from '../../controller/core/schedule.ts';
import { job, view } from './job-fixtures.ts';

const j = (spec: Record<string, unknown>) => job('train', { script: 't.py', ...spec });
const hostsOf = (d: Decision) => (d.kind === 'place' ? d.nodes.map((n) => n.host) : d.kind);
const why = (d: Decision) => (d.kind === 'place' ? '' : d.why);

describe('schedule (one job, from the view)', () => {
  it('picks Ready free hosts in cluster order, node ranks 0..n-1', () => {
    const d = schedule(j({ nodes: 2 }), view());
    expect(d.kind === 'place' && d.nodes.map((n) => [n.host, n.nodeRank])).toEqual([
      ['gpu-master', 0],
      ['gpu1', 1],
    ]);
  });

  it('skips NotReady and busy hosts and renumbers node ranks', () => {
    const v = view({ ready: new Set(['gpu1', 'gpu2']), notReady: new Map([['gpu-master', 'clock offset 900 ms']]) });
    expect(hostsOf(schedule(j({ nodes: 2 }), v))).toEqual(['gpu1', 'gpu2']);
  });

  it('nodes {min,max}: takes up to max, settles for min', () => {
    expect(hostsOf(schedule(j({ nodes: { min: 1, max: 2 } }), view()))).toEqual(['gpu-master', 'gpu1']);
    const twoBusy = view({
      busy: new Map([
        ['gpu-master', 'a'],
        ['gpu1', 'b'],
      ]),
    });
    expect(hostsOf(schedule(j({ nodes: { min: 1, max: 3 } }), twoBusy))).toEqual(['gpu2']);
  });

  it('the reason names NotReady hosts (with why), busy hosts (with the holder) and the count', () => {
    const v = view({
      ready: new Set(['gpu1', 'gpu2']),
      notReady: new Map([['gpu-master', 'nvidia-smi failed']]),
      busy: new Map([['gpu1', 'bert']]),
    });
    expect(why(schedule(j({ nodes: 2 }), v))).toBe(
      'needs 2 GPU(s) on 2 host(s), 1 free: gpu-master NotReady (nvidia-smi failed); gpu1 busy with job bert',
    );
  });

  it('a host never probed is NotReady "not checked yet"', () => {
    const v = view({ ready: new Set(['gpu1']), notReady: new Map() });
    expect(why(schedule(j({ nodes: 2 }), v))).toBe(
      'needs 2 GPU(s) on 2 host(s), 1 free: gpu-master NotReady (not checked yet); gpu2 NotReady (not checked yet)',
    );
  });

  it('a host held by this same job is not busy for it (its own old run is being replaced)', () => {
    expect(hostsOf(schedule(j({ nodes: 3 }), view({ busy: new Map([['gpu1', 'train']]) })))).toEqual([
      'gpu-master',
      'gpu1',
      'gpu2',
    ]);
  });

  it('GPU memory: the 3% tolerance admits a card reporting a little less; a shortfall is a reason', () => {
    expect(hostsOf(schedule(j({ resources: { minGpuMemoryGiB: 8 } }), view()))).toEqual(['gpu-master']);
    const gpus = new Map([
      ['gpu-master', [{ memoryTotalMiB: 12227 }]],
      ['gpu1', [{ memoryTotalMiB: 8188 }]],
      ['gpu2', [{ memoryTotalMiB: 8192 }]],
    ]);
    expect(hostsOf(schedule(j({ nodes: 1, resources: { minGpuMemoryGiB: 12 } }), view({ gpus })))).toEqual([
      'gpu-master',
    ]);
  });

  it('a request no host could ever meet is "never", with the sentence', () => {
    const d = schedule(j({ resources: { minGpuMemoryGiB: 16 } }), view());
    expect(d).toEqual({ kind: 'never', why: 'asks for 16 GB GPUs; the biggest GPU in the cluster has 8 GB' });
  });

  it('nprocPerNode "gpu" takes every qualifying GPU of a host; nproc follows', () => {
    const gpus = new Map([
      ['gpu-master', [{ memoryTotalMiB: 24576 }, { memoryTotalMiB: 24576 }]],
      ['gpu1', [{ memoryTotalMiB: 8188 }]],
      ['gpu2', [{ memoryTotalMiB: 8192 }]],
    ]);
    const jj = j({ nodes: 2, nprocPerNode: 'gpu' });
    const d = schedule(jj, view({ gpus }));
    expect(
      d.kind === 'place' && partsOf(jj, d.nodes).map((p) => [p.host, p.nproc, p.gpus?.map((g) => g.index)]),
    ).toEqual([
      ['gpu-master', 2, [0, 1]],
      ['gpu1', 1, [0]],
    ]);
  });

  it('respects spec.hosts, and an unknown name there can never be met', () => {
    expect(hostsOf(schedule(j({ hosts: ['gpu2'] }), view()))).toEqual(['gpu2']);
    expect(schedule(j({ hosts: ['gpu9'] }), view())).toMatchObject({ kind: 'never' });
  });

  it('jobs queued ahead win, even when hosts are free', () => {
    expect(why(schedule(j({}), view({ ahead: ['a', 'b'] })))).toBe('waiting behind 2 job(s) queued ahead (a, b)');
  });

  it('the request: GPUs per node from nprocPerNode unless resources.gpusPerNode, owner from the annotation', () => {
    const withOwner = job('train', { script: 't.py', nprocPerNode: 2 });
    withOwner.metadata.annotations = { 'ugro.dev/owner': 'carol' };
    expect(requestOf(withOwner, { createdAt: 'x' })).toMatchObject({
      gpusPerNode: 2,
      owner: 'carol',
      preemptible: true,
    });
    expect(requestOf(j({ nprocPerNode: 2, resources: { gpusPerNode: 1 } }), { createdAt: 'x' })).toMatchObject({
      gpusPerNode: 1,
      owner: 'unknown',
    });
  });
});

describe('splitBatch', () => {
  it('12/8/8 GB over a global batch of 28 gives 12/8/8, contiguous offsets', () => {
    expect(splitBatch(28, [12, 8, 8])).toEqual([
      { batch: 12, offset: 0, micro: 12, accum: 1 },
      { batch: 8, offset: 12, micro: 8, accum: 1 },
      { batch: 8, offset: 20, micro: 8, accum: 1 },
    ]);
  });

  it('shares are integers >= 1 that add up exactly; a cap on the micro batch accumulates', () => {
    const s = splitBatch(100, [12227, 8188, 8192], 16);
    expect(s.reduce((n, x) => n + x.batch, 0)).toBe(100);
    expect(s.every((x) => x.batch >= 1 && x.micro <= 16 && x.micro * x.accum >= x.batch)).toBe(true);
    expect(splitBatch(3, [1000, 1, 1]).map((x) => x.batch)).toEqual([1, 1, 1]);
    expect(() => splitBatch(2, [1, 1, 1])).toThrow(/cannot give 3 ranks/);
    // The job's input (its schema allows any global >= 1), with the fix: not "a bug in ugro".
    expect(() => splitBatch(2, [1, 1, 1])).toThrow(UgroError);
    expect(() => splitBatch(2, [1, 1, 1])).toThrow(/raise spec\.batch\.global to at least 3$/);
  });
});

describe('freePort', () => {
  it('the base port when nothing uses it, else the first free one above', () => {
    expect(freePort({ basePort: 29500, usedPorts: new Set() })).toBe(29500);
    expect(freePort({ basePort: 29500, usedPorts: new Set([29500, 29501, 29503]) })).toBe(29502);
  });
});

describe('queueOrder', () => {
  it('priority first, then age, then name', () => {
    const jobs = [
      { name: 'b', priority: 'normal' as const, createdAt: '2026-01-02' },
      { name: 'a', priority: 'normal' as const, createdAt: '2026-01-02' },
      { name: 'old', priority: 'low' as const, createdAt: '2025-01-01' },
      { name: 'vip', priority: 'high' as const, createdAt: '2026-06-01' },
      { name: 'first', priority: 'normal' as const, createdAt: '2026-01-01' },
    ];
    expect([...jobs].sort(queueOrder).map((x) => x.name)).toEqual(['vip', 'first', 'a', 'b', 'old']);
  });
});
