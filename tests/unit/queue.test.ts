/**
 * WorkQueue: one reconcile at a time per key, repeated enqueues coalesced, delayed requeues
 * (earliest wins), capped exponential backoff on errors. Fake timers: no real waiting.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type Outcome, WorkQueue } from '../../controller/loop/queue.ts';

/** A handler whose calls stay pending until the test finishes them. */
function controlled() {
  const calls: { key: string; at: number; finish: (o?: Outcome) => void; fail: (e: Error) => void }[] = [];
  const inFlight = new Map<string, number>();
  let overlap = false;
  const handler = (key: string) =>
    new Promise<Outcome>((resolve, reject) => {
      const n = (inFlight.get(key) ?? 0) + 1;
      if (n > 1) overlap = true;
      inFlight.set(key, n);
      const done = () => inFlight.set(key, (inFlight.get(key) ?? 1) - 1);
      calls.push({
        key,
        at: Date.now(),
        finish: (o) => {
          done();
          resolve(o);
        },
        fail: (e) => {
          done();
          reject(e);
        },
      });
    });
  return { handler, calls, overlapped: () => overlap };
}
/** Let settled promises run their continuations (no time passes). */
const flush = () => vi.advanceTimersByTimeAsync(0);

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-03-01T10:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('WorkQueue', () => {
  it('one run at a time per key; enqueues while it runs coalesce into exactly one rerun', async () => {
    const h = controlled();
    const q = new WorkQueue(h.handler);
    q.add('a');
    q.add('a');
    q.add('a');
    expect(h.calls.map((c) => c.key)).toEqual(['a']);
    h.calls[0].finish();
    await flush();
    expect(h.calls.map((c) => c.key)).toEqual(['a', 'a']);
    h.calls[1].finish();
    await flush();
    expect(h.calls).toHaveLength(2);
    expect(h.overlapped()).toBe(false);
    await q.idle();
  });

  it('different keys run in parallel up to the concurrency limit; waiting keys coalesce', async () => {
    const h = controlled();
    const q = new WorkQueue(h.handler, { concurrency: 2 });
    for (const k of ['a', 'b', 'c', 'c', 'd', 'c']) q.add(k);
    expect(h.calls.map((c) => c.key)).toEqual(['a', 'b']);
    h.calls[0].finish();
    await flush();
    expect(h.calls.map((c) => c.key)).toEqual(['a', 'b', 'c']);
    h.calls[1].finish();
    h.calls[2].finish();
    await flush();
    expect(h.calls.map((c) => c.key)).toEqual(['a', 'b', 'c', 'd']);
    h.calls[3].finish();
    await flush();
    expect(h.calls).toHaveLength(4);
  });

  it('requeueAfterMs runs the key again after that delay, not before', async () => {
    const h = controlled();
    const q = new WorkQueue(h.handler);
    q.add('a');
    h.calls[0].finish({ requeueAfterMs: 1000 });
    await vi.advanceTimersByTimeAsync(999);
    expect(h.calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.calls).toHaveLength(2);
    h.calls[1].finish();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.calls).toHaveLength(2);
  });

  it('delayed adds: the earliest wake-up wins, and it runs once', async () => {
    const h = controlled();
    const q = new WorkQueue(h.handler);
    q.add('a', 5000);
    q.add('a', 1000);
    q.add('a', 3000);
    await vi.advanceTimersByTimeAsync(1000);
    expect(h.calls.map((c) => c.at - Date.parse('2026-03-01T10:00:00Z'))).toEqual([1000]);
    h.calls[0].finish();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.calls).toHaveLength(1);
  });

  it('errors back off exponentially, capped, and reported to onError; success resets the backoff', async () => {
    const t0 = Date.now();
    const at: number[] = [];
    let failing = true;
    const errors: [string, string, number][] = [];
    const q = new WorkQueue(
      async (key) => {
        at.push(Date.now() - t0);
        if (failing) throw new Error(`boom ${key} ${at.length}`);
      },
      { baseBackoffMs: 100, maxBackoffMs: 400, onError: (k, e, ms) => errors.push([k, (e as Error).message, ms]) },
    );
    q.add('a');
    await vi.advanceTimersByTimeAsync(1100);
    expect(at).toEqual([0, 100, 300, 700, 1100]);
    expect(errors.map((e) => e[2])).toEqual([100, 200, 400, 400, 400]);
    expect(errors[0]).toEqual(['a', 'boom a 1', 100]);
    // One success: no more retries, and the next failure starts from the base again.
    failing = false;
    await vi.advanceTimersByTimeAsync(400);
    expect(at).toHaveLength(6);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(at).toHaveLength(6);
    failing = true;
    q.add('a');
    await flush();
    expect(errors.at(-1)![2]).toBe(100);
    q.stop();
  });

  it('an error on one key does not delay another', async () => {
    const h = controlled();
    const q = new WorkQueue(h.handler, { baseBackoffMs: 1000 });
    q.add('a');
    q.add('b');
    h.calls[0].fail(new Error('x'));
    h.calls[1].finish();
    await flush();
    q.add('b');
    expect(h.calls.map((c) => c.key)).toEqual(['a', 'b', 'b']);
    q.stop();
  });

  it(
    'stop(): pending wake-ups are cancelled and later adds ignored; ' + 'the run in flight finishes; idle() resolves',
    async () => {
      const h = controlled();
      const q = new WorkQueue(h.handler);
      q.add('a');
      q.add('b', 1000);
      let idle = false;
      void q.idle().then(() => (idle = true));
      q.stop();
      q.add('c');
      await flush();
      expect(idle).toBe(false);
      h.calls[0].finish({ requeueAfterMs: 10 });
      await vi.advanceTimersByTimeAsync(5000);
      expect(idle).toBe(true);
      expect(h.calls.map((c) => c.key)).toEqual(['a']);
    },
  );

  it('idle() resolves at once when nothing is queued', async () => {
    const q = new WorkQueue(async () => {});
    await expect(q.idle()).resolves.toBeUndefined();
  });
});
