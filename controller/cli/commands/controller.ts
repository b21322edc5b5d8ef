/** `ugro controller [--grace S] [--resync S]`: run the reconciler on the jobs directory until SIGTERM. */
import type { Command } from 'commander';
import type { GitFlags } from '../../gitops/config.ts';
import { intFlag, secondsFlag } from '../args.ts';
import type { CliContext } from '../context.ts';
import { addGitFlags } from '../gitops-flags.ts';
import { addWebFlags, healthEveryMs, type WebFlags } from '../web-flags.ts';

export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('controller')
    .description(
      'run the controller: reconcile jobs/ into torchrun ranks on the hosts ' +
        '(SIGTERM stops it; training keeps running and is re-adopted on the next start)',
    )
    .option('--grace <seconds>', 'grace period before SIGKILL when stopping a run', '30')
    .option('--resync <seconds>', 'full resync period (1..86400)', '60')
    .action(async (o: { grace: string; resync: string } & GitFlags & WebFlags) => {
      const { MAX_GRACE_SECONDS } = await import('../../api/control.ts');
      const graceSeconds = secondsFlag('--grace', o.grace, MAX_GRACE_SECONDS);
      const resyncSeconds = intFlag('--resync', o.resync, 1, 86_400);
      const [{ Controller }, { jsonLogger }, cluster, runtime] = await Promise.all([
        import('../../loop/controller.ts'),
        import('../../base/log.ts'),
        ctx.loadCluster(),
        ctx.runtime(),
      ]);
      const log = jsonLogger();
      privateUmask();
      // The dashboard, /metrics and notifications; a non-loopback --http without a token is refused here.
      const { Observability, readToken } = await import('../../observability/wire.ts');
      const healthMs = healthEveryMs(o);
      const obs = new Observability({
        cluster,
        runtime,
        log,
        http: o.http,
        token: readToken(o.httpToken, o.httpTokenFile),
        healthEveryMs: healthMs,
      });
      // GitOps (--git, or the cluster file's gitops:): a source of job files beside people.
      const { gitSourceOptions, jobSource } = await import('../../gitops/config.ts');
      const source = jobSource(gitSourceOptions(o, cluster, ctx.jobsDir, log, ctx.env), ctx.jobsDir);
      const { PasswdAccounts } = await import('../../store/accounts.ts');
      const ctl = new Controller({
        cluster,
        jobsDir: ctx.jobsDir,
        runtime,
        log,
        source,
        graceSeconds,
        resyncMs: resyncSeconds * 1000,
        healthEveryMs: healthMs,
        observer: obs.view,
        // Owners are the accounts that write jobs/ (issue 17): named by the machine's account database.
        accounts: new PasswdAccounts(),
        // spec.preflight: `ugro doctor`'s listen/connect round on a gang's hosts, over the same SSH pool.
        preflight: async (hosts, p) => {
          const [pool, { runPreflight }, { judgePairs }] = await Promise.all([
            ctx.ssh(),
            import('../../backends/ssh/preflight.ts'),
            import('../../backends/doctor.ts'),
          ]);
          const raw = await runPreflight(hosts, { connection: (h) => pool.host(h) }, p);
          return judgePairs(raw.hosts, raw).filter((x) => x.result !== 'ok');
        },
      });
      obs.attach(ctl);
      await ctl.start();
      await obs.start(ctl);
      // `on`, not `once`: a second signal during the stop (`kill -- -PGID PID` delivers two, a
      // second Ctrl-C) would otherwise meet no handler and end node before the leases go back.
      await new Promise<void>((stop) => {
        let stopping = false;
        const onSignal = (sig: NodeJS.Signals) => {
          if (stopping) return log.info('already stopping: the signal is ignored', { signal: sig });
          stopping = true;
          stop();
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      await obs.stop();
      await ctl.stop();
    });
  addGitFlags(cmd);
  addWebFlags(cmd);
}

/**
 * Nothing the controller or its git creates is writable by group or others (jobs/.ugro must stay
 * private: store/private.ts refuses to start otherwise). umask can only take bits away.
 */
function privateUmask(): void {
  try {
    const was = process.umask(0o022);
    process.umask(was | 0o022);
  } catch {
    /* a worker thread cannot set it: the files' own modes (0644, 0755, 0700) still hold */
  }
}
