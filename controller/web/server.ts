/**
 * The controller's one HTTP server, read-only: the dashboard (jobs and nodes, a page per job with
 * its loss curve, a rank's log that follows, the events), live over Server-Sent Events, and
 * Prometheus' /metrics. Fed by the DashboardView (the controller's own in-memory view), never by
 * a second source of truth. Loopback by default; any other address needs a token, and every
 * request must then carry it (Authorization: Bearer, or once as ?token= which sets a cookie).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Host } from '../../config/cluster.ts';
import { UsageError } from '../../config/errors.ts';
import type { HostRuntimeApi } from '../hosts/runtime-api.ts';
import type { ControllerMetrics } from '../metrics/prometheus.ts';
import type { Logger } from '../runtime/log.ts';
import { isJobName, type JobStore } from '../store/store.ts';
import { cleanLogLine } from './escape.ts';
import type { AttemptSeries } from './history.ts';
import { jobPage, jobsPage } from './html.ts';
import type { DashboardView, ViewChange } from './view.ts';

export const DEFAULT_HTTP = '127.0.0.1:8686';

/** `HOST:PORT` or `[V6]:PORT` -> parts; throws UsageError. */
export function parseListen(spec: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(spec.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65_535))
    throw new UsageError(`--http ${JSON.stringify(spec)}: expected HOST:PORT (e.g. ${DEFAULT_HTTP})`);
  return { host: m[1] ?? m[2], port };
}

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** A non-loopback address without a token is refused before anything starts. */
export function checkExposure(host: string, token: string | undefined): void {
  if (!isLoopback(host) && !token)
    throw new UsageError(
      `--http ${host}: serving beyond this machine needs a token (--http-token-file FILE or --http-token T); ` +
        'every request must then carry it',
    );
  if (token !== undefined && token.length < 16) throw new UsageError('the HTTP token must be at least 16 characters');
}

export interface WebServerOptions {
  view: DashboardView;
  metrics: ControllerMetrics;
  store: JobStore;
  hosts: readonly Host[];
  runtime: Pick<HostRuntimeApi, 'readLog' | 'followLog'>;
  cluster: string;
  token?: string;
  log?: Logger;
  now?: () => number;
  /** How often a job page's loss curve is read on (default 2 s). */
  lossEveryMs?: number;
  /** Keep-alive comments on idle streams (default 15 s). */
  pingEveryMs?: number;
  /** Log follows at once, over all viewers (each holds an SSH channel; default 8). */
  maxFollows?: number;
}

const ASSET_TYPES: Record<string, string> = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'uPlot.iife.min.js': 'text/javascript; charset=utf-8',
  'uPlot.min.css': 'text/css; charset=utf-8',
};

/** controller/web/assets, from the sources or from a bundle in dist/. */
function assetsDir(): string {
  const start = fileURLToPath(import.meta.url);
  for (let d = dirname(start); dirname(d) !== d; d = dirname(d)) {
    const dir = join(d, 'controller', 'web', 'assets');
    if (existsSync(join(dir, 'dashboard.js'))) return dir;
    if (existsSync(join(d, 'assets', 'dashboard.js'))) return join(d, 'assets');
  }
  throw new Error(`controller/web/assets not found above ${start}`);
}

