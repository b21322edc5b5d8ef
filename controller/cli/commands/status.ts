/** `ugro status`: the nodes and the jobs at a glance. */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description('nodes and jobs at a glance')
    .action(async () => {
      const [{ probeCluster }, { nodesTable }, { cacheFileFor, readJobRows }, { jobsTable }] = await Promise.all([
        import('../../backends/ssh/probe.ts'),
        import('../render/nodes.ts'),
        import('../job-list.ts'),
        import('../render/jobs.ts'),
      ]);
      const [cluster, pool] = await Promise.all([ctx.loadCluster(), ctx.ssh()]);
      const [nodes, { rows }] = await Promise.all([
        probeCluster(cluster, { connection: (h) => pool.host(h) }),
        readJobRows(ctx.jobsDir, [], cacheFileFor(ctx.env, ctx.jobsDir)),
      ]);
      const ready = nodes.filter((n) => n.status === 'Ready').length;
      ctx.io.out(`Cluster ${cluster.name}: ${ready}/${nodes.length} nodes Ready\n`);
      ctx.io.out(nodesTable(nodes));
      ctx.io.out(`\nJobs (${rows.length}):`);
      ctx.io.out(rows.length ? jobsTable(rows, false, new Date()) : 'No jobs.');
    });
}
