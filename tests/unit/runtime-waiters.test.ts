/**
 * Waiters: one wait per live run part; when it returns, the job's reconcile is woken and the
 * part's end is logged ("run part ended": where a failure's reaction starts, timed by npm run
 * bench's recovery section); a wait that fails still wakes the job; an aborted one does neither.
 */
import { describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import type { RunPart } from '../../controller/api/run.ts';
import type { Backend } from '../../controller/backends/api.ts';
import type { Logger } from '../../controller/base/log.ts';
import { Waiters } from '../../controller/loop/waiters.ts';
import { localHost } from '../support/local-transport.ts';
import { runOf } from '../support/run-fixtures.ts';

function setup() {
  const ends = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  const runtime = {
    wait: (_h: Host, dir: string, signal: AbortSignal) =>
      new Promise<void>((resolve, reject) => {
        ends.set(dir, { resolve, reject });
        signal.addEventListener('abort', () => resolve());
      }),
  } as unknown as Backend;
  const woken: string[] = [];
  const logged: { msg: string; fields?: Record<string, unknown> }[] = [];
  const log: Logger = {
    info: (msg, fields) => logged.push({ msg, fields }),
    warn: () => undefined,
    error: () => undefined,
  };
  const w = new Waiters(runtime, (job) => woken.push(job), log);
  const host = localHost('/tmp/ugro-waiters-test', 'gpu1');
  const part = (job: string) => {
    const r = runOf('gpu1', job);
    return { dir: r.dir, host: 'gpu1', meta: r.meta } as unknown as RunPart;
  };
  const settled = () => new Promise((r) => setImmediate(r));
  return { ends, woken, logged, w, host, part, settled };
}

describe('Waiters', () => {
  it("a part's end wakes its job and is logged with the job, host and run", async () => {
    const { ends, woken, logged, w, host, part, settled } = setup();
    const p = part('train');
    w.ensure(host, p);
    w.ensure(host, p); // one wait per part
    expect(w.size).toBe(1);
    ends.get(p.dir)!.resolve();
    await settled();
    expect(woken).toEqual(['train']);
    expect(logged).toEqual([{ msg: 'run part ended', fields: { job: 'train', host: 'gpu1', run: p.meta.runId } }]);
    expect(w.size).toBe(0);
  });

  it('a wait that fails still wakes the job (reconcile looks itself), without claiming the part ended', async () => {
    const { ends, woken, logged, w, host, part, settled } = setup();
    const p = part('train');
    w.ensure(host, p);
    ends.get(p.dir)!.reject(new Error('connection lost'));
    await settled();
    expect(woken).toEqual(['train']);
    expect(logged).toEqual([]);
  });

  it('stopAll aborts the waits: no wake, no log', async () => {
    const { woken, logged, w, host, part, settled } = setup();
    w.ensure(host, part('a'));
    w.ensure(host, part('b'));
    w.stopAll();
    await settled();
    expect(woken).toEqual([]);
    expect(logged).toEqual([]);
    expect(w.size).toBe(0);
  });
});
