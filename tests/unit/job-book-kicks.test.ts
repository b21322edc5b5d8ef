/**
 * loop/jobs.ts JobBook's kicks: the sweep bench showed a new trial placed while a paused trial's
 * host was still being given back waiting 5 s (its requeue) for a host that had come free, because
 * a kick wakes only jobs whose status says Queued and a new job has none until its first reconcile
 * ends. A reconcile in flight is now noted as kicked, unless the kick came from its own change.
 */
import { describe, expect, it } from 'vitest';
import type { JobStatus } from '../../controller/api/status.ts';
import { JobBook } from '../../controller/loop/jobs.ts';
import { job } from './job-fixtures.ts';

const book = () =>
  new JobBook(
    { specMtime: async () => undefined },
    () => new Date(0),
    () => undefined,
  );

describe('JobBook kicks', () => {
  it("a reconcile in flight is kicked by another job's change or a host, not by its own", () => {
    const b = book();
    b.beginReconcile('new');
    b.beginReconcile('self');
    b.queuedToKick('self');
    expect(b.kickedSince('self')).toBe(false);
    expect(b.kickedSince('new')).toBe(true);
    b.beginReconcile('quiet');
    expect(b.kickedSince('quiet')).toBe(false);
    b.beginReconcile('host');
    b.queuedToKick();
    expect(b.kickedSince('host')).toBe(true);
    // Ended: no longer noted.
    b.queuedToKick();
    expect(b.kickedSince('host')).toBe(false);
  });

  it('waitsForHosts: Queued for hosts, not for a backoff or a dependency', async () => {
    const b = book();
    const st = (reason: string) => ({ phase: 'Queued', reason }) as unknown as JobStatus;
    await b.remember('a', job('a'), st('Unschedulable'));
    await b.remember('b', job('b'), st('BackoffRestart'));
    await b.remember('c', job('c'), st('WaitingForDependency'));
    expect(['a', 'b', 'c', 'd'].filter((n) => b.waitsForHosts(n))).toEqual(['a']);
    expect(b.queuedToKick()).toEqual(['a']);
  });
});
