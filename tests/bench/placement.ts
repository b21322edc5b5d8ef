/**
 * Bench section "placement": the time of one scheduling pass, core's plan()
 * (controller/core/placement.ts), over a big queue: 1000 waiting jobs (BENCH_PLACEMENT_JOBS) on
 * 16 hosts (BENCH_PLACEMENT_HOSTS) x 8 GPUs, about half of the GPUs held by running jobs (some
 * preemptible, some backfills, some inside their minimum runtime), one host NotReady. The
 * requests mix priorities (high, normal, low and integers), owners with different recent usage,
 * 1..4 nodes (some {min, max}), 1/2/4/8 GPUs per node or every GPU of a host, GPU memory floors,
 * host restrictions and preferred hosts, and a few jobs that can never fit. The inputs are built
 * once, from a fixed seed, in the shapes the controller's planInputs() (controller/loop/
 * scheduler.ts) gives plan(); then plan() runs BENCH_PLACEMENT_RUNS times (default 20, after 3
 * warm-up runs) and the median and p95 (nearest rank) wall times are printed. No lab needed.
 *
 * Quotas (issue 17): the same queue again with a users: section (every owner limited in GPUs,
 * running and queued jobs, GPU-hours this week and max_priority, a few overrides, one owner past
 * the week's GPU-hours) and each owner's usage from the holdings, which then carry their owner.
 * Also with limits that never bind (every check runs, no job is held: the same decisions), which
 * isolates the cost of the quota decisions themselves. The three cases run interleaved, pass for
 * pass, and print p50 and p99 (the goal: a pass stays under 50 ms).
 *
 *   node --import tsx tests/bench/placement.ts      (or: npm run bench:placement)
 *   import { placementSection } from './placement.ts'
 */
import { pathToFileURL } from 'node:url';
import type { UsersSettings } from '../../config/users.ts';
import {
  type Decision,
  type Gpu,
  type Holding,
  type HostSlots,
  plan,
  type Request,
} from '../../controller/core/placement.ts';
import type { OwnerUsage, QuotaInput } from '../../controller/core/quota.ts';
import { percentile, round, summarize } from './lib.ts';

export interface PlacementOptions {
  jobs?: number;
  hosts?: number;
  gpusPerHost?: number;
  runs?: number;
  seed?: number;
}

/** mulberry32: a small deterministic PRNG, so every run plans the same queue. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Host models: GPU name and memory (MiB as nvidia-smi reports it). Mixed, as a grown lab is. */
const MODELS: [string, number][] = [
  ['NVIDIA A100-SXM4-80GB', 81920],
  ['NVIDIA GeForce RTX 4090', 24564],
  ['NVIDIA GeForce RTX 3090', 24576],
  ['NVIDIA RTX A6000', 49140],
  ['NVIDIA GeForce RTX 4070', 12282],
];

