/**
 * `ugro sync`, the controller's side: watch jobs/.ugro/git/sync-request and answer each new id with
 * a sync, the answer written into state.json at once (request.ts is the CLI's side).
 */
import { type FSWatcher, watch } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../base/log.ts';
import type { SyncOutcome } from './apply.ts';
import { readRawFile } from './manifest.ts';

export interface SyncRequestsOptions {
  stateDir: string;
  log: Logger;
  now: () => Date;
  syncNow: () => Promise<SyncOutcome>;
  /** Write state.json (`force`: even if only the request changed). */
  writeState: (force: boolean) => Promise<void>;
}

export class SyncRequests {
  private watcher?: FSWatcher;
  private handledRequest?: string;
  /** The last request answered (state.json's `request`). */
  lastRequest?: { id: string; ok: boolean; message: string; revision?: string; at: string };

  constructor(private readonly o: SyncRequestsOptions) {}

  watch(): void {
    try {
      this.watcher = watch(this.o.stateDir, { persistent: false }, (_ev, file) => {
        if (!file || file.toString() === 'sync-request') void this.check();
      });
      this.watcher.on('error', () => undefined);
    } catch (e) {
      this.o.log.warn('git source: cannot watch for sync requests; they are answered at the next fetch', {
        error: (e as Error).message,
      });
    }
  }

  async check(): Promise<void> {
    const r = await readRawFile(join(this.o.stateDir, 'sync-request'), undefined, 256);
    if (r === 'missing' || r === 'unchanged' || 'error' in r) return;
    const id = r.bytes.toString('utf8').trim();
    if (!/^[A-Za-z0-9-]{1,64}$/.test(id) || id === this.handledRequest) return;
    this.handledRequest = id;
    const t0 = Date.now();
    const out = await this.o.syncNow();
    this.lastRequest = {
      id,
      ok: out.ok,
      message: out.message,
      ...(out.revision ? { revision: out.revision } : {}),
      at: this.o.now().toISOString(),
    };
    await this.o.writeState(true);
    this.o.log.info('git source: answered a sync request', { id, ok: out.ok, ms: Date.now() - t0 });
  }

  close(): void {
    this.watcher?.close();
  }
}
