/**
 * Placement over GPUs (issue 10), pure: mixed VRAM, best fit, sharing a multi-GPU host,
 * fragmentation, priorities, head-of-line blocking and backfill, preemption victims chosen
 * minimal (and who may never be a victim), fair share between owners, jobs that can never fit,
 * and per-user quotas (issue 17: over quota waits without blocking others, preempts nobody and
 * backfills nothing; the same pass counts; max_priority caps).
 */
import { describe, expect, it } from 'vitest';
import type { UsersSettings } from '../../config/users.ts';
import {
  type Decision,
  type Gpu,
  type Holding,
  type HostSlots,
  plan,
  type Request,
} from '../../controller/core/placement.ts';
import type { OwnerUsage } from '../../controller/core/quota.ts';
import { placementInputs } from '../bench/placement.ts';

const G = (index: number, gb: number, name = `GPU ${gb}GB`): Gpu => ({ index, name, memoryMiB: gb * 1024 });
/** The seed cluster: 12 / 8 / 8 GB. */
const SEED: HostSlots[] = [
  { host: 'gpu-master', gpus: [G(0, 12, 'RTX 5070 Ti')] },
  { host: 'gpu1', gpus: [G(0, 8, 'RTX 4070')] },
  { host: 'gpu2', gpus: [G(0, 8, 'RTX 3070 Ti')] },
];
const NOW = Date.parse('2026-03-01T10:00:00Z');

let seq = 0;
function req(job: string, over: Partial<Request> = {}): Request {
  seq++;
  return {
    job,
    priority: 0,
    owner: 'alice',
    createdAt: new Date(NOW - 1_000_000 + seq).toISOString(),
    minNodes: 1,
    maxNodes: 1,
    gpusPerNode: 1,
    minGpuMemoryMiB: 0,
    preemptible: true,
    ...over,
  };
}
function hold(job: string, host: string, gpus: number[], over: Partial<Holding> = {}): Holding {
  return {
    job,
    host,
    gpus,
    priority: 0,
    preemptible: true,
    startedAt: NOW - 3_600_000,
    minRuntimeSeconds: 0,
    runId: `${job}-00000000-a1`,
    dir: `${job}.00000000.1`,
    ...over,
  };
}
const run = (requests: Request[], holdings: Holding[] = [], hosts = SEED, usage = new Map<string, number>()) =>
  plan({ requests, hosts, holdings, usage, now: NOW });
const placedOn = (d: Decision | undefined) =>
  d?.kind === 'place' ? d.nodes.map((n) => `${n.host}:${n.gpus.map((g) => g.index).join('+')}`) : d?.kind;

describe('why a job waits', () => {
  it('names the job this same pass placed on the GPU it wanted, not just "0 free"', () => {
    const usage = new Map([['alice', 360_000]]);
    const d = run(
      [req('alice-job', { owner: 'alice', hosts: ['gpu1'] }), req('bob-job', { owner: 'bob', hosts: ['gpu1'] })],
      [],
      SEED,
      usage,
    );
    expect(placedOn(d.get('bob-job'))).toEqual(['gpu1:0']);
    expect(d.get('alice-job')).toMatchObject({ kind: 'wait' });
    expect((d.get('alice-job') as { why: string }).why).toContain('gpu1 busy with job bob-job');
  });
});

describe('mixed VRAM', () => {
  it('a 12 GB request goes to the 12 GB GPU; three 8 GB ones spread over all hosts', () => {
    const d = run([
      req('big', { minGpuMemoryMiB: 12 * 1024 }),
      req('three', { minNodes: 2, maxNodes: 2, minGpuMemoryMiB: 8 * 1024 }),
    ]);
    expect(placedOn(d.get('big'))).toEqual(['gpu-master:0']);
    expect(placedOn(d.get('three'))).toEqual(['gpu1:0', 'gpu2:0']);
  });

  it('a 16 GB request can never run: the sentence says why (not Queued forever)', () => {
    const d = run([req('huge', { minGpuMemoryMiB: 16 * 1024 })]);
    expect(d.get('huge')).toEqual({
      kind: 'never',
      why: 'asks for 16 GB GPUs; the biggest GPU in the cluster has 12 GB',
    });
  });

  it('the biggest GPU is named as its card is sold: 12227 MiB is "12 GB", 9800 MiB is "9.6 GB"', () => {
    const as = (mib: number) => [{ host: 'h', gpus: [{ index: 0, name: 'x', memoryMiB: mib }] }];
    const why = (mib: number) => run([req('huge', { minGpuMemoryMiB: 16 * 1024 })], [], as(mib)).get('huge');
    expect(why(12227)).toMatchObject({ why: 'asks for 16 GB GPUs; the biggest GPU in the cluster has 12 GB' });
    expect(why(9800)).toMatchObject({ why: 'asks for 16 GB GPUs; the biggest GPU in the cluster has 9.6 GB' });
  });

  it('more nodes than hosts, or more GPUs per node than any host has: never', () => {
    expect(run([req('wide', { minNodes: 4, maxNodes: 4 })]).get('wide')).toMatchObject({ kind: 'never' });
    expect(run([req('deep', { gpusPerNode: 2 })]).get('deep')).toEqual({
      kind: 'never',
      why: 'asks for 2 GPUs per node; no host has more than 1 that qualify',
    });
  });

  it('best fit: on a host with a 24 GB and an 8 GB GPU, an 8 GB job takes the 8 GB one', () => {
    const hosts = [{ host: 'box', gpus: [G(0, 24), G(1, 8)] }];
    expect(placedOn(run([req('small', { minGpuMemoryMiB: 8 * 1024 })], [], hosts).get('small'))).toEqual(['box:1']);
  });
});

