/** `ugro controller [--grace S] [--resync S]`: run the reconciler on the jobs directory until SIGTERM. */
import type { Command } from 'commander';
import { intFlag, secondsFlag } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('controller')
    .description(
      'run the controller: reconcile jobs/ into torchrun ranks on the hosts ' +
        '(SIGTERM stops it; training keeps running and is re-adopted on the next start)',
    )
    .option('--grace <seconds>', 'grace period before SIGKILL when stopping a run', '30')
    .option('--resync <seconds>', 'full resync period (1..86400)', '60')
    .action(async (o: { grace: string; resync: string }) => {
      const { MAX_GRACE_SECONDS } = await import('../../api/control.ts');
      const graceSeconds = secondsFlag('--grace', o.grace, MAX_GRACE_SECONDS);
      const resyncSeconds = intFlag('--resync', o.resync, 1, 86_400);
      const [{ Controller }, { jsonLogger }, cluster, runtime] = await Promise.all([
        import('../../runtime/controller.ts'),
        import('../../runtime/log.ts'),
        ctx.loadCluster(),
        ctx.runtime(),
      ]);
      const ctl = new Controller({
        cluster,
        jobsDir: ctx.jobsDir,
        runtime,
        log: jsonLogger(),
        graceSeconds,
        resyncMs: resyncSeconds * 1000,
      });
      await ctl.start();
      await new Promise<void>((stop) => {
        process.once('SIGTERM', () => stop());
        process.once('SIGINT', () => stop());
      });
      await ctl.stop();
    });
}
