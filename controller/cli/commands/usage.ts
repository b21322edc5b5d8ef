/** `ugro usage`: each owner's recent GPU time, the figure fair share orders equal-priority jobs by. */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('usage')
    .description("each owner's recent GPU time (decayed), as fair share sees it")
    .option('-o, --output <format>', 'table|json', 'table')
    .action(async (o: { output: string }) => {
      const [{ readUsage }, { table }, { choiceFlag }, jobs] = await Promise.all([
        import('../../loop/usage.ts'),
        import('../output.ts'),
        import('../args.ts'),
        import('../jobs.ts'),
      ]);
      const format = choiceFlag('--output', o.output, ['table', 'json'] as const);
      const { owners, halfLifeHours } = await readUsage(jobs.openStore(ctx).dir, Date.now());
      if (format === 'json') {
        ctx.io.out(JSON.stringify({ halfLifeHours, owners }, null, 2));
        return;
      }
      if (!owners.length) {
        ctx.io.out('No GPU time recorded yet (the controller records it while jobs run).');
        return;
      }
      ctx.io.out(
        table(
          ['OWNER', 'GPU-HOURS'],
          owners.map((u) => [u.owner, u.gpuHours.toFixed(2)]),
        ),
      );
      ctx.io.out(`(GPU time halves every ${halfLifeHours} h; fewer hours go first among jobs of one priority)`);
    });
}