describe('GPUs are the unit', () => {
  const BOX = [{ host: 'box', gpus: [G(0, 12), G(1, 8)] }];

  it('two jobs share a 2-GPU host on disjoint GPUs', () => {
    const d = run([req('a'), req('b')], [], BOX);
    expect([placedOn(d.get('a')), placedOn(d.get('b'))]).toEqual([['box:1'], ['box:0']]);
  });

  it('a held GPU is not offered again', () => {
    expect(placedOn(run([req('a')], [hold('x', 'box', [1])], BOX).get('a'))).toEqual(['box:0']);
  });

  it('"all" GPUs of a host (nprocPerNode: gpu) needs every qualifying one free', () => {
    expect(run([req('all', { gpusPerNode: 'all' })], [hold('x', 'box', [1])], BOX).get('all')).toMatchObject({
      kind: 'wait',
    });
    expect(placedOn(run([req('all', { gpusPerNode: 'all' })], [], BOX).get('all'))).toEqual(['box:0+1']);
  });

  it('fragmentation: two 1-GPU holes on different hosts do not make a 2-GPU node', () => {
    const hosts = [
      { host: 'a', gpus: [G(0, 8), G(1, 8)] },
      { host: 'b', gpus: [G(0, 8), G(1, 8)] },
    ];
    const holds = [hold('x', 'a', [0], { preemptible: false }), hold('y', 'b', [1], { preemptible: false })];
    expect(run([req('pair', { gpusPerNode: 2 })], holds, hosts).get('pair')).toMatchObject({ kind: 'wait' });
  });

  it('a host that cannot be used now is skipped, and the reason says so', () => {
    const hosts = [{ ...SEED[0], unusable: 'NotReady (nvidia-smi failed)' }, SEED[1], SEED[2]];
    const d = run([req('big', { minGpuMemoryMiB: 12 * 1024 })], [], hosts);
    expect(d.get('big')).toEqual({
      kind: 'wait',
      why:
        'needs 1 GPU(s) >= 12 GB on 1 host(s), 0 free: gpu-master NotReady (nvidia-smi failed); ' +
        'gpu1 has no GPU with 12 GB; gpu2 has no GPU with 12 GB',
    });
  });

  it('prefer: a restart goes back to its hosts first', () => {
    expect(placedOn(run([req('r', { prefer: ['gpu2'] })]).get('r'))).toEqual(['gpu2:0']);
  });
});

