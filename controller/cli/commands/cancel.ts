/**
 * `ugro cancel NAME [--grace S] [--wait]`: ask the controller to stop the job's run and keep its
 * status (phase Cancelled). The request names the spec version it is for (its hash), so it never
 * reaches a later edit of the job.
 */
import type { Command } from 'commander';
import { requireJobName, secondsFlag } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('cancel')
    .description("stop a job's run and keep its status (phase Cancelled)")
    .argument('<name>')
    .option('--grace <seconds>', 'seconds between SIGTERM and SIGKILL (0..3600; default: the controller --grace)')
    .option('--wait', 'wait until the run is stopped on every host')
    .action(async (raw: string, o: { grace?: string; wait?: boolean }) => {
      const name = requireJobName(raw);
      const [{ MAX_GRACE_SECONDS }, { TERMINAL_PHASES }, jobs] = await Promise.all([
        import('../../api/control.ts'),
        import('../../api/status.ts'),
        import('../jobs.ts'),
      ]);
      const grace = o.grace === undefined ? undefined : secondsFlag('--grace', o.grace, MAX_GRACE_SECONDS);
      const store = jobs.openStore(ctx);
      const { status, specFile } = await jobs.requireJob(store, name);
      // Only its owner or an admin (exit 4 otherwise): the controller ignores anyone else's request anyway.
      await (await import('../authz.ts')).mayI(ctx, 'cancel', { name, status, specFile });
      if (status && TERMINAL_PHASES.includes(status.phase)) {
        ctx.io.out(`trainingjob/${name} is already ${status.phase}: nothing to cancel`);
        return;
      }
      // The version to stop: the spec as it is now; if it is invalid or gone, the version running.
      const spec = await store.readSpec(name);
      const specHash = spec.kind === 'valid' ? spec.hash : status?.specHash;
      if (!specHash || !/^[0-9a-f]{8}$/.test(specHash)) {
        ctx.io.out(`trainingjob/${name} has no valid spec and no run: nothing to cancel`);
        return;
      }
      await store.writeControl(name, {
        cancel: {
          specHash,
          requestedAt: new Date().toISOString(),
          ...(grace !== undefined ? { graceSeconds: grace } : {}),
        },
      });
      ctx.io.out(`trainingjob/${name} cancel requested (spec ${specHash})`);
      if (!o.wait) return;
      await jobs.waitForStatus(
        store,
        name,
        (st) => !!st && TERMINAL_PHASES.includes(st.phase) && !st.nodes.some((n) => n.state === 'Running'),
        { timeoutMs: ((grace ?? 30) + 60) * 1000 },
      );
      ctx.io.out(`trainingjob/${name} ${(await store.readStatus(name))?.phase ?? 'stopped'}`);
    });
}
