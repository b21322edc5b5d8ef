/**
 * What the controller shows, wired to the real controller loop on in-memory hosts (FakeHosts):
 * webhook notifications through real local HTTP receivers (one POST per change, in order; a 500
 * retried; a receiver that hangs never slows reconcile), the notifier's backoff on injected
 * timers, and the HTTP server: token rules, pages, /metrics and Server-Sent Events.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster } from '../../config/cluster.ts';
import { UsageError } from '../../config/errors.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { writeLossPlot } from '../../controller/cli/plot.ts';
import type { Notification } from '../../controller/core/notifications.ts';
import { Controller } from '../../controller/loop/controller.ts';
import { Notifier } from '../../controller/observability/notify.ts';
import { checkExposure, parseListen } from '../../controller/observability/web/server.ts';
import { Observability, readToken } from '../../controller/observability/wire.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS, jobYaml } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const CMD = { command: ['python3', '/opt/t.py'] };
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A local HTTP receiver; `answer` decides each response (or never answers). */
async function receiver(answer: (n: number, res: ServerResponse) => void = (_, res) => res.end('ok')) {
  const got: { body: string; at: number; headers: IncomingMessage['headers'] }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (b) => (body += b));
    req.on('end', () => {
      got.push({ body, at: Date.now(), headers: req.headers });
      answer(got.length, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook/SECRET-PATH`;
  return { url, got, kinds: () => got.map((g) => (JSON.parse(g.body) as Notification).kind) };
}

async function rig(o: { webhook?: Record<string, unknown>; http?: string; token?: string; notifier?: object } = {}) {
  const clock = { ms: T0 };
  const fake = new FakeHosts(HOSTS, { now: () => clock.ms, cluster: CLUSTER });
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-obs-'));
  const log = memoryLogger();
  const cluster: Cluster = { ...CLUSTER, raw: { ...CLUSTER.raw, ...(o.webhook ? { webhook: o.webhook } : {}) } };
  const runtime = new SshBackend(fake);
  const obs = new Observability({
    cluster,
    runtime,
    log,
    http: o.http ?? 'off',
    ...(o.token ? { token: o.token } : {}),
    healthEveryMs: 30_000,
    now: () => clock.ms,
    ...(o.notifier ? { notifier: o.notifier } : {}),
  });
  const ctl = new Controller({
    cluster,
    jobsDir: jobs,
    runtime,
    log,
    now: () => new Date(clock.ms),
    owner: 'test-controller',
    watch: async () => ({ close: async () => {} }),
    lock: async () => ({ release: async () => {} }),
    every: () => () => {},
    queueTimers: { setTimeout: () => ({ unref() {} }) as unknown as NodeJS.Timeout, clearTimeout: () => {} },
    observer: obs.view,
  });
  obs.attach(ctl);
  await ctl.start();
  await obs.start(ctl);
  cleanups.push(async () => {
    await obs.stop();
    await ctl.stop();
  });
  const dirOf = (name: string) => {
    const s = obs.view.status(name);
    return `${s?.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
  };
  return {
    clock,
    fake,
    jobs,
    log,
    obs,
    ctl,
    dirOf,
    write: (name: string, spec: Record<string, unknown>) =>
      writeFileSync(join(jobs, `${name}.yaml`), jobYaml(name, spec)),
    async pass(...names: string[]) {
      for (const n of names) ctl.enqueue(n);
      await ctl.idle();
    },
  };
}

/** A job that fails once (restart), then succeeds. */
async function restartThenSucceed(r: Awaited<ReturnType<typeof rig>>, name: string) {
  r.write(name, { ...CMD, nodes: 1, restartPolicy: { maxRestarts: 1, backoffSeconds: 1 } });
  await r.pass(name);
  const d1 = r.dirOf(name);
  const host = r.obs.view.status(name)!.nodes[0].host;
  r.fake.startRanks(host, d1, 1);
  await r.pass(name);
  r.fake.endRank(host, d1, 0, 1);
  r.fake.endRun(host, d1, 1);
  await r.pass(name);
  r.clock.ms += 5000;
  await r.pass(name);
  const d2 = r.dirOf(name);
  const host2 = r.obs.view.status(name)!.nodes[0].host;
  r.fake.startRanks(host2, d2, 1);
  r.fake.endRun(host2, d2, 0);
  await r.pass(name);
  expect(r.obs.view.status(name)!.phase).toBe('Succeeded');
}

describe('webhook notifications through the controller loop', () => {
  it('a local receiver gets one POST per change, in order, JSON with a Slack-style text, signed', async () => {
    const rx = await receiver();
    const r = await rig({ webhook: { url: rx.url, secret: 's3cret' } });
    await restartThenSucceed(r, 'one');
    r.write('two', { ...CMD, nodes: 1 });
    await r.pass('two');
    const d = r.dirOf('two');
    const host = r.obs.view.status('two')!.nodes[0].host;
    r.fake.startRanks(host, d, 1);
    r.fake.endRank(host, d, 0, 3);
    r.fake.endRun(host, d, 3);
    await r.pass('two');
    expect(r.obs.view.status('two')!.phase).toBe('Failed');
    await r.obs.notifier!.idle();
    expect(rx.kinds()).toEqual(['Restarting', 'Succeeded', 'Failed']);
    const bodies = rx.got.map((g) => JSON.parse(g.body) as Notification);
    expect(bodies.map((b) => b.job)).toEqual(['one', 'one', 'two']);
    expect(bodies[1].text).toMatch(/^UGRO on .+: job one succeeded \(attempt 2\)/);
    expect(rx.got[0].headers['content-type']).toBe('application/json');
    const { createHmac } = await import('node:crypto');
    const sig = createHmac('sha256', 's3cret').update(rx.got[0].body).digest('hex');
    expect(rx.got[0].headers['x-ugro-signature-256']).toBe(`sha256=${sig}`);
    // The URL is a secret: never in the log.
    expect(JSON.stringify(r.log.lines)).not.toContain('SECRET-PATH');
  });

  it('a receiver that answers 500 then 200 gets the same POST again', async () => {
    const rx = await receiver((n, res) => {
      res.statusCode = n === 1 ? 500 : 200;
      res.end();
    });
    const r = await rig({ webhook: { url: rx.url }, notifier: { backoffMs: 20 } });
    await restartThenSucceed(r, 'flaky');
    await r.obs.notifier!.idle();
    expect(rx.kinds()).toEqual(['Restarting', 'Restarting', 'Succeeded']);
    expect(rx.got[0].body).toBe(rx.got[1].body);
    expect(r.obs.notifier!.stats).toMatchObject({ sent: 2, retried: 1, failed: 0 });
  });

  it('a receiver that hangs does not slow reconcile', async () => {
    const rx = await receiver(() => {
      /* never answers */
    });
    const r = await rig({ webhook: { url: rx.url, timeout_seconds: 30 } });
    const t0 = performance.now();
    await restartThenSucceed(r, 'stuck');
    const ms = performance.now() - t0;
    // Every phase change happened while the first POST still waited for its answer.
    expect(rx.got).toHaveLength(1);
    expect(ms).toBeLessThan(3000);
    expect(r.obs.view.status('stuck')!.phase).toBe('Succeeded');
  });
});

describe('the notifier alone (injected timers)', () => {
  const note = (job: string): Notification => ({
    kind: 'Failed',
    job,
    phase: 'Failed',
    attempt: 1,
    restarts: 0,
    time: 't',
    text: `job ${job} failed`,
  });

  it('retries with backoff 1 s doubling to the cap, then gives up with an error logged; order kept', async () => {
    const delays: number[] = [];
    const timers: (() => void)[] = [];
    const calls: string[] = [];
    const log = memoryLogger();
    const n = new Notifier({
      url: 'http://x/',
      retries: 4,
      maxBackoffMs: 4000,
      log,
      post: async (_u, body) => {
        calls.push(JSON.parse(body).job);
        return JSON.parse(body).job === 'bad' ? 503 : 204;
      },
      setTimeout: (fn, ms) => {
        if (ms < 10_000) delays.push(ms); // (the per-request timeouts are 10 s)
        timers.push(fn);
        return timers.length;
      },
      clearTimeout: () => {},
    });
    n.send(note('bad'));
    n.send(note('good'));
    for (let i = 0; i < 50 && calls.length < 6; i++) {
      await new Promise((r) => setImmediate(r));
      const t = timers.shift();
      if (t && delays.length > calls.length - 1) t();
    }
    await n.idle();
    expect(delays).toEqual([1000, 2000, 4000, 4000]);
    expect(calls).toEqual(['bad', 'bad', 'bad', 'bad', 'bad', 'good']);
    expect(n.stats).toMatchObject({ sent: 1, failed: 1, retried: 4 });
    expect(JSON.stringify(log.lines)).toContain('notification not delivered');
  });

  it('a request that never answers is aborted at the timeout and retried', async () => {
    let fire: (() => void) | undefined;
    let tries = 0;
    const n = new Notifier({
      url: 'http://x/',
      retries: 1,
      backoffMs: 1,
      timeoutMs: 10_000,
      post: (_u, _b, _h, signal) =>
        new Promise((res, rej) => {
          tries++;
          if (tries === 2) return res(200);
          signal.addEventListener('abort', () => rej(new Error('aborted')));
        }),
      setTimeout: (fn, ms) => {
        if (ms === 10_000 && tries === 0) fire = fn;
        else if (ms !== 10_000) setImmediate(fn);
        return 1;
      },
      clearTimeout: () => {},
    });
    n.send(note('slow'));
    await new Promise((r) => setImmediate(r));
    fire!();
    await n.idle();
    expect(tries).toBe(2);
    expect(n.stats).toMatchObject({ sent: 1, retried: 1 });
  });
});

describe('the HTTP server', () => {
  it('beyond loopback without a token: refused before anything starts; with one, fine', () => {
    expect(() => checkExposure('0.0.0.0', undefined)).toThrow(UsageError);
    expect(() => checkExposure('10.250.77.1', undefined)).toThrow(/needs a token/);
    expect(() => checkExposure('::', undefined)).toThrow(UsageError);
    expect(() => checkExposure('0.0.0.0', 'short')).toThrow(/at least 16/);
    expect(() => checkExposure('0.0.0.0', 'a-long-enough-token')).not.toThrow();
    for (const h of ['127.0.0.1', '127.8.9.1', '::1', 'localhost'])
      expect(() => checkExposure(h, undefined)).not.toThrow();
    expect(parseListen('[::1]:8686')).toEqual({ host: '::1', port: 8686 });
    expect(() => parseListen('8686')).toThrow(UsageError);
    const f = join(mkdtempSync(join(tmpdir(), 'ugro-tok-')), 'token');
    writeFileSync(f, 'from-a-file-0123456789\n');
    expect(readToken(undefined, f)).toBe('from-a-file-0123456789');
    expect(() => readToken('x', f)).toThrow(UsageError);
    expect(
      () =>
        new Observability({
          cluster: CLUSTER,
          runtime: {} as never,
          log: memoryLogger(),
          http: '0.0.0.0:0',
          healthEveryMs: 1,
        }),
    ).toThrow(/needs a token/);
  });

  it('with a token, a request without it gets 401; Bearer or the cookie from ?token= get through', async () => {
    const token = 'tok-0123456789abcdef';
    const r = await rig({ http: '127.0.0.1:0', token });
    const base = r.obs.url!;
    expect((await fetch(base)).status).toBe(401);
    expect((await fetch(`${base}metrics`)).status).toBe(401);
    expect((await fetch(`${base}metrics`, { headers: { authorization: 'Bearer wrong-token-000000' } })).status).toBe(
      401,
    );
    expect((await fetch(`${base}metrics`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    const once = await fetch(`${base}?token=${token}`, { redirect: 'manual' });
    expect(once.status).toBe(303);
    expect(once.headers.get('location')).toBe('/');
    const cookie = once.headers.get('set-cookie')!.split(';')[0];
    expect((await fetch(base, { headers: { cookie } })).status).toBe(200);
  });

  it('pages, /metrics and a live stream from the same view the status files are written from', async () => {
    const r = await rig({ http: '127.0.0.1:0' });
    const base = r.obs.url!;
    r.write('web', { ...CMD, nodes: 1, args: ['<script>alert(1)</script>'] });
    await r.pass('web');
    const d = r.dirOf('web');
    const host = r.obs.view.status('web')!.nodes[0].host;
    r.fake.startRanks(host, d, 1);
    for (let s = 1; s <= 5; s++)
      r.fake.writeMetrics(host, d, {
        step: s * 10,
        total_steps: 100,
        loss: 1 / s,
        samples_per_s: 50,
        time: T0 / 1000 + s,
      });
    r.fake.appendLog(host, d, 0, 'hello\n<script>alert(1)</script>\n');
    await r.pass('web');
    expect(r.obs.view.status('web')).toMatchObject({ phase: 'Running', progress: { step: 50 } });
    // The SSE stream: the jobs page hears the phase change.
    const ac = new AbortController();
    cleanups.push(() => ac.abort());
    const res = await fetch(`${base}api/stream`, { signal: ac.signal });
    const reader = res.body!.getReader();
    const heard: string[] = [];
    const reading = (async () => {
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done) return;
        heard.push(dec.decode(value));
        if (heard.join('').includes('"phase":"Succeeded"')) return;
      }
    })();
    const page = await (await fetch(`${base}jobs/web`)).text();
    expect(page).toContain('data-points="5"');
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page).not.toContain('<script>alert(1)');
    const jobsPage = await (await fetch(base)).text();
    expect(jobsPage).toContain('data-job="web"');
    expect(jobsPage).toContain('50% (50/100)');
    const metrics = await (await fetch(`${base}metrics`)).text();
    expect(metrics).toContain('ugro_job_step{job="web"} 50');
    expect(metrics).toContain('ugro_job_phase{job="web",phase="Running"} 1');
    expect(metrics).toContain('ugro_job_phase{job="web",phase="Failed"} 0');
    expect(metrics).toMatch(/ugro_reconcile_duration_seconds_count \d+/);
    expect(metrics).toContain('ugro_queue_depth');
    expect(metrics).not.toMatch(/web-[0-9a-f]{8}-a1/); // never a run id
    r.fake.endRun(host, d, 0);
    await r.pass('web');
    await reading;
    expect(heard.join('')).toMatch(/event: job\ndata: \{"name":"web","phase":"Succeeded"/);
    const loss = await (await fetch(`${base}api/jobs/web/loss`)).json();
    expect(loss).toEqual([{ attempt: 1, steps: [10, 20, 30, 40, 50], loss: [1, 0.5, 1 / 3, 0.25, 0.2] }]);
    expect((await fetch(`${base}jobs/nope`)).status).toBe(404);
    expect((await fetch(`${base}jobs/..%2Fx`)).status).toBe(404);
    expect((await fetch(base, { method: 'POST' })).status).toBe(405);
    const js = await fetch(`${base}assets/dashboard.js`);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${base}assets/uPlot.iife.min.js`)).status).toBe(200);
    expect(js.headers.get('content-security-policy')).toContain("script-src 'self'");
  });
});

describe('ugro results --plot', () => {
  it("writes every attempt's loss curve as SVG, read from rank 0 metrics on its host, the restart marked", async () => {
    const r = await rig();
    r.write('plot', { ...CMD, nodes: 1, restartPolicy: { maxRestarts: 1, backoffSeconds: 1 } });
    await r.pass('plot');
    const d1 = r.dirOf('plot');
    const h1 = r.obs.view.status('plot')!.nodes[0].host;
    r.fake.startRanks(h1, d1, 1);
    for (const s of [10, 20, 30]) r.fake.writeMetrics(h1, d1, { step: s, total_steps: 60, loss: 3 / s });
    r.fake.writeMetrics(h1, d1, 'not json');
    r.fake.endRank(h1, d1, 0, 1);
    r.fake.endRun(h1, d1, 1);
    await r.pass('plot');
    r.clock.ms += 5000;
    await r.pass('plot');
    const d2 = r.dirOf('plot');
    const h2 = r.obs.view.status('plot')!.nodes[0].host;
    r.fake.startRanks(h2, d2, 1);
    for (const s of [30, 40, 50, 60]) r.fake.writeMetrics(h2, d2, { step: s, total_steps: 60, loss: 2 / s });
    r.fake.endRun(h2, d2, 0);
    await r.pass('plot');
    const file = join(mkdtempSync(join(tmpdir(), 'ugro-plot-')), 'loss.svg');
    const res = await writeLossPlot(new SshBackend(r.fake), CLUSTER, 'plot', r.obs.view.status('plot')!, file);
    expect(res).toEqual({ points: 7, attempts: 2, unreachable: [] });
    const svg = readFileSync(file, 'utf8');
    expect(svg).toContain('data-attempt="1" data-points="3"');
    expect(svg).toContain('data-attempt="2" data-points="4"');
    expect(svg).toContain('restart: attempt 2');
    expect(svg).toContain('plot: loss by step');
  });
});