describe('the queue', () => {
  it('higher priority first for the same GPUs', () => {
    const d = run([req('low', { priority: -100 }), req('high', { priority: 100, minGpuMemoryMiB: 12 * 1024 })]);
    expect(placedOn(d.get('high'))).toEqual(['gpu-master:0']);
    expect(placedOn(d.get('low'))).toEqual(['gpu1:0']);
  });

  it('a waiting head blocks those behind it; a preemptible one may backfill idle GPUs', () => {
    const holds = [hold('x', 'gpu1', [0], { priority: 100, preemptible: false })];
    const d = run(
      [
        req('head', { minNodes: 3, maxNodes: 3 }),
        req('behind', { preemptible: false }),
        req('filler', { preemptible: true }),
      ],
      holds,
    );
    expect(d.get('head')).toMatchObject({ kind: 'wait' });
    expect(d.get('behind')).toEqual({
      kind: 'wait',
      why: 'needs 1 GPU(s) on 1 host(s), 2 free: gpu1 busy with job x; behind head (priority 0)',
    });
    expect(d.get('filler')).toMatchObject({ kind: 'place', backfill: true });
  });

  it('a backfill is preempted when the head can start', () => {
    const holds = [hold('filler', 'gpu2', [0], { backfill: true })];
    const d = run([req('head', { minNodes: 3, maxNodes: 3 })], holds);
    expect(d.get('head')).toMatchObject({ kind: 'preempt', victims: [{ job: 'filler' }] });
  });

  it('a backfill of higher priority than the head is never its victim: the head waits', () => {
    // The filler jumped the queue but outranks the head: only the head's peers or betters may stop it.
    const holds = [hold('filler', 'gpu2', [0], { backfill: true, priority: 100 })];
    const d = run([req('head', { minNodes: 3, maxNodes: 3 })], holds);
    expect(d.get('head')).toMatchObject({ kind: 'wait' });
    // The same filler at the head's priority is one.
    const same = [hold('filler', 'gpu2', [0], { backfill: true, priority: 0, preemptible: false })];
    expect(run([req('head', { minNodes: 3, maxNodes: 3 })], same).get('head')).toMatchObject({
      kind: 'preempt',
      victims: [{ job: 'filler' }],
    });
  });

  it('fair share: within one priority the owner with less recent GPU time goes first', () => {
    const usage = new Map([
      ['alice', 50 * 3600],
      ['bob', 2 * 3600],
    ]);
    const d = run(
      [
        req('alice-1', { owner: 'alice', minGpuMemoryMiB: 12 * 1024 }),
        req('bob-1', { owner: 'bob', minGpuMemoryMiB: 12 * 1024 }),
      ],
      [],
      SEED,
      usage,
    );
    expect(placedOn(d.get('bob-1'))).toEqual(['gpu-master:0']);
    expect(d.get('alice-1')).toMatchObject({ kind: 'wait' });
  });
});

describe('preemption', () => {
  const lowEverywhere = [
    hold('low-a', 'gpu-master', [0], { priority: -100 }),
    hold('low-b', 'gpu1', [0], { priority: -100 }),
    hold('low-c', 'gpu2', [0], { priority: -50 }),
  ];

  it('the fewest, lowest-priority victims: one host needed, one victim, the lowest', () => {
    const d = run([req('high', { priority: 100 })], lowEverywhere);
    expect(d.get('high')).toMatchObject({ kind: 'preempt', victims: [{ job: 'low-b' }] });
  });

  it('two hosts of at least 12 and 8 GB needed: exactly the two that free them', () => {
    const d = run([req('high', { priority: 100, minNodes: 2, maxNodes: 2, minGpuMemoryMiB: 8 * 1024 })], lowEverywhere);
    const v = d.get('high');
    expect(v?.kind).toBe('preempt');
    expect(v?.kind === 'preempt' && v.victims.map((x) => x.job).sort()).toEqual(['low-a', 'low-b']);
  });

  it('never a run of equal or higher priority, nor one that opted out, nor one inside its minimum runtime', () => {
    const busy = [
      hold('same', 'gpu-master', [0], { priority: 100 }),
      hold('optout', 'gpu1', [0], { priority: -100, preemptible: false }),
      hold('young', 'gpu2', [0], { priority: -100, startedAt: NOW - 10_000, minRuntimeSeconds: 600 }),
    ];
    expect(run([req('high', { priority: 100 })], busy).get('high')).toMatchObject({ kind: 'wait' });
  });

  it('GPUs promised to a preemptor are not given to a job behind it', () => {
    const holds = [hold('low', 'gpu-master', [0], { priority: -100 })];
    const d = run(
      [req('high', { priority: 100, minGpuMemoryMiB: 12 * 1024 }), req('mid', { minGpuMemoryMiB: 12 * 1024 })],
      holds,
    );
    expect(d.get('high')).toMatchObject({ kind: 'preempt' });
    expect(d.get('mid')).toMatchObject({ kind: 'wait' });
  });
});

