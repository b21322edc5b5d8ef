/**
 * The dashboard's sweep page (issue 18): /sweeps/NAME shows the sweep's trials best first (their
 * parameters, objective, state and why each stopped) and every trial's curve with the rungs
 * marked; the job list links a trial (a job labelled ugro.dev/sweep, not one that only looks like
 * a trial by name) to its sweep's page. Pure pages against hostile values, then the real server on
 * a local socket over a real store: the Host check (421) and the token (401) hold for the new page.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import type { SweepStatus, TrialRecord } from '../../controller/api/sweep-status.ts';
import { ControllerMetrics } from '../../controller/observability/metrics.ts';
import { DashboardView } from '../../controller/observability/view.ts';
import { jobsPage } from '../../controller/observability/web/html.ts';
import type { JobRow } from '../../controller/observability/web/rows.ts';
import { WebServer } from '../../controller/observability/web/server.ts';
import { bestFirst, curveOf, sweepPage } from '../../controller/observability/web/sweep-page.ts';
import { JobStore } from '../../controller/store/store.ts';
import { SweepFiles } from '../../controller/store/sweeps.ts';
import { CLUSTER } from './job-fixtures.ts';

const T = Date.parse('2026-03-01T10:00:00Z');
const EVIL = `<img src=x onerror=alert(1)>"'&`;
const TOKEN = 'tok-0123456789abcdef';
const C = { cluster: 'lab', nowMs: T };

const trial = (index: number, over: Partial<TrialRecord> = {}): TrialRecord => ({
  name: `lr-t${index}`,
  generation: 1,
  index,
  params: { lr: 10 ** -index },
  state: 'succeeded',
  rungs: [{ step: 10, value: 1 + index, mean: 1 + index }],
  ...over,
});

const SWEEP = (trials: TrialRecord[], over: Partial<SweepStatus> = {}): SweepStatus => ({
  phase: 'Running',
  message: '1 running, 1 paused, 0 pending of 3',
  generation: 1,
  owner: 'ob',
  createdAt: new Date(T).toISOString(),
  objective: { metric: 'loss', goal: 'minimize' },
  rungs: [10],
  trials,
  best: { trial: 'lr-t2', objective: 0.2 },
  counts: { total: 3, pending: 0, running: 1, paused: 1, stopped: 0, succeeded: 1, failed: 0 },
  ...over,
});

const TRIALS = [
  trial(0, { state: 'running', step: 12, objective: 0.9 }),
  trial(1, { state: 'paused', step: 10, objective: 2, why: 'paused at rung 1 (step 10): loss 2, not in the best' }),
  trial(2, { step: 40, objective: 0.2 }),
];

describe('the sweep page (pure)', () => {
  it('lists the trials best first with parameters, objective, state and why; draws each curve and the rung', () => {
    const html = sweepPage(
      C,
      'lr',
      SWEEP(TRIALS),
      bestFirst(TRIALS, 'minimize').map((t) => curveOf(t, false)),
    );
    const rows = [...html.matchAll(/<tr data-trial="([^"]+)">(.*?)<\/tr>/g)];
    expect(rows.map((m) => m[1])).toEqual(['lr-t2', 'lr-t0', 'lr-t1']);
    const cells = (m: RegExpMatchArray) => [...m[2].matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((c) => c[1]);
    expect(cells(rows[2])).toEqual([
      '<a href="/jobs/lr-t1">lr-t1</a>',
      'lr=0.1',
      '2',
      '10',
      'paused',
      'paused at rung 1 (step 10): loss 2, not in the best',
    ]);
    expect(html).toContain('<th>loss</th>');
    expect(html).toMatch(/<dt>Best<\/dt><dd>lr-t2: 0.2<\/dd>/);
    // Each trial's curve from what the status knows (its rung values, then its newest objective).
    const lines = [...html.matchAll(/<polyline class="trial" data-trial="([^"]+)" data-points="(\d+)"/g)];
    expect(lines.map((m) => [m[1], Number(m[2])])).toEqual([
      ['lr-t2', 2],
      ['lr-t0', 2],
      ['lr-t1', 1],
    ]);
    expect(html).toContain('<g class="rung" data-step="10">');
    expect(html).toContain('"page":"sweep"');
  });

  it('curveOf: the metrics read when there are any, the best marked', () => {
    const read = [
      { step: 5, value: 3 },
      { step: 10, value: 2 },
    ];
    expect(curveOf(TRIALS[0], true, read)).toEqual({ name: 'lr-t0', points: read, best: true });
    expect(curveOf(trial(4, { rungs: [] }), false).points).toEqual([]);
  });

  it('hostile values never become markup', () => {
    const evil = trial(0, { name: EVIL, params: { [EVIL]: EVIL }, why: EVIL, phase: EVIL });
    const s = SWEEP([evil], { message: EVIL, owner: EVIL, objective: { metric: EVIL, goal: 'maximize' } });
    const html = sweepPage(C, EVIL, s, [curveOf(evil, true)]);
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;');
  });

  it("the job list links a trial to its sweep's page, no other job", () => {
    const row = (name: string): JobRow => ({
      name,
      phase: 'Running',
      attempt: 1,
      restarts: 0,
      infraRestarts: 0,
      nodes: '1/1',
      hosts: [],
    });
    const html = jobsPage(C, [row('lr-t0'), row('other')], [], new Map([['lr-t0', 'lr']]));
    expect(html).toContain('<a href="/jobs/lr-t0">lr-t0</a> <a class="sweep" href="/sweeps/lr">sweep lr</a>');
    expect(html.match(/class="sweep"/g)).toHaveLength(1);
  });
});

// ---------------------------------------------------------------- the server
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const jobStatus = (runId: string): JobStatus => ({
  phase: 'Running',
  observedGeneration: 1,
  attempt: 1,
  nodes: [],
  createdAt: '2026-03-01T09:00:00Z',
  conditions: [],
  runId,
  specHash: 'abcdef12',
});

async function serve(token?: string) {
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-sweep-web-'));
  await new SweepFiles(jobs).writeStatus('lr', SWEEP(TRIALS));
  const job = (name: string, labels?: Record<string, string>) =>
    writeFileSync(
      join(jobs, `${name}.yaml`),
      stringify({
        apiVersion: 'ugro.dev/v1alpha1',
        kind: 'TrainingJob',
        metadata: { name, ...(labels ? { labels } : {}) },
        spec: { command: ['t'] },
      }),
    );
  job('lr-t0', { 'ugro.dev/sweep': 'lr', 'ugro.dev/trial': '0' });
  job('lr-t9'); // named like a trial, not labelled: no link
  const view = new DashboardView({ cluster: CLUSTER, now: () => T, partsOf: () => [] });
  view.persisted('lr-t0', jobStatus('lr-t0-abcdef12-a1'), []);
  view.persisted('lr-t9', jobStatus('lr-t9-abcdef12-a1'), []);
  const server = new WebServer({
    view,
    metrics: new ControllerMetrics(view),
    store: new JobStore(jobs),
    hosts: CLUSTER.hosts,
    runtime: { readLog: async () => ({ text: '', offset: 0 }) } as never,
    cluster: 'test',
    now: () => T,
    lossEveryMs: 3_600_000,
    ...(token ? { token } : {}),
  });
  const a = await server.start('127.0.0.1', 0);
  cleanups.push(() => server.stop());
  return a.port;
}

function get(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, agent: false, headers: { host: `127.0.0.1:${port}`, ...headers } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('/sweeps/NAME on the server', () => {
  it('serves the page from the status file; 404 for no sweep, 400 for a bad escape; trials link to it', async () => {
    const port = await serve();
    const page = await get(port, '/sweeps/lr');
    expect(page.status).toBe(200);
    expect([...page.body.matchAll(/<tr data-trial="([^"]+)"/g)].map((m) => m[1])).toEqual(['lr-t2', 'lr-t0', 'lr-t1']);
    expect(page.body).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect((await get(port, '/sweeps/nope')).status).toBe(404);
    expect((await get(port, '/sweeps/..%2F..%2Fetc')).status).toBe(404);
    expect((await get(port, '/sweeps/%E0%A4%A')).status).toBe(400);
    const list = await get(port, '/');
    expect(list.body).toContain('<a href="/jobs/lr-t0">lr-t0</a> <a class="sweep" href="/sweeps/lr">sweep lr</a>');
    expect(list.body).toContain('<a href="/jobs/lr-t9">lr-t9</a></td>');
  });

  it('the Host check and the token apply: 421 for another name, 401 without the token', async () => {
    const open = await serve();
    const rebound = await get(open, '/sweeps/lr', { host: `attacker.example:${open}` });
    expect(rebound.status).toBe(421);
    expect(rebound.body).not.toContain('lr-t0');
    const locked = await serve(TOKEN);
    expect((await get(locked, '/sweeps/lr')).status).toBe(401);
    expect((await get(locked, '/sweeps/lr', { authorization: `Bearer ${TOKEN}` })).status).toBe(200);
  });
});