export function placementInputs(o: Required<Omit<PlacementOptions, 'runs'>>) {
  const r = rng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const now = Date.parse('2026-01-01T12:00:00Z');

  const hosts: HostSlots[] = Array.from({ length: o.hosts }, (_, h) => {
    const [name, memoryMiB] = MODELS[h % MODELS.length];
    const gpus: Gpu[] = Array.from({ length: o.gpusPerHost }, (_, index) => ({ index, name, memoryMiB }));
    return { host: `gpu${h}`, gpus, ...(h === o.hosts - 1 ? { unusable: 'NotReady (ssh: connect timed out)' } : {}) };
  });

  // Running work: per usable host, runs of 1, 2 or 4 GPUs until about half its GPUs are held.
  const holdings: Holding[] = [];
  let runNo = 0;
  for (const h of hosts.slice(0, -1)) {
    let g = 0;
    while (g < o.gpusPerHost / 2) {
      const n = Math.min(pick([1, 2, 4]), o.gpusPerHost - g);
      const preemptible = r() < 0.4;
      const priority = pick([-100, -100, 0, 0, 0, 10, 100]);
      const name = `running-${String(runNo++).padStart(4, '0')}`;
      holdings.push({
        job: name,
        host: h.host,
        gpus: Array.from({ length: n }, (_, k) => g + k),
        priority,
        preemptible,
        // Some within their minimum runtime (not preemptible yet), most past it.
        startedAt: now - Math.floor(r() * 3600_000),
        minRuntimeSeconds: preemptible ? pick([0, 0, 600, 1800]) : 0,
        ...(preemptible && r() < 0.3 ? { backfill: true } : {}),
        runId: `${name}-0123abcd-a1`,
        dir: `${name}.0123abcd.1`,
        ...(preemptible ? { graceSeconds: 30 } : {}),
      });
      g += n;
    }
  }
  // A multi-host run (2 hosts x 2 GPUs), as a gang holds GPUs on several hosts.
  for (const [i, h] of [hosts[0], hosts[1]].entries())
    holdings.push({
      job: 'running-gang',
      host: h.host,
      gpus: [o.gpusPerHost - 2, o.gpusPerHost - 1],
      priority: -100,
      preemptible: true,
      startedAt: now - 7200_000 + i,
      minRuntimeSeconds: 0,
      runId: 'running-gang-0123abcd-a1',
      dir: 'running-gang.0123abcd.1',
      graceSeconds: 60,
    });

  const owners = Array.from({ length: 12 }, (_, i) => `user${i}`);
  const usage = new Map(owners.map((u, i) => [u, i * 3600 * (1 + r())]));
  const requests: Request[] = [];
  for (let j = 0; j < o.jobs; j++) {
    const minNodes = pick([1, 1, 1, 2, 2, 3, 4]);
    const elastic = r() < 0.2;
    const gpusPerNode: Request['gpusPerNode'] = r() < 0.05 ? 'all' : pick([1, 1, 2, 2, 4, 8]);
    const never = r() < 0.01;
    const restricted = r() < 0.15;
    const restart = r() < 0.1;
    requests.push({
      job: `job-${String(j).padStart(4, '0')}`,
      priority: pick([100, 0, 0, 0, -100, -100, 50, -10]),
      owner: pick(owners),
      createdAt: new Date(now - Math.floor(r() * 86_400_000)).toISOString(),
      minNodes,
      maxNodes: elastic ? minNodes + pick([1, 2]) : minNodes,
      gpusPerNode,
      // Never: more memory than any GPU here.
      minGpuMemoryMiB: never ? 160 * 1024 : pick([0, 0, 0, 8192, 16384, 24 * 1024, 40 * 1024]),
      ...(restricted ? { hosts: hosts.filter(() => r() < 0.4).map((h) => h.host) } : {}),
      ...(restart ? { prefer: [pick(hosts).host, pick(hosts).host] } : {}),
      preemptible: r() < 0.25,
    });
  }
  return { requests, hosts, holdings, usage, now };
}

/**
 * The same inputs with quotas: a users: section that binds (about a third of the queue waits
 * QuotaExceeded), the holdings' owners, and each owner's usage from them.
 */
export function withQuotas(input: ReturnType<typeof placementInputs>, seed: number, binding = true) {
  const r = rng(seed + 1);
  const owners = [...input.usage.keys()];
  const holdings = input.holdings.map((h) => ({ ...h, owner: owners[Math.floor(r() * owners.length)] }));
  const usage = new Map<string, OwnerUsage>();
  for (const o of owners) usage.set(o, { gpus: 0, runningJobs: 0, gpuHoursWeek: Math.floor(r() * 400) });
  const seen = new Set<string>();
  for (const h of holdings) {
    const u = usage.get(h.owner)!;
    u.gpus += h.gpus.length;
    if (!seen.has(h.job)) u.runningJobs++;
    seen.add(h.job);
  }
  usage.get(owners[0])!.gpuHoursWeek = 900;
  // Not binding: every check runs, none holds a job back (the decisions are those without quotas).
  const users: UsersSettings = binding
    ? {
        admins: [owners[0]],
        logs: 'open',
        defaults: { gpus: 16, runningJobs: 6, queuedJobs: 60, gpuHoursPerWeek: 500, maxPriority: 50 },
        quotas: { [owners[1]]: { gpus: 4 }, [owners[2]]: { gpus: 'unlimited', maxPriority: 'high' } },
      }
    : {
        admins: [],
        logs: 'open',
        defaults: { gpus: 10_000, runningJobs: 10_000, queuedJobs: 10_000, gpuHoursPerWeek: 1e6, maxPriority: 1000 },
        quotas: { [owners[1]]: { gpus: 5000 } },
      };
  const quota: QuotaInput = { users, usage };
  return { ...input, holdings, quota };
}

