/**
 * The dashboard's live streams (Server-Sent Events, /api/stream): every job's row, node cards and
 * events for the jobs page; for a job page, its row and status, its loss curve as it grows and a
 * rank's log that follows (an SSH channel to the rank's host). Bounded (limits.ts): streams and log
 * follows in all and per viewer (a client address); a stream whose viewer does not read (bytes
 * piling up past maxBufferedBytes, or none taken for a whole ping interval) is closed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Host } from '../../../config/cluster.ts';
import type { LogReader } from '../../backends/api.ts';
import type { Logger } from '../../base/log.ts';
import { isJobName } from '../../store/store.ts';
import type { AttemptSeries } from '../history.ts';
import type { DashboardView, ViewChange } from '../view.ts';
import { cleanLogLine } from './escape.ts';
import { chartColumns, chartSeries } from './html.ts';
import { DEFAULT_CAPS, type Slot, type StreamCaps, StreamLimits } from './limits.ts';

export interface StreamHubOptions {
  view: DashboardView;
  runtime: Pick<LogReader, 'followLog'>;
  /** Host and run dir of a global rank in the job's current run. */
  rankLocation: (job: string, rank: number) => { host: Host; dir: string } | undefined;
  /** Headers every answer carries (CSP and the like). */
  headers: Record<string, string>;
  log?: Logger;
  caps?: Partial<StreamCaps>;
  /** Keep-alive comments on idle streams, and the check that the viewer reads (default 15 s). */
  pingEveryMs?: number;
  /** How often a job page's loss curve is read on (default 2 s). */
  lossEveryMs?: number;
  /** Bytes a stream may hold for a viewer that does not read before it is closed (default 1 MiB). */
  maxBufferedBytes?: number;
  /** users.logs: private: no log follows (the dashboard knows no viewer's account). */
  logsPrivate?: boolean;
}

export class StreamHub {
  readonly limits: StreamLimits;
  private readonly open = new Set<ServerResponse>();

  constructor(private readonly o: StreamHubOptions) {
    this.limits = new StreamLimits({ ...DEFAULT_CAPS, ...o.caps });
  }

  /** Streams and log follows open now. */
  stats(): { streams: number; follows: number } {
    return this.limits.counts();
  }

  closeAll(): void {
    for (const s of this.open) s.end();
    this.open.clear();
  }

