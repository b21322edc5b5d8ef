/**
 * Wiring of what the controller shows: the view it feeds (DashboardView), GPU telemetry,
 * metrics history, /metrics, notifications and the HTTP server, for `ugro controller`. Checks
 * the exposure (a non-loopback address needs a token) before anything starts.
 */
import { readFileSync } from 'node:fs';
import type { Cluster } from '../../config/cluster.ts';
import { UsageError } from '../../config/errors.ts';
import type { LogReader, MetricsReader } from '../backends/api.ts';
import type { Logger } from '../base/log.ts';
import { MetricsHistory } from './history.ts';
import { ControllerMetrics } from './metrics.ts';
import { Notifier, type NotifierOptions, redactUrl } from './notify.ts';
import type { ObservedController } from './observer.ts';
import { Telemetry } from './telemetry.ts';
import { DashboardView } from './view.ts';
import { checkExposure, DEFAULT_HTTP, parseListen, WebServer } from './web/server.ts';

export interface ObservabilityOptions {
  cluster: Cluster;
  runtime: LogReader & MetricsReader;
  log: Logger;
  /** `HOST:PORT`, or `off` (default 127.0.0.1:8686). */
  http?: string;
  token?: string;
  /** The health cadence (telemetry samples come with it). */
  healthEveryMs: number;
  now?: () => number;
  /** Overrides for the notifier (tests: post, timers). */
  notifier?: Partial<NotifierOptions>;
}

/** The token from `--http-token` or `--http-token-file` (one of them), trimmed. */
export function readToken(flag?: string, file?: string): string | undefined {
  if (flag !== undefined && file !== undefined)
    throw new UsageError('give --http-token or --http-token-file, not both');
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`--http-token-file ${file}: ${(e as Error).message}`);
    }
    const t = text.trim();
    if (!t || /\s/.test(t)) throw new UsageError(`--http-token-file ${file}: must hold one token (no spaces)`);
    return t;
  }
  return flag;
}

export class Observability {
  readonly view: DashboardView;
  readonly metrics: ControllerMetrics;
  readonly notifier?: Notifier;
  private server?: WebServer;
  private readonly listen?: { host: string; port: number };
  url?: string;

  constructor(private readonly o: ObservabilityOptions) {
    const http = o.http ?? DEFAULT_HTTP;
    if (http !== 'off') {
      this.listen = parseListen(http);
      checkExposure(this.listen.host, o.token);
    }
    const hook = o.cluster.raw.webhook;
    if (hook?.url) {
      this.notifier = new Notifier({
        url: hook.url,
        ...(hook.secret ? { secret: hook.secret } : {}),
        ...(hook.timeout_seconds !== undefined ? { timeoutMs: hook.timeout_seconds * 1000 } : {}),
        ...(hook.retries !== undefined ? { retries: hook.retries } : {}),
        log: o.log,
        ...o.notifier,
      });
    }
    const n = this.notifier;
    this.view = new DashboardView({
      cluster: o.cluster,
      ...(o.now ? { now: o.now } : {}),
      telemetry: new Telemetry({ everyMs: o.healthEveryMs }),
      history: new MetricsHistory(o.runtime, o.cluster.hosts),
      ...(n ? { notify: (x) => n.send(x) } : {}),
    });
    this.metrics = new ControllerMetrics(this.view, n ? { notifications: () => n.stats } : {});
  }

  /** Once the controller exists: its run parts (loss curves) and queue depth. */
  attach(ctl: ObservedController): void {
    this.view.partsOf = (job) => ctl.partsOf(job);
    this.view.queueDepth = () => ctl.queueDepth();
  }

  /** After the controller started: serve. A port in use is logged, not fatal (the controller runs on). */
  async start(ctl: ObservedController): Promise<void> {
    this.view.seedEvents(await ctl.store.readEvents(undefined, 500).catch(() => []));
    if (this.notifier) this.o.log.info('notifications on', { url: redactUrl(this.o.cluster.raw.webhook?.url ?? '') });
    if (!this.listen) return;
    const server = new WebServer({
      view: this.view,
      metrics: this.metrics,
      store: ctl.store,
      hosts: this.o.cluster.hosts,
      runtime: this.o.runtime,
      cluster: this.o.cluster.name,
      log: this.o.log,
      ...(this.o.cluster.raw.users?.logs === 'private' ? { privateLogs: true } : {}),
      ...(this.o.token ? { token: this.o.token } : {}),
      ...(this.o.now ? { now: this.o.now } : {}),
    });
    try {
      const a = await server.start(this.listen.host, this.listen.port);
      this.server = server;
      this.url = a.url;
      this.o.log.info('dashboard and /metrics served', { url: a.url, token: !!this.o.token });
    } catch (e) {
      this.o.log.error('dashboard not served', {
        listen: `${this.listen.host}:${this.listen.port}`,
        error: (e as Error).message,
      });
    }
  }

  async stop(): Promise<void> {
    this.notifier?.stop();
    await this.server?.stop();
  }
}