function stats(times: number[]) {
  const sorted = [...times].sort((a, b) => a - b);
  return {
    medianMs: round(percentile(sorted, 0.5), 2),
    p95Ms: round(percentile(sorted, 0.95), 2),
    p99Ms: round(percentile(sorted, 0.99), 2),
    ms: summarize(times),
  };
}

function count(out: Map<string, Decision>) {
  const decisions: Record<Decision['kind'], number> = { place: 0, preempt: 0, wait: 0, never: 0 };
  let quotaExceeded = 0;
  for (const d of out.values()) {
    decisions[d.kind]++;
    if ((d.kind === 'wait' || d.kind === 'never') && d.reason === 'QuotaExceeded') quotaExceeded++;
  }
  return { decisions, quotaExceeded };
}

export async function placementSection(o: PlacementOptions = {}) {
  const shape = { jobs: o.jobs ?? 1000, hosts: o.hosts ?? 16, gpusPerHost: o.gpusPerHost ?? 8, seed: o.seed ?? 42 };
  const runs = o.runs ?? 20;
  const input = placementInputs(shape);
  const cases = [input, withQuotas(input, shape.seed), withQuotas(input, shape.seed, false)];
  const outs: Map<string, Decision>[] = cases.map(() => new Map());
  const times: number[][] = cases.map(() => []);
  for (let i = 0; i < 3; i++) for (const [k, c] of cases.entries()) outs[k] = plan(c);
  for (let i = 0; i < runs; i++) {
    // Interleaved, so every case sees the same machine (other load, GC, CPU clock).
    for (const [k, c] of cases.entries()) {
      const t = performance.now();
      outs[k] = plan(c);
      times[k].push(performance.now() - t);
      // Let the event loop (and a pending GC) run between passes, as the controller does.
      await new Promise((r) => setImmediate(r));
    }
  }
  const { decisions } = count(outs[0]);
  const gpus = shape.hosts * shape.gpusPerHost;
  const held = input.holdings.reduce((n, h) => n + h.gpus.length, 0);
  return {
    ...shape,
    gpus,
    heldGpus: held,
    holdings: input.holdings.length,
    preemptibleHoldings: input.holdings.filter((h) => h.preemptible).length,
    runs,
    ...stats(times[0]),
    decisions,
    /** The same queue with quotas that bind (withQuotas). */
    quota: { ...stats(times[1]), ...count(outs[1]) },
    /** The same queue with quotas that never bind: the cost of the checks alone. */
    quotaIdle: { ...stats(times[2]), ...count(outs[2]) },
  };
}

export type PlacementReport = Awaited<ReturnType<typeof placementSection>>;

export function placementLines(p: PlacementReport): string[] {
  return [
    `Placement: core plan() over ${p.jobs} waiting jobs x ${p.hosts} hosts x ${p.gpusPerHost} GPUs ` +
      `(${p.heldGpus}/${p.gpus} GPUs held by ${p.holdings} holdings, ${p.preemptibleHoldings} preemptible; ` +
      'one host NotReady)',
    `   ${p.runs} runs: median ${p.medianMs} ms, p95 ${p.p95Ms} ms (min ${round(p.ms.min, 2)}, ` +
      `max ${round(p.ms.max, 2)} ms)`,
    `   decisions: ${Object.entries(p.decisions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `   quotas: without p50 ${p.medianMs} / p99 ${p.p99Ms} ms; ` +
      `binding p50 ${p.quota.medianMs} / p99 ${p.quota.p99Ms} ms; ` +
      `never binding p50 ${p.quotaIdle.medianMs} / p99 ${p.quotaIdle.p99Ms} ms`,
    `   binding quotas, decisions: ${Object.entries(p.quota.decisions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')} (QuotaExceeded ${p.quota.quotaExceeded}); never binding: ` +
      `${Object.entries(p.quotaIdle.decisions)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const env = (k: string) => (process.env[k] ? Number(process.env[k]) : undefined);
  placementSection({
    jobs: env('BENCH_PLACEMENT_JOBS'),
    hosts: env('BENCH_PLACEMENT_HOSTS'),
    gpusPerHost: env('BENCH_PLACEMENT_GPUS'),
    runs: env('BENCH_PLACEMENT_RUNS'),
  }).then(
    (p) => console.log(placementLines(p).join('\n')),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