function loadAssets(): Map<string, { body: Buffer; etag: string }> {
  const req = createRequire(import.meta.url);
  const dir = assetsDir();
  const files: Record<string, string> = {
    'dashboard.js': join(dir, 'dashboard.js'),
    'dashboard.css': join(dir, 'dashboard.css'),
    'uPlot.iife.min.js': req.resolve('uplot/dist/uPlot.iife.min.js'),
    'uPlot.min.css': req.resolve('uplot/dist/uPlot.min.css'),
  };
  const out = new Map<string, { body: Buffer; etag: string }>();
  for (const [k, f] of Object.entries(files)) {
    const body = readFileSync(f);
    out.set(k, { body, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` });
  }
  return out;
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** The run dir name of a run id (`JOB-HASH8-aN` -> `JOB.HASH8.N`). */
function runDirOfRunId(runId: string): string | undefined {
  const m = /^([a-z0-9-]+)-([0-9a-f]{8})-a(\d+)$/.exec(runId);
  return m ? `${m[1]}.${m[2]}.${m[3]}` : undefined;
}

function seriesPayload(s: readonly AttemptSeries[]) {
  return s.map((a) => ({
    attempt: a.attempt,
    steps: a.points.map((p) => p.step),
    loss: a.points.map((p) => (Number.isFinite(p.loss) ? p.loss : null)),
  }));
}

export class WebServer {
  private server?: Server;
  private assets?: Map<string, { body: Buffer; etag: string }>;
  private readonly streams = new Set<ServerResponse>();
  private follows = 0;
  private readonly now: () => number;

  constructor(private readonly o: WebServerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Listen; resolves with the address actually bound (port 0 picks one). */
  async start(host: string, port: number): Promise<{ host: string; port: number; url: string }> {
    checkExposure(host, this.o.token);
    this.assets = loadAssets();
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        this.o.log?.warn('dashboard request failed', { path: req.url?.slice(0, 200), error: (e as Error).message });
        if (!res.headersSent) this.send(res, 500, 'text/plain; charset=utf-8', 'internal error\n');
        else res.end();
      });
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const a = server.address();
    const bound = typeof a === 'object' && a ? a.port : port;
    const shown = host.includes(':') ? `[${host}]` : host;
    return { host, port: bound, url: `http://${shown}:${bound}/` };
  }

  async stop(): Promise<void> {
    for (const s of this.streams) s.end();
    this.streams.clear();
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  private authorized(req: IncomingMessage, url: URL, res: ServerResponse): boolean {
    const token = this.o.token;
    if (!token) return true;
    const same = (t: string | undefined) => {
      if (!t) return false;
      const a = createHash('sha256').update(t).digest();
      const b = createHash('sha256').update(token).digest();
      return timingSafeEqual(a, b);
    };
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ') && same(auth.slice(7).trim())) return true;
    const cookie = /(?:^|;\s*)ugro_token=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
    if (cookie && same(decodeURIComponent(cookie))) return true;
    const q = url.searchParams.get('token');
    if (q && same(q)) {
      // Once in the URL (a link), then a cookie: the token leaves the address bar and the history.
      url.searchParams.delete('token');
      res.writeHead(303, {
        ...SECURITY_HEADERS,
        'set-cookie': `ugro_token=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
        location: `${url.pathname}${url.search}`,
      });
      res.end();
      return false;
    }
    res.writeHead(401, { ...SECURITY_HEADERS, 'www-authenticate': 'Bearer', 'content-type': 'text/plain' });
    res.end('a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN once)\n');
    return false;
  }

  private send(res: ServerResponse, code: number, type: string, body: string | Buffer, extra = {}): void {
    res.writeHead(code, { ...SECURITY_HEADERS, 'content-type': type, 'cache-control': 'no-store', ...extra });
    res.end(body);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://ugro');
    if (!this.authorized(req, url, res)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      this.send(res, 405, 'text/plain', 'read-only\n', { allow: 'GET, HEAD' });
      return;
    }
    const path = url.pathname;
    const common = { cluster: this.o.cluster, nowMs: this.now() };
    if (path === '/') {
      this.send(res, 200, 'text/html; charset=utf-8', jobsPage(common, this.o.view.rows(), this.o.view.nodes()));
      return;
    }
    if (path === '/metrics') {
      this.send(res, 200, this.o.metrics.contentType, await this.o.metrics.render());
      return;
    }
    if (path === '/healthz') {
      this.send(res, 200, 'text/plain', 'ok\n');
      return;
    }
    if (path.startsWith('/assets/')) {
      const a = this.assets?.get(path.slice('/assets/'.length));
      if (!a) return this.send(res, 404, 'text/plain', 'not found\n');
      if (req.headers['if-none-match'] === a.etag) {
        res.writeHead(304, { etag: a.etag });
        res.end();
        return;
      }
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        'content-type': ASSET_TYPES[path.slice('/assets/'.length)],
        etag: a.etag,
        'cache-control': 'no-cache',
      });
      res.end(a.body);
      return;
    }
    if (path === '/api/jobs') return this.json(res, this.o.view.rows());
    if (path === '/api/nodes') return this.json(res, this.o.view.nodes());
    if (path === '/api/events') return this.json(res, this.o.view.events(undefined, 200));
    if (path === '/api/stream') return this.stream(req, res, url);
    const m = /^\/(api\/)?jobs\/([^/]+)(\/loss)?$/.exec(path);
    if (m) {
      const name = decodeURIComponent(m[2]);
      if (!isJobName(name) || !this.o.view.status(name)) return this.send(res, 404, 'text/plain', 'no such job\n');
      if (m[1] && m[3]) return this.json(res, seriesPayload(await this.o.view.refreshLoss(name)));
      if (m[1]) return this.json(res, { row: this.o.view.row(name), status: this.o.view.status(name) });
      if (m[3]) return this.send(res, 404, 'text/plain', 'not found\n');
      return this.jobPage(res, name, url);
    }
    this.send(res, 404, 'text/plain', 'not found\n');
  }

  private json(res: ServerResponse, v: unknown): void {
    this.send(res, 200, 'application/json', JSON.stringify(v));
  }

  /** Host and run dir of global rank `rank` in the job's current run. */
  private rankLocation(name: string, rank: number): { host: Host; dir: string } | undefined {
    const st = this.o.view.status(name);
    const n = st?.nodes.find((x) => x.globalRanks.includes(rank));
    const host = n && this.o.hosts.find((h) => h.name === n.host);
    const dir = st?.runId ? runDirOfRunId(st.runId) : undefined;
    return host && dir ? { host, dir } : undefined;
  }

  private async jobPage(res: ServerResponse, name: string, url: URL): Promise<void> {
    const st = this.o.view.status(name)!;
    const ranks = [...new Set(st.nodes.flatMap((n) => n.globalRanks))].sort((a, b) => a - b);
    const asked = Number(url.searchParams.get('rank') ?? ranks[0] ?? 0);
    const rank = Number.isSafeInteger(asked) && asked >= 0 ? asked : 0;
    const [series, events, log] = await Promise.all([
      this.o.view.refreshLoss(name).catch(() => []),
      this.o.store.readEvents(name, 100).catch(() => this.o.view.events(name, 100)),
      this.readLog(name, rank),
    ]);
    const html = jobPage(
      { cluster: this.o.cluster, nowMs: this.now() },
      {
        row: this.o.view.row(name)!,
        nodes: st.nodes,
        failures: st.failures ?? [],
        series,
        events,
        rank,
        ranks,
        log,
        ...(st.runId ? { runId: st.runId } : {}),
      },
    );
    this.send(res, 200, 'text/html; charset=utf-8', html);
  }

  private async readLog(name: string, rank: number): Promise<{ lines: string[]; offset: number; error?: string }> {
    const loc = this.rankLocation(name, rank);
    if (!loc) return { lines: [], offset: 0, error: `no log for rank ${rank} yet` };
    try {
      const r = await Promise.race([
        this.o.runtime.readLog(loc.host, loc.dir, rank, 200),
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no answer in 5 s')), 5000).unref()),
      ]);
      const lines = r.text.split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      return { lines: lines.map(cleanLogLine), offset: r.offset };
    } catch (e) {
      return { lines: [], offset: 0, error: `log of rank ${rank} on ${loc.host.name}: ${(e as Error).message}` };
    }
  }

  private stream(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const job = url.searchParams.get('job') ?? undefined;
    if (job !== undefined && (!isJobName(job) || !this.o.view.status(job))) {
      this.send(res, 404, 'text/plain', 'no such job\n');
      return;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    this.streams.add(res);
    const sendEv = (event: string, data: unknown) => {
      if (!res.writableEnded) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const cleanups: (() => void)[] = [];
    const close = () => {
      for (const c of cleanups.splice(0)) c();
      this.streams.delete(res);
    };
    req.on('close', close);
    res.on('close', close);
    const ping = setInterval(() => res.write(': ping\n\n'), this.o.pingEveryMs ?? 15_000);
    ping.unref();
    cleanups.push(() => clearInterval(ping));
    let nodesPending = false;
    cleanups.push(
      this.o.view.subscribe((c: ViewChange) => {
        if (c.type === 'job' && (!job || c.name === job)) {
          const row = this.o.view.row(c.name);
          if (row) sendEv('job', job ? { row, status: this.o.view.status(c.name) } : row);
          if (job) followRun();
        } else if (c.type === 'removed' && (!job || c.name === job)) sendEv('removed', { name: c.name });
        else if (c.type === 'event' && (!job || c.event.job === job)) sendEv('event', c.event);
        else if (c.type === 'nodes' && !job && !nodesPending) {
          // A health round reports hosts one by one: one message for the round.
          nodesPending = true;
          setImmediate(() => {
            nodesPending = false;
            sendEv('nodes', this.o.view.nodes());
          });
        }
      }),
    );
    if (!job) return;
    // A job page: its loss curve (read on every few seconds), and a rank's log that follows.
    const sent = new Map<number, number>();
    const pushLoss = async () => {
      const series = await this.o.view.refreshLoss(job).catch(() => [] as AttemptSeries[]);
      for (const a of series) {
        const from = sent.get(a.attempt) ?? 0;
        if (a.points.length <= from) continue;
        sent.set(a.attempt, a.points.length);
        const [s] = seriesPayload([{ ...a, points: a.points.slice(from) }]);
        sendEv('loss', { ...s, from });
      }
    };
    const lossTimer = setInterval(() => void pushLoss(), this.o.lossEveryMs ?? 2000);
    lossTimer.unref();
    cleanups.push(() => clearInterval(lossTimer));
    const fromParam = Number(url.searchParams.get('from') ?? '');
    // What the page already has (its data), so the stream sends only what is new.
    if (url.searchParams.has('have'))
      for (const pair of (url.searchParams.get('have') ?? '').split(',')) {
        const [a, n] = pair.split(':').map(Number);
        if (Number.isSafeInteger(a) && Number.isSafeInteger(n)) sent.set(a, n);
      }
    void pushLoss();
    const rank = Number(url.searchParams.get('rank') ?? '0');
    let followed: string | undefined;
    let offset = Number.isSafeInteger(fromParam) && fromParam >= 0 ? fromParam : 0;
    const initialRun = url.searchParams.get('run') ?? undefined;
    let abort: AbortController | undefined;
    cleanups.push(() => abort?.abort());
    const followRun = () => {
      if (!Number.isSafeInteger(rank) || rank < 0) return;
      const st = this.o.view.status(job);
      const runId = st?.runId;
      if (!runId || runId === followed) return;
      const loc = this.rankLocation(job, rank);
      if (!loc) return;
      if (followed !== undefined || (initialRun && initialRun !== runId)) {
        offset = 0;
        sendEv('log-reset', { runId });
      }
      followed = runId;
      if (abort) abort.abort();
      if (this.follows >= (this.o.maxFollows ?? 8)) {
        sendEv('log-error', { message: 'too many log viewers right now: reload later' });
        return;
      }
      const ac = new AbortController();
      abort = ac;
      this.follows++;
      let partial = '';
      const follow = async () => {
        try {
          for (let tries = 0; tries < 30 && !ac.signal.aborted; tries++) {
            let got = 0;
            try {
              offset = await this.o.runtime.followLog(
                loc.host,
                loc.dir,
                rank,
                offset,
                (b) => {
                  got += b.length;
                  const text = partial + b.toString('utf8');
                  const lines = text.split('\n');
                  partial = lines.pop() ?? '';
                  if (lines.length) sendEv('log', { lines: lines.map(cleanLogLine) });
                },
                ac.signal,
              );
              return;
            } catch {
              // The connection dropped (or the log is not there yet): on from what came, shortly.
              offset += got;
              await new Promise((r) => setTimeout(r, 1000).unref());
            }
          }
        } finally {
          this.follows--;
          if (partial && !ac.signal.aborted) sendEv('log', { lines: [cleanLogLine(partial)] });
        }
      };
      void follow();
    };
    followRun();
  }
}