  /** Answer one /api/stream request from `viewer` (its address). */
  serve(req: IncomingMessage, res: ServerResponse, url: URL, viewer: string): void {
    const { view } = this.o;
    const job = url.searchParams.get('job') ?? undefined;
    if (job !== undefined && (!isJobName(job) || !view.status(job))) {
      this.refuse(res, 404, 'no such job');
      return;
    }
    const slot = this.limits.takeStream(viewer);
    if (!slot.ok) {
      this.refuse(res, slot.status, slot.message);
      return;
    }
    res.writeHead(200, {
      ...this.o.headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.open.add(res);
    const cleanups: (() => void)[] = [slot.release];
    const close = () => {
      for (const c of cleanups.splice(0)) c();
      this.open.delete(res);
    };
    req.on('close', close);
    res.on('close', close);
    const maxBuffered = this.o.maxBufferedBytes ?? 1_048_576;
    const drop = (why: string) => {
      this.o.log?.warn('live stream closed: its viewer does not read', { viewer, job, why });
      res.destroy();
    };
    const write = (chunk: string) => {
      if (res.writableEnded || res.destroyed) return;
      res.write(chunk);
      if (res.writableLength > maxBuffered) drop(`${res.writableLength} bytes waiting`);
    };
    const sendEv = (event: string, data: unknown) => write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    write('retry: 2000\n\n');
    // Bytes the socket has handed on: when some wait and none went for a whole interval, nobody reads.
    const flushed = () => (res.socket ? res.socket.bytesWritten - res.socket.writableLength : 0);
    let lastFlushed = -1;
    const ping = setInterval(() => {
      const now = flushed();
      if (res.writableLength > 0 && now === lastFlushed) return drop('nothing read for a ping interval');
      lastFlushed = now;
      write(': ping\n\n');
    }, this.o.pingEveryMs ?? 15_000);
    ping.unref();
    cleanups.push(() => clearInterval(ping));
    let nodesPending = false;
    let followRun = () => {};
    cleanups.push(
      view.subscribe((c: ViewChange) => {
        if (c.type === 'job' && (!job || c.name === job)) {
          const row = view.row(c.name);
          if (row) sendEv('job', job ? { row, status: view.status(c.name) } : row);
          if (job) followRun();
        } else if (c.type === 'removed' && (!job || c.name === job)) sendEv('removed', { name: c.name });
        else if (c.type === 'event' && (!job || c.event.job === job)) sendEv('event', c.event);
        else if (c.type === 'nodes' && !job && !nodesPending) {
          // A health round reports hosts one by one: one message for the round.
          nodesPending = true;
          setImmediate(() => {
            nodesPending = false;
            sendEv('nodes', view.nodes());
          });
        }
      }),
    );
    if (!job) return;
    this.lossUpdates(job, url, sendEv, cleanups);
    followRun = this.logFollower(job, url, viewer, sendEv, cleanups);
    followRun();
  }

  private refuse(res: ServerResponse, status: number, message: string): void {
    res.writeHead(status, {
      ...this.o.headers,
      'content-type': 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      ...(status === 429 || status === 503 ? { 'retry-after': '10' } : {}),
    });
    res.end(`${message}\n`);
  }

  /** A job page's loss curve: what is new since what the page has (`have`), read on every few seconds. */
  private lossUpdates(job: string, url: URL, sendEv: (e: string, d: unknown) => void, cleanups: (() => void)[]) {
    // Per attempt, how many points the page has (AttemptSeries.total counts the same way).
    const sent = new Map<number, number>();
    for (const pair of (url.searchParams.get('have') ?? '').split(',')) {
      const [a, n] = pair.split(':').map(Number);
      if (Number.isSafeInteger(a) && Number.isSafeInteger(n) && n >= 0) sent.set(a, n);
    }
    const push = async () => {
      const series = await this.o.view.refreshLoss(job).catch(() => [] as AttemptSeries[]);
      for (const a of series) {
        const from = sent.get(a.attempt) ?? 0;
        if (a.total <= from) continue;
        sent.set(a.attempt, a.total);
        // The points from `from` on (those the history thinned away are gone: the page gets what is held).
        let lo = 0;
        for (let hi = a.points.length; lo < hi; ) {
          const mid = (lo + hi) >> 1;
          if (a.points[mid].n < from) lo = mid + 1;
          else hi = mid;
        }
        const fresh = { attempt: a.attempt, points: a.points.slice(lo), total: a.total };
        sendEv('loss', { ...chartSeries(fresh, chartColumns(series.length)), from });
      }
    };
    const timer = setInterval(() => void push(), this.o.lossEveryMs ?? 2000);
    timer.unref();
    cleanups.push(() => clearInterval(timer));
    void push();
  }

  /** A rank's log that follows the job's current run (again from the start when the run changes). */
  private logFollower(
    job: string,
    url: URL,
    viewer: string,
    sendEv: (e: string, d: unknown) => void,
    cleanups: (() => void)[],
  ): () => void {
    const rank = Number(url.searchParams.get('rank') ?? '0');
    const fromParam = Number(url.searchParams.get('from') ?? '');
    let offset = Number.isSafeInteger(fromParam) && fromParam >= 0 ? fromParam : 0;
    const initialRun = url.searchParams.get('run') ?? undefined;
    let followed: string | undefined;
    let abort: AbortController | undefined;
    let slot: Slot | undefined;
    const stopFollow = () => {
      abort?.abort();
      if (slot?.ok) slot.release();
      slot = undefined;
    };
    cleanups.push(stopFollow);
    return () => {
      if (!Number.isSafeInteger(rank) || rank < 0) return;
      const runId = this.o.view.status(job)?.runId;
      if (!runId || runId === followed) return;
      if (this.o.logsPrivate) {
        followed = runId;
        sendEv('log-error', { message: 'logs are private here (users.logs): `ugro logs` as its owner or an admin' });
        return;
      }
      const loc = this.o.rankLocation(job, rank);
      if (!loc) return;
      if (followed !== undefined || (initialRun && initialRun !== runId)) {
        offset = 0;
        sendEv('log-reset', { runId });
      }
      followed = runId;
      stopFollow();
      const mine = this.limits.takeFollow(viewer);
      if (!mine.ok) {
        sendEv('log-error', { message: `the log does not follow: ${mine.message}` });
        return;
      }
      slot = mine;
      const ac = new AbortController();
      abort = ac;
      void this.follow(loc, rank, offset, ac, sendEv).then(() => {
        if (abort === ac) stopFollow();
      });
    };
  }

  /** Follow until aborted or the log ends (reconnecting a few times when the channel drops). */
  private async follow(
    loc: { host: Host; dir: string },
    rank: number,
    from: number,
    ac: AbortController,
    sendEv: (e: string, d: unknown) => void,
  ): Promise<void> {
    let offset = from;
    let partial = '';
    for (let tries = 0; tries < 30 && !ac.signal.aborted; tries++) {
      let got = 0;
      try {
        const onData = (b: Buffer) => {
          got += b.length;
          const lines = (partial + b.toString('utf8')).split('\n');
          partial = lines.pop() ?? '';
          if (lines.length) sendEv('log', { lines: lines.map(cleanLogLine) });
        };
        offset = await this.o.runtime.followLog(loc.host, loc.dir, rank, offset, onData, ac.signal);
        break;
      } catch {
        // The connection dropped (or the log is not there yet): on from what came, shortly.
        offset += got;
        await new Promise((r) => setTimeout(r, 1000).unref());
      }
    }
    if (partial && !ac.signal.aborted) sendEv('log', { lines: [cleanLogLine(partial)] });
  }
}
