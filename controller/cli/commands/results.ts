/**
 * `ugro results NAME [--plot FILE.svg]`: outcome, final metrics, where checkpoints and logs are; the loss curve.
 * `ugro results sweep NAME [--plot FILE.svg]`: a sweep's trials, and every trial's curve on one chart.
 */
import type { Command } from 'commander';
import { NotFoundError } from '../../../config/errors.ts';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('results')
    .description('outcome of a job: phase, final metrics, where checkpoints and logs are')
    .argument('<name>', "a job, or `sweep NAME` for a sweep (its trials best first; --plot: every trial's curve)")
    .argument('[sweep]')
    .option('--plot <file>', 'also write the loss curve (every attempt, restarts marked) as SVG to FILE')
    .action(async (raw: string, sweepName: string | undefined, o: { plot?: string }) => {
      if (raw === 'sweep' && sweepName !== undefined) return sweepResults(ctx, requireJobName(sweepName), o.plot);
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
      const host = [...cluster.hosts, ...(cluster.slurm ? [cluster.slurm] : [])].find((h) => h.name === rank0?.host);
      let dir = '-';
      if (host && spec.kind === 'valid') {
        const d = checkpointDir(spec.job, host);
        dir = d.ok ? d.path : d.why;
      } else if (host) dir = posix.join(host.paths.checkpoints, name);
      ctx.io.out(resultsText({ name, status, checkpoints: { host: rank0?.host ?? '?', dir } }));
      if (o.plot) {
        const { writeLossPlot } = await import('../plot.ts');
        const r = await writeLossPlot(await ctx.runtime(), cluster, name, status, o.plot);
        const where = r.unreachable.length ? `; not reachable: ${r.unreachable.join(', ')}` : '';
        ctx.io.out(`Plot:          ${o.plot} (${r.points} points, ${r.attempts} attempt(s)${where})`);
      }
    });
}

/** `ugro results sweep NAME [--plot FILE]`: the sweep's trials best first; the curves of all of them. */
async function sweepResults(ctx: CliContext, name: string, plot: string | undefined): Promise<void> {
  const [{ openStore }, { readSweeps, writeSweepPlot }, { describeSweep }] = await Promise.all([
    import('../jobs.ts'),
    import('../sweeps.ts'),
    import('../render/sweeps.ts'),
  ]);
  const store = openStore(ctx);
  const [row] = await readSweeps(store, [name]);
  ctx.io.out(describeSweep(row, []).replace(/\n\nEvents:[\s\S]*$/, ''));
  if (!plot) return;
  const r = await writeSweepPlot(await ctx.runtime(), await ctx.loadCluster(), store, row, plot);
  const where = r.unreachable.length ? `; not reachable: ${r.unreachable.join(', ')}` : '';
  ctx.io.out(`Plot:          ${plot} (${r.trials} trial(s), ${r.points} points${where})`);
}
