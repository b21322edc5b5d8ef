/**
 * The controller's one HTTP server, read-only: the dashboard (jobs and nodes, a page per job with
 * its loss curve, a rank's log that follows, the events), live over Server-Sent Events, and
 * Prometheus' /metrics. Fed by the DashboardView (the controller's own in-memory view), never by
 * a second source of truth. Loopback by default; any other address needs a token, and every
 * request must then carry it (Authorization: Bearer, or once as ?token= which sets a cookie).
 * Without a token, only requests for this loopback address's own name are answered (guard.ts:
 * DNS rebinding gets 421). Live streams and log follows are bounded (sse.ts, limits.ts).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Host } from '../../../config/cluster.ts';
import { UsageError } from '../../../config/errors.ts';
import type { LogReader } from '../../backends/api.ts';
import { assetsDir } from '../../base/install.ts';
import type { Logger } from '../../base/log.ts';
import { isJobName, type JobStore } from '../../store/store.ts';
import type { AttemptSeries } from '../history.ts';
import type { ControllerMetrics } from '../metrics.ts';
import type { DashboardView } from '../view.ts';
import { cleanLogLine } from './escape.ts';
import { decodePart, localLocation, loopbackHostAllowed, requestUrl } from './guard.ts';
import { jobPage, jobsPage } from './html.ts';
import type { StreamCaps } from './limits.ts';
import { StreamHub } from './sse.ts';
import { sweepPageOf, sweepsOf } from './sweep-routes.ts';

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
  runtime: LogReader;
  cluster: string;
  token?: string;
  log?: Logger;
  now?: () => number;
  /** How often a job page's loss curve is read on (default 2 s). */
  lossEveryMs?: number;
  /** Keep-alive comments on idle streams, and the check that their viewer reads (default 15 s). */
  pingEveryMs?: number;
  /** Live streams and log follows (each an SSH channel), in all and per viewer (limits.ts DEFAULT_CAPS). */
  caps?: Partial<StreamCaps>;
  /** Bytes a live stream may hold for a viewer that does not read before it is closed (default 1 MiB). */
  maxBufferedBytes?: number;
  /**
   * users.logs: private: the dashboard knows no viewer's account (a token is not a person), so it
   * shows no rank logs at all; owners and admins read them with `ugro logs`.
   */
  privateLogs?: boolean;
}

const ASSET_TYPES: Record<string, string> = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'uPlot.iife.min.js': 'text/javascript; charset=utf-8',
  'uPlot.min.css': 'text/css; charset=utf-8',
};

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
  private readonly hub: StreamHub;
  private readonly now: () => number;
  /** The address bound, once listening: without a token, the only Host answered (with localhost's). */
  private bound?: { host: string; port: number };

  constructor(private readonly o: WebServerOptions) {
    this.now = o.now ?? Date.now;
    this.hub = new StreamHub({
      view: o.view,
      runtime: o.runtime,
      rankLocation: (job, rank) => this.rankLocation(job, rank),
      ...(o.privateLogs ? { logsPrivate: true } : {}),
      headers: SECURITY_HEADERS,
      ...(o.log ? { log: o.log } : {}),
      ...(o.caps ? { caps: o.caps } : {}),
      ...(o.pingEveryMs !== undefined ? { pingEveryMs: o.pingEveryMs } : {}),
      ...(o.lossEveryMs !== undefined ? { lossEveryMs: o.lossEveryMs } : {}),
      ...(o.maxBufferedBytes !== undefined ? { maxBufferedBytes: o.maxBufferedBytes } : {}),
    });
  }

  /** Live streams and log follows open now. */
  streamStats(): { streams: number; follows: number } {
    return this.hub.stats();
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
    this.bound = { host, port: bound };
    const shown = host.includes(':') ? `[${host}]` : host;
    return { host, port: bound, url: `http://${shown}:${bound}/` };
  }

  async stop(): Promise<void> {
    this.hub.closeAll();
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
    if (cookie && same(decodePart(cookie))) return true;
    const q = url.searchParams.get('token');
    if (q && same(q)) {
      // Once in the URL (a link), then a cookie: the token leaves the address bar and the history.
      url.searchParams.delete('token');
      res.writeHead(303, {
        ...SECURITY_HEADERS,
        'set-cookie': `ugro_token=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
        // Never from the path as it came: `/.//evil.com/x` would send the browser to evil.com.
        location: localLocation(url),
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
    // Without a token, the name asked for is what tells this machine's browser from a page whose
    // own name was made to resolve to 127.0.0.1 (DNS rebinding). With one, the token does
    // (its cookie is SameSite=Strict and never sent to another name).
    if (!this.o.token && this.bound && !loopbackHostAllowed(req.headers.host, this.bound)) {
      const shown = this.bound.host.includes(':') ? `[${this.bound.host}]` : this.bound.host;
      const msg =
        `misdirected: this dashboard answers as http://${shown}:${this.bound.port}/ or ` +
        `http://localhost:${this.bound.port}/, not as Host ${JSON.stringify(req.headers.host?.slice(0, 100) ?? '')}`;
      return this.send(res, 421, 'text/plain; charset=utf-8', `${msg}\n`);
    }
    const url = requestUrl(req.url);
    if (!url) return this.send(res, 400, 'text/plain', 'bad request: the target must be a path\n');
    if (!this.authorized(req, url, res)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      this.send(res, 405, 'text/plain', 'read-only\n', { allow: 'GET, HEAD' });
      return;
    }
    const path = url.pathname;
    const common = { cluster: this.o.cluster, nowMs: this.now() };
    if (path === '/') {
      const rows = this.o.view.rows();
      const trials = await sweepsOf(
        this.o.store,
        rows.map((r) => r.name),
      );
      const html = jobsPage(common, rows, this.o.view.nodes(), trials);
      this.send(res, 200, 'text/html; charset=utf-8', html);
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
    if (path === '/api/stream') return this.hub.serve(req, res, url, req.socket.remoteAddress ?? '?');
    const sw = /^\/sweeps\/([^/]+)$/.exec(path);
    if (sw) {
      const name = decodePart(sw[1]);
      if (name === undefined) return this.send(res, 400, 'text/plain', 'bad request: a malformed %-escape\n');
      return this.sweepPage(res, name);
    }
    const m = /^\/(api\/)?jobs\/([^/]+)(\/loss)?$/.exec(path);
    if (m) {
      const name = decodePart(m[2]);
      if (name === undefined) return this.send(res, 400, 'text/plain', 'bad request: a malformed %-escape\n');
      if (!isJobName(name) || !this.o.view.status(name)) return this.send(res, 404, 'text/plain', 'no such job\n');
      if (m[1] && m[3]) return this.json(res, seriesPayload(await this.o.view.refreshLoss(name)));
      if (m[1]) return this.json(res, { row: this.o.view.row(name), status: this.o.view.status(name) });
      if (m[3]) return this.send(res, 404, 'text/plain', 'not found\n');
      return this.jobPage(res, name, url);
    }
    this.send(res, 404, 'text/plain', 'not found\n');
  }

  private async sweepPage(res: ServerResponse, name: string): Promise<void> {
    const html = await sweepPageOf(this.o, { cluster: this.o.cluster, nowMs: this.now() }, name);
    if (!html) return this.send(res, 404, 'text/plain', 'no such sweep\n');
    this.send(res, 200, 'text/html; charset=utf-8', html);
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
    if (this.o.privateLogs)
      return {
        lines: [],
        offset: 0,
        error: 'logs are private here (users.logs): `ugro logs` as its owner or an admin',
      };
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
}
