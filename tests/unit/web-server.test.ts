/**
 * The dashboard's HTTP server against hostile requests and viewers (issue 15), on a real local
 * socket: DNS rebinding (a Host that is not this loopback address: 421), a `?token=` redirect that
 * cannot leave the site, malformed percent-escapes (400, never 500) and random targets (no 5xx),
 * live streams and log follows bounded in all and per viewer (a client address: 127.0.0.x),
 * a viewer that does not read is dropped, and a job page with 200k loss points is served.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import type { Backend, MetricsChunk } from '../../controller/backends/api.ts';
import { MetricsHistory } from '../../controller/observability/history.ts';
import { ControllerMetrics } from '../../controller/observability/metrics.ts';
import { DashboardView } from '../../controller/observability/view.ts';
import { loopbackHostAllowed, parseHostHeader } from '../../controller/observability/web/guard.ts';
import { WebServer, type WebServerOptions } from '../../controller/observability/web/server.ts';
import type { JobStore } from '../../controller/store/store.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, run } from './job-fixtures.ts';

const T = Date.parse('2026-03-01T10:00:00Z');
const TOKEN = 'tok-0123456789abcdef';
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const status = (p: Partial<JobStatus> = {}): JobStatus => ({
  phase: 'Running',
  observedGeneration: 1,
  attempt: 1,
  nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [0], state: 'Running' }],
  createdAt: '2026-03-01T09:00:00Z',
  conditions: [],
  runId: 'j-abcdef12-a1',
  specHash: 'abcdef12',
  ...p,
});

/** A WebServer on 127.0.0.1 (a free port) over a real DashboardView holding job `j`, running. */
async function serve(o: Partial<WebServerOptions> & { points?: number } = {}) {
  const following: AbortSignal[] = [];
  const runtime = {
    readLog: async () => ({ text: 'hello\n', offset: 6 }),
    // A follow holds its channel until the stream that asked for it ends.
    followLog: (_h: unknown, _d: string, _r: number, offset: number, _on: unknown, signal: AbortSignal) => {
      following.push(signal);
      return new Promise<number>((resolve) => signal.addEventListener('abort', () => resolve(offset)));
    },
    readMetrics: async (_h: unknown, _d: string, offset: number): Promise<MetricsChunk> => {
      const n = o.points ?? 0;
      const end = Math.min(n, offset + 20_000);
      const lines = [];
      for (let s = offset; s < end; s++) lines.push({ step: s, loss: s === 12_345 ? 50 : 1 / (1 + s) });
      return { lines, next: end, size: n };
    },
  };
  const part = run('j', 'abcdef12', 1, ['gpu1'], { createdAt: new Date(T).toISOString() }).part('gpu1', {
    alive: false,
    exit: 0,
  });
  const view = new DashboardView({
    cluster: CLUSTER,
    now: () => T,
    history: new MetricsHistory(runtime as Pick<Backend, 'readMetrics'>, CLUSTER.hosts),
    partsOf: () => [part],
  });
  view.persisted('j', status(), []);
  const log = memoryLogger();
  const server = new WebServer({
    view,
    metrics: new ControllerMetrics(view),
    store: { readEvents: async () => [] } as unknown as JobStore,
    hosts: CLUSTER.hosts,
    runtime,
    cluster: 'test',
    log,
    now: () => T,
    lossEveryMs: 3_600_000,
    ...o,
  });
  const a = await server.start('127.0.0.1', 0);
  cleanups.push(() => server.stop());
  return { view, server, port: a.port, log, following };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** GET with any Host header, from any local address (a viewer); the whole answer. */
function get(
  port: number,
  path: string,
  o: { host?: string; headers?: Record<string, string>; from?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        agent: false,
        headers: { host: o.host ?? `127.0.0.1:${port}`, ...o.headers },
        ...(o.from ? { localAddress: o.from } : {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The status code of a raw request line (any bytes as its target), on its own connection. */
function rawStatus(port: number, target: string, hostHeader = `127.0.0.1:${port}`, extra = ''): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => {
      s.write(`GET ${target} HTTP/1.1\r\nHost: ${hostHeader}\r\n${extra}Connection: close\r\n\r\n`, 'latin1');
    });
    let got = '';
    s.on('data', (d) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m) {
        resolve(Number(m[1]));
        s.destroy();
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(/^HTTP\/1\.1 (\d{3})/.exec(got) ? Number(RegExp.$1) : 0));
  });
}

/** A live stream opened by viewer `from`: its status, what it has said, and a way to close it. */
function stream(port: number, query: string, from = '127.0.0.1') {
  let text = '';
  const listeners = new Set<() => void>();
  let close = () => {};
  const opened = new Promise<number>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: `/api/stream${query}`, agent: false, localAddress: from },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
          for (const l of listeners) l();
        });
        resolve(res.statusCode ?? 0);
      },
    );
    close = () => req.destroy();
    req.on('error', (e) => (e.message === 'socket hang up' ? undefined : reject(e)));
    req.end();
  });
  cleanups.push(() => close());
  return {
    opened,
    text: () => text,
    close: () => close(),
    /** Resolves once what the stream said matches `re`. */
    heard: (re: RegExp) =>
      new Promise<string>((resolve) => {
        const check = () => {
          const m = re.exec(text);
          if (m) {
            listeners.delete(check);
            resolve(m[0]);
          }
        };
        listeners.add(check);
        check();
      }),
  };
}

