/**
 * Benchmarks of what the controller shows (issue 11). Prints:
 *  - dashboard first paint with 1000 jobs, in headless Chromium (goal < 1 s);
 *  - /metrics with 1000 jobs (goal < 50 ms);
 *  - the process's RSS with GPU telemetry for 16 hosts x 8 GPUs, an hour of samples at a 1 s
 *    health cadence (the worst case; the default 30 s keeps 121 samples per GPU), goal < 150 MB.
 * Needs no lab (the view is fed the way the controller feeds it); the first needs /usr/bin/chromium.
 *
 *   node --import tsx tests/bench/observability.ts            (all three)
 *   import { runObservabilityBench } from './observability.ts' (or each run* function alone)
 */
import { pathToFileURL } from 'node:url';
import type { Cluster, Host } from '../../config/cluster.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import type { NodeHealth } from '../../controller/backends/health.ts';
import { ControllerMetrics } from '../../controller/observability/metrics.ts';
import { Telemetry } from '../../controller/observability/telemetry.ts';
import { DashboardView } from '../../controller/observability/view.ts';
import { WebServer } from '../../controller/observability/web/server.ts';
import { CLUSTER } from '../unit/job-fixtures.ts';

const PHASES = ['Running', 'Queued', 'Succeeded', 'Failed'] as const;

function hostsOf(n: number): Host[] {
  return Array.from({ length: n }, (_, i) => ({ ...CLUSTER.hosts[i % CLUSTER.hosts.length], name: `gpu${i}` }));
}

function viewWith(jobs: number, hosts = 3, now = Date.now()): DashboardView {
  const cluster: Cluster = { ...CLUSTER, hosts: hostsOf(hosts) };
  const view = new DashboardView({ cluster, now: () => now });
  for (let i = 0; i < jobs; i++) {
    const phase = PHASES[i % PHASES.length];
    const s: JobStatus = {
      phase,
      observedGeneration: 1,
      attempt: 1 + (i % 3),
      nodes: [{ host: `gpu${i % hosts}`, nodeRank: 0, globalRanks: [0], state: 'Running' }],
      createdAt: new Date(now - i * 1000).toISOString(),
      conditions: [],
      runId: `job-${i}-0123abcd-a1`,
      specHash: '0123abcd',
      progress: { step: i, total_steps: 1000, loss: 1 / (i + 1), samples_per_s: 100 + i, epoch: 1 },
      restarts: { infra: i % 2, training: i % 3 },
      failures: i % 5 ? [] : [{ attempt: 1, class: 'training', reason: 'RankFailed', message: 'x', time: 't' }],
    };
    view.persisted(`job-${String(i).padStart(4, '0')}`, view.decorate(`job-${i}`, s), []);
  }
  return view;
}

function gpuNodes(hosts: number, gpus: number, t: number): NodeHealth[] {
  return Array.from({ length: hosts }, (_, h) => ({
    name: `gpu${h}`,
    address: 'x:22',
    user: 'u',
    role: 'worker' as const,
    status: 'Ready' as const,
    reasons: [],
    warnings: [],
    rttMs: 3,
    gpus: Array.from({ length: gpus }, (_, g) => ({
      index: g,
      name: 'NVIDIA RTX 4090',
      memoryTotalMiB: 24_564,
      memoryUsedMiB: (t * 7 + g) % 24_000,
      utilizationPct: (t + g * 13) % 101,
      driver: '570.133.07',
      temperatureC: 40 + (t % 40),
      powerW: 100 + (t % 300),
    })),
    checkedAt: new Date().toISOString(),
  }));
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function runMetricsBench(jobs = 1000): Promise<{ medianMs: number; bytes: number }> {
  const view = viewWith(jobs, 16);
  view.health(gpuNodes(16, 8, 1));
  const m = new ControllerMetrics(view);
  await m.render();
  const times: number[] = [];
  let bytes = 0;
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    bytes = (await m.render()).length;
    times.push(performance.now() - t0);
  }
  const medianMs = median(times);
  console.log(
    `/metrics with ${jobs} jobs, 16 hosts x 8 GPUs: median ${medianMs.toFixed(1)} ms, ${bytes} bytes (goal < 50 ms)`,
  );
  return { medianMs, bytes };
}

export async function runDashboardBench(jobs = 1000): Promise<{ firstPaintMs: number; loadMs: number; bytes: number }> {
  const view = viewWith(jobs, 16);
  view.health(gpuNodes(16, 8, 1));
  const server = new WebServer({
    view,
    metrics: new ControllerMetrics(view),
    store: { readEvents: async () => [] } as never,
    hosts: [],
    runtime: {} as never,
    cluster: 'bench',
  });
  const { url } = await server.start('127.0.0.1', 0);
  const bytes = (await (await fetch(url)).text()).length;
  // (Loaded here: playwright-core would weigh on the RSS figure of the telemetry bench.)
  const { startBrowser } = await import('../support/browser.ts');
  const b = await startBrowser();
  try {
    const page = await b.browser.newPage();
    await page.goto(url); // warm: assets fetched once, as a returning user has them
    const runs: { fcp: number; load: number }[] = [];
    for (let i = 0; i < 5; i++) {
      await page.goto('about:blank');
      await page.goto(url, { waitUntil: 'load' });
      const r = (await page.evaluate(
        `(() => { const p = performance.getEntriesByName('first-contentful-paint')[0];
          const n = performance.getEntriesByType('navigation')[0];
          return { fcp: p ? p.startTime : -1, load: n.loadEventEnd }; })()`,
      )) as { fcp: number; load: number };
      runs.push(r);
    }
    const firstPaintMs = median(runs.map((r) => r.fcp));
    const loadMs = median(runs.map((r) => r.load));
    console.log(
      `dashboard with ${jobs} jobs (${(bytes / 1024).toFixed(0)} KiB of HTML): first contentful paint ` +
        `${firstPaintMs.toFixed(0)} ms, load ${loadMs.toFixed(0)} ms, median of 5 (goal < 1 s)`,
    );
    return { firstPaintMs, loadMs, bytes };
  } finally {
    await b.close();
    await server.stop();
  }
}

export async function runTelemetryRssBench(
  hosts = 16,
  gpus = 8,
  seconds = 3600,
): Promise<{ rssMB: number; ringMB: number }> {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage().rss / 1048576;
  const view = new DashboardView({
    cluster: { ...CLUSTER, hosts: hostsOf(hosts) },
    telemetry: new Telemetry({ everyMs: 1000 }),
  });
  for (let t = 0; t < seconds; t++) view.health(gpuNodes(hosts, gpus, t));
  view.nodes(); // what a page or an SSE round builds
  gc?.();
  const rssMB = process.memoryUsage().rss / 1048576;
  const ringMB = view.telemetry.bytes() / 1048576;
  console.log(
    `telemetry ${hosts} hosts x ${gpus} GPUs, ${seconds} samples each: rings ${ringMB.toFixed(1)} MB, ` +
      `process RSS ${rssMB.toFixed(0)} MB (${before.toFixed(0)} MB before; goal < 150 MB)`,
  );
  return { rssMB, ringMB };
}

export async function runObservabilityBench(): Promise<void> {
  await runTelemetryRssBench();
  await runMetricsBench();
  await runDashboardBench();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runObservabilityBench().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
