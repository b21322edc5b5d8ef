/**
 * Stops one run on its hosts (SIGTERM, the grace, SIGKILL) and notes what each host shows after:
 * for a stop action, a preemption, and the parts of a launch that failed elsewhere.
 */
import type { StopAction } from '../core/types.ts';
import type { LoopContext } from './context.ts';

export async function stopRun(ctx: LoopContext, job: string, a: StopAction): Promise<void> {
  ctx.log.info('stopping run', {
    job,
    run: a.runId,
    hosts: a.hosts,
    graceSeconds: a.graceSeconds,
    reason: a.reason,
  });
  await Promise.all(
    a.hosts.map(async (hn) => {
      const h = ctx.host(hn);
      if (!h) return;
      try {
        const r = await ctx.runtime.stop(h, {
          dir: a.dir,
          runId: a.runId,
          graceSeconds: a.graceSeconds,
          reason: a.reason,
        });
        if (r.remaining)
          ctx.log.error('processes of the run survived SIGKILL', {
            job,
            host: hn,
            run: a.runId,
            remaining: r.remaining,
          });
        const { parts } = await ctx.runtime.observe(h, job);
        ctx.hostsState.set(hn, parts, job);
      } catch (e) {
        // The host may be gone; the next reconcile observes again and retries the stop.
        ctx.log.warn('cannot stop run part', { job, host: hn, run: a.runId, error: (e as Error).message });
      }
    }),
  );
}
