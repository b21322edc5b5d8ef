/** `ugro results NAME`: outcome, final metrics, and where the checkpoints and logs are. */
import type { Command } from 'commander';
import { NotFoundError } from '../../../config/errors.ts';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('results')
    .description('outcome of a job: phase, final metrics, where checkpoints and logs are')
    .argument('<name>')
    .action(async (raw: string) => {
      const name = requireJobName(raw);
      const [{ openStore }, { resultsText }, { checkpointDir }, { posix }] = await Promise.all([
        import('../jobs.ts'),
        import('../render/results.ts'),
        import('../../core/launch.ts'),
        import('node:path'),
      ]);
      const store = openStore(ctx);
      const status = await store.readStatus(name);
      if (!status) throw new NotFoundError(`no status for job ${name} in ${store.dir}`);
      const [cluster, spec] = await Promise.all([ctx.loadCluster(), store.readSpec(name)]);
      const rank0 = status.nodes.find((n) => n.globalRanks.includes(0)) ?? status.nodes[0];
      const host = cluster.hosts.find((h) => h.name === rank0?.host);
      let dir = '-';
      if (host && spec.kind === 'valid') {
        const d = checkpointDir(spec.job, host);
        dir = d.ok ? d.path : d.why;
      } else if (host) dir = posix.join(host.paths.checkpoints, name);
      ctx.io.out(resultsText({ name, status, checkpoints: { host: rank0?.host ?? '?', dir } }));
    });
}