describe('quotas (issue 17)', () => {
  const USERS: UsersSettings = { admins: ['master'], logs: 'open', defaults: {}, quotas: {} };
  const users = (quotas: UsersSettings['quotas'], defaults: UsersSettings['defaults'] = {}) => ({
    ...USERS,
    quotas,
    defaults,
  });
  const withQuota = (
    requests: Request[],
    holdings: Holding[],
    u: UsersSettings,
    usage: [string, Partial<OwnerUsage>][] = [],
    hosts = SEED,
  ) => plan({ requests, hosts, holdings, usage: new Map(), now: NOW, quota: { users: u, usage: new Map(usage) } });
  const OLLIE_RUN = hold('ollie-1', 'gpu2', [0], { owner: 'ollie', preemptible: false });

  it('over quota: waits QuotaExceeded naming the limit and the usage; another owner takes the GPU', () => {
    const requests = [
      req('ollie-2', { owner: 'ollie', priority: 100, hosts: ['gpu-master'] }),
      req('ob-1', { owner: 'ob', hosts: ['gpu-master'], preemptible: false }),
    ];
    // Without quotas ollie's job, of higher priority, takes it.
    expect(placedOn(run(requests, [OLLIE_RUN]).get('ollie-2'))).toEqual(['gpu-master:0']);
    const d = withQuota(requests, [OLLIE_RUN], users({ ollie: { gpus: 1 } }), [['ollie', { gpus: 1, runningJobs: 1 }]]);
    expect(d.get('ollie-2')).toEqual({
      kind: 'wait',
      reason: 'QuotaExceeded',
      why: 'ollie: 1 of 1 GPUs in use (users.quotas.ollie.gpus)',
    });
    expect(placedOn(d.get('ob-1'))).toEqual(['gpu-master:0']);
  });

  it('a job over quota is not the head: it holds back nobody behind it', () => {
    const requests = [
      req('ollie-wide', { owner: 'ollie', priority: 100, minNodes: 3, maxNodes: 3 }),
      req('ob-1', { owner: 'ob', preemptible: false }),
    ];
    const holds = [hold('x', 'gpu1', [0], { priority: 1000, preemptible: false })];
    // Without quotas the wide job waits for GPUs and blocks ob's job behind it.
    expect(run(requests, holds).get('ob-1')).toMatchObject({ kind: 'wait' });
    const d = withQuota(requests, holds, users({ ollie: { gpus: 3 } }), [['ollie', { gpus: 1 }]]);
    expect(d.get('ollie-wide')).toMatchObject({ kind: 'wait', reason: 'QuotaExceeded' });
    expect(placedOn(d.get('ob-1'))).toEqual(['gpu-master:0']);
  });

  it('never preempts on behalf of a job over quota', () => {
    const low = [hold('low-a', 'gpu-master', [0], { priority: -100 }), hold('low-b', 'gpu1', [0], { priority: -100 })];
    const holds = [...low, hold('ollie-1', 'gpu2', [0], { owner: 'ollie', priority: 100, preemptible: false })];
    const requests = [req('ollie-high', { owner: 'ollie', priority: 100 })];
    expect(run(requests, holds).get('ollie-high')).toMatchObject({ kind: 'preempt' });
    const d = withQuota(requests, holds, users({}, { gpus: 1 }), [['ollie', { gpus: 1 }]]);
    expect(d.get('ollie-high')).toMatchObject({ kind: 'wait', reason: 'QuotaExceeded' });
  });

  it("backfill respects quotas: a filler over its owner's quota waits, another owner's backfills", () => {
    const holds = [hold('x', 'gpu1', [0], { priority: 100, preemptible: false })];
    const requests = [
      req('head', { owner: 'ob', minNodes: 3, maxNodes: 3 }),
      req('ollie-filler', { owner: 'ollie', preemptible: true }),
      req('ob-filler', { owner: 'ob', preemptible: true }),
    ];
    const d = withQuota(requests, holds, users({ ollie: { runningJobs: 2 } }), [['ollie', { runningJobs: 2 }]]);
    expect(d.get('head')).toMatchObject({ kind: 'wait' });
    expect(d.get('head')).not.toHaveProperty('reason');
    expect(d.get('ollie-filler')).toEqual({
      kind: 'wait',
      reason: 'QuotaExceeded',
      why: 'ollie: 2 of 2 running jobs (users.quotas.ollie.running_jobs)',
    });
    expect(d.get('ob-filler')).toMatchObject({ kind: 'place', backfill: true });
  });

  it('counts what the same pass placed: a 1-GPU quota starts one of two jobs', () => {
    const d = withQuota(
      [req('ollie-a', { owner: 'ollie' }), req('ollie-b', { owner: 'ollie' })],
      [],
      users({ ollie: { gpus: 1 } }),
    );
    expect(placedOn(d.get('ollie-a'))).toEqual(['gpu-master:0']);
    expect(d.get('ollie-b')).toEqual({
      kind: 'wait',
      reason: 'QuotaExceeded',
      why: 'ollie: 1 of 1 GPUs in use (users.quotas.ollie.gpus)',
    });
  });

  it("counts a preemptor's promised GPUs too", () => {
    const holds = [
      hold('low-a', 'gpu-master', [0], { priority: -100 }),
      hold('low-b', 'gpu1', [0], { priority: -100 }),
      hold('low-c', 'gpu2', [0], { priority: -100 }),
    ];
    const d = withQuota(
      [req('ollie-a', { owner: 'ollie', priority: 100 }), req('ollie-b', { owner: 'ollie', priority: 100 })],
      holds,
      users({ ollie: { gpus: 1 } }),
    );
    expect(d.get('ollie-a')).toMatchObject({ kind: 'preempt' });
    expect(d.get('ollie-b')).toMatchObject({ kind: 'wait', reason: 'QuotaExceeded' });
  });

  it('more GPUs than the owner may ever hold: never, saying it is the quota', () => {
    const d = withQuota(
      [req('ollie-two', { owner: 'ollie', minNodes: 2, maxNodes: 2 })],
      [],
      users({ ollie: { gpus: 1 } }),
    );
    expect(d.get('ollie-two')).toEqual({
      kind: 'never',
      reason: 'QuotaExceeded',
      why: 'needs at least 2 GPUs; ollie may use at most 1 at once (users.quotas.ollie.gpus)',
    });
  });

  it("an elastic job gets only the nodes its owner's GPU limit leaves room for", () => {
    const d = withQuota(
      [req('ollie-el', { owner: 'ollie', minNodes: 1, maxNodes: 3 })],
      [],
      users({ ollie: { gpus: 2 } }),
    );
    expect(placedOn(d.get('ollie-el'))).toEqual(['gpu-master:0', 'gpu1:0']);
  });

  it("queued_jobs: the owner's jobs past the limit are held, without blocking anyone", () => {
    const holds = SEED.map((h) => hold(`busy-${h.host}`, h.host, [0], { priority: 1000, preemptible: false }));
    const d = withQuota(
      [req('ollie-a', { owner: 'ollie' }), req('ollie-b', { owner: 'ollie' }), req('ollie-c', { owner: 'ollie' })],
      holds,
      users({ ollie: { queuedJobs: 2 } }),
    );
    expect(d.get('ollie-a')).toMatchObject({ kind: 'wait' });
    expect(d.get('ollie-a')).not.toHaveProperty('reason');
    expect(d.get('ollie-b')).toMatchObject({ kind: 'wait' });
    expect(d.get('ollie-c')).toEqual({
      kind: 'wait',
      reason: 'QuotaExceeded',
      why: 'ollie: 2 of 2 queued jobs ahead of this one (users.quotas.ollie.queued_jobs)',
    });
  });

  it('max_priority caps a request (visibly) and a running job of that owner', () => {
    const u = users({ ollie: { maxPriority: 'normal' } });
    const d = withQuota(
      // ob's job is the older one: at equal priority it goes first.
      [req('ob-1', { owner: 'ob', hosts: ['gpu-master'] }), req('ollie-high', { owner: 'ollie', priority: 100 })],
      [],
      u,
      [],
      [SEED[0]],
    );
    // Capped to normal, ollie's newer job no longer jumps ahead of ob's.
    expect(placedOn(d.get('ob-1'))).toEqual(['gpu-master:0']);
    expect(d.get('ollie-high')).toMatchObject({
      kind: 'wait',
      capped: "priority high is above ollie's max_priority normal (users.quotas.ollie.max_priority): runs as normal",
    });
    // Ollie's run at "high" is preemptible by a priority-50 job once capped (and not without the cap).
    const holds = [hold('ollie-run', 'gpu-master', [0], { owner: 'ollie', priority: 100 })];
    const mid = [req('mid', { owner: 'ob', priority: 50 })];
    expect(run(mid, holds, [SEED[0]]).get('mid')).toMatchObject({ kind: 'wait' });
    expect(withQuota(mid, holds, u, [], [SEED[0]]).get('mid')).toMatchObject({
      kind: 'preempt',
      victims: [{ job: 'ollie-run' }],
    });
  });

  it('no limit set (no users: section, or one without limits): the same decisions as before', () => {
    const input = placementInputs({ jobs: 300, hosts: 8, gpusPerHost: 8, seed: 7 });
    const before = plan(input);
    expect(plan({ ...input, quota: { users: USERS, usage: new Map([['user1', { gpus: 5 }]]) } })).toEqual(before);
    // Limits that never bind change nothing either: the quota path keeps placement's decisions.
    const big = users({}, { gpus: 100_000, runningJobs: 100_000, queuedJobs: 100_000, gpuHoursPerWeek: 1e6 });
    expect(plan({ ...input, quota: { users: big, usage: new Map() } })).toEqual(before);
  });
});