describe('DNS rebinding: without a token, only this loopback address is answered', () => {
  it('Host attacker.example:PORT gets 421 on every page, API, stream and /metrics; no job data', async () => {
    const { port } = await serve();
    for (const path of ['/', '/api/jobs', '/api/nodes', '/api/events', '/metrics', '/jobs/j', '/api/stream']) {
      const r = await get(port, path, { host: `attacker.example:${port}` });
      expect(r.status, path).toBe(421);
      expect(r.body).toMatch(/misdirected: this dashboard answers as http:\/\/127\.0\.0\.1:\d+\//);
      expect(r.body).not.toContain('"j"');
    }
  });

  it('localhost, 127.x.y.z and [::1] with the port are answered; other names and ports are not', async () => {
    const { port } = await serve();
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `127.9.8.7:${port}`])
      expect((await get(port, '/api/jobs', { host })).status, host).toBe(200);
    expect((await get(port, '/api/jobs', { host: `[::1]:${port}` })).status).toBe(200);
    for (const host of [
      `127.0.0.1:${port + 1}`,
      'localhost',
      '127.0.0.1',
      `localhost.attacker.example:${port}`,
      `127.0.0.1.nip.io:${port}`,
      `attacker.example:${port}@127.0.0.1`,
      `0.0.0.0:${port}`,
      `10.0.0.1:${port}`,
      `[::2]:${port}`,
      `2130706433:${port}`,
    ])
      expect((await get(port, '/api/jobs', { host })).status, host).toBe(421);
  });

  it('with a token, the token decides (its cookie never goes to another name): any Host, 401 without it', async () => {
    const { port } = await serve({ token: TOKEN });
    const host = `dashboard.example:${port}`;
    expect((await get(port, '/api/jobs', { host })).status).toBe(401);
    expect((await get(port, '/api/jobs', { host, headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });

  it('the rule, pure: names, ports, brackets, the bound address', () => {
    const b = { host: '127.0.0.1', port: 8686 };
    expect(loopbackHostAllowed('127.0.0.1:8686', b)).toBe(true);
    expect(loopbackHostAllowed('127.0.0.1:80', b)).toBe(false);
    expect(loopbackHostAllowed(undefined, b)).toBe(false);
    expect(loopbackHostAllowed('', b)).toBe(false);
    expect(loopbackHostAllowed('localhost', { host: '127.0.0.1', port: 80 })).toBe(true);
    expect(loopbackHostAllowed('[::1]:8686', { host: '::1', port: 8686 })).toBe(true);
    expect(loopbackHostAllowed('[::ffff:127.0.0.1]:8686', { host: '::ffff:127.0.0.1', port: 8686 })).toBe(true);
    expect(loopbackHostAllowed('127.0.0.1 :8686', b)).toBe(false);
    expect(parseHostHeader('Example.COM:1')).toEqual({ name: 'example.com', port: 1 });
  });
});

describe('requests that must not escape or crash', () => {
  it('?token= on /.//evil.com/x redirects to this site, never to //evil.com', async () => {
    const { port } = await serve({ token: TOKEN });
    for (const target of [
      `/.//evil.com/x?token=${TOKEN}`,
      `//evil.com/x?token=${TOKEN}`,
      `/\\evil.com/x?token=${TOKEN}`,
    ]) {
      const r = await get(port, target);
      expect(r.status, target).toBe(303);
      const loc = String(r.headers.location);
      expect(loc, target).toMatch(/^\/[^/\\]/);
      expect(new URL(loc, 'http://127.0.0.1/').host).toBe('127.0.0.1');
      expect(loc).not.toContain(TOKEN);
    }
    const keep = await get(port, `/jobs/j?rank=0&token=${TOKEN}`);
    expect(keep.headers.location).toBe('/jobs/j?rank=0');
  });

  it('a malformed percent-escape is a 400 (path and cookie), not a 500', async () => {
    const { port } = await serve();
    for (const path of ['/jobs/%E0%A4%A', '/jobs/%zz', '/api/jobs/%C3/loss', '/api/jobs/%'])
      expect((await get(port, path)).status, path).toBe(400);
    const t = await serve({ token: TOKEN });
    expect((await get(t.port, '/', { headers: { cookie: 'ugro_token=%E0%A4%A' } })).status).toBe(401);
  });

  it('fuzz: 600 random targets and Host headers, with and without a token: never a 5xx', async () => {
    const plain = await serve();
    const tok = await serve({ token: TOKEN });
    let seed = 15;
    const rnd = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    const atoms = [
      '/',
      '//',
      '/.',
      '/..',
      '%',
      '%2',
      '%zz',
      '%E0%A4%A',
      '%2F',
      '%00',
      '\\',
      '?',
      '&',
      '=',
      '#',
      'a',
      'jobs',
      'api',
      'loss',
      'stream',
      'j',
      'metrics',
      'assets',
      'dashboard.js',
      'token=',
      TOKEN,
      'rank=',
      '-1',
      '1e9',
      '%C0%AF',
      '@',
      ':',
      ';',
      '~',
      '\u00e9',
      "'",
      '"',
      '<',
      '>',
    ];
    const seen = new Map<number, number>();
    for (let i = 0; i < 600; i++) {
      let t = '/';
      for (let k = rnd(8); k >= 0; k--) t += atoms[rnd(atoms.length)];
      const server = i % 2 ? tok : plain;
      const host = rnd(10) === 0 ? ['evil', '', ':', '[', `127.0.0.1:${server.port}:1`][rnd(5)] : undefined;
      const cookie = rnd(4) === 0 ? `Cookie: ugro_token=${atoms[rnd(atoms.length)]}\r\n` : '';
      const code = await rawStatus(server.port, t, host, cookie);
      seen.set(code, (seen.get(code) ?? 0) + 1);
      expect(code, `GET ${t}`).toBeGreaterThanOrEqual(200);
      expect(code, `GET ${t}`).toBeLessThan(500);
    }
    // Beyond 404s: some of them got through to pages, some were refused as malformed.
    expect(seen.get(400)).toBeGreaterThan(0);
    expect(seen.get(200)).toBeGreaterThan(0);
  }, 60_000);
});

describe('live streams and log follows, bounded', () => {
  it("streams: 429 past one viewer's share, 503 past everyone's; a closed stream gives its slot back", async () => {
    const { server, port } = await serve({ caps: { streams: 4, streamsPerViewer: 2 } });
    const a = [stream(port, '', '127.0.0.1'), stream(port, '', '127.0.0.1')];
    expect(await Promise.all(a.map((s) => s.opened))).toEqual([200, 200]);
    const more = await get(port, '/api/stream', { from: '127.0.0.1' });
    expect(more.status).toBe(429);
    expect(more.headers['retry-after']).toBe('10');
    expect(more.body).toMatch(/this viewer \(127\.0\.0\.1\) has 2 live streams open, the most one viewer may/);
    const b = [stream(port, '', '127.0.0.2'), stream(port, '', '127.0.0.2')];
    expect(await Promise.all(b.map((s) => s.opened))).toEqual([200, 200]);
    const c = await get(port, '/api/stream', { from: '127.0.0.3' });
    expect(c.status).toBe(503);
    expect(c.body).toMatch(/serves 4 live streams already/);
    a[0].close();
    await vi.waitFor(() => expect(server.streamStats().streams).toBe(3));
    expect(await stream(port, '', '127.0.0.3').opened).toBe(200);
  });

  it('log follows: one viewer cannot take them all; a viewer past its share is told so; freed on close', async () => {
    const { server, port, following } = await serve({ caps: { follows: 3, followsPerViewer: 2 } });
    const a = [0, 1, 2].map(() => stream(port, '?job=j&rank=0', '127.0.0.1'));
    await Promise.all(a.map((s) => s.opened));
    await a[2].heard(/event: log-error\ndata: .*the most one viewer may/);
    await vi.waitFor(() => expect(following.length).toBe(2));
    expect(server.streamStats().follows).toBe(2);
    // Another viewer still gets one: the last slot.
    const b = stream(port, '?job=j&rank=0', '127.0.0.2');
    await b.opened;
    await vi.waitFor(() => expect(following.length).toBe(3));
    const c = stream(port, '?job=j&rank=0', '127.0.0.3');
    await c.opened;
    await c.heard(/event: log-error\ndata: .*log follows already, its most/);
    a[0].close();
    await vi.waitFor(() => expect(server.streamStats()).toEqual({ streams: 4, follows: 2 }));
    expect(following.filter((s) => s.aborted).length).toBe(1);
  });

  /** A viewer that opens a stream and then never reads; events are pushed until the server drops it. */
  async function unread(o: Partial<WebServerOptions>) {
    const { server, port, view, log } = await serve(o);
    const s = connect(port, '127.0.0.1');
    cleanups.push(() => {
      s.destroy();
    });
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(`GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    await new Promise<void>((r) => s.once('data', () => r()));
    s.pause();
    const big = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 2000 && server.streamStats().streams > 0; i++) {
      view.persisted('j', status(), [{ time: 't', job: 'j', type: 'Normal', reason: 'Big', message: big }]);
      await new Promise((r) => setImmediate(r));
    }
    await vi.waitFor(() => expect(server.streamStats().streams).toBe(0), { timeout: 10_000 });
    return log.lines.filter((l) => l.msg === 'live stream closed: its viewer does not read');
  }

  it('a viewer that does not read is dropped once too much waits for it', async () => {
    const why = await unread({ maxBufferedBytes: 256 * 1024 });
    expect(why[0]?.fields?.why).toMatch(/bytes waiting/);
  });

  it('a viewer that does not read for a whole ping interval is dropped', async () => {
    const why = await unread({ maxBufferedBytes: 2 ** 40, pingEveryMs: 100 });
    expect(why[0]?.fields?.why).toBe('nothing read for a ping interval');
  });
});

describe('a long run on the job page', () => {
  it('200k loss points: the page is served (200), a few thousand drawn; the stream sends them thinned', async () => {
    const { port } = await serve({ points: 200_000 });
    const page = await get(port, '/jobs/j');
    expect(page.status).toBe(200);
    expect(page.body).toContain('data-points="200000"');
    expect(page.body.length).toBeLessThan(400_000);
    const s = stream(port, '?job=j&rank=0&have=1:0');
    await s.opened;
    const ev = await s.heard(/event: loss\ndata: .*\n\n/);
    const msg = JSON.parse(ev.split('\n')[1].slice('data: '.length));
    expect(msg).toMatchObject({ attempt: 1, from: 0, total: 200_000 });
    expect(msg.steps.length).toBeLessThanOrEqual(6000);
    expect(msg.loss).toContain(50);
  });
});

describe('users.logs: private (issue 17)', () => {
  it('the job page shows no rank log and a follow gets none: the dashboard knows no viewer account', async () => {
    const open = await serve();
    expect((await get(open.port, '/jobs/j')).body).toContain('hello');
    const { port, following } = await serve({ privateLogs: true });
    const page = await get(port, '/jobs/j');
    expect(page.status).toBe(200);
    expect(page.body).not.toContain('hello');
    expect(page.body).toContain('logs are private here');
    const s = stream(port, '?job=j&rank=0');
    await s.opened;
    await s.heard(/event: log-error\ndata: .*logs are private here/);
    expect(following).toEqual([]);
    // The same stream on an open dashboard follows the log.
    const o = stream(open.port, '?job=j&rank=0');
    await o.opened;
    await vi.waitFor(() => expect(open.following.length).toBe(1));
  });
});
