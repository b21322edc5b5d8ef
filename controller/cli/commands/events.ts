/** `ugro events [NAME] [--limit N]`: the controller's recent events, all jobs or one. */
import type { Command } from 'commander';
import { intFlag, requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('events')
    .description('recent events, all jobs or one')
    .argument('[name]', 'only this job')
    .option('--limit <n>', 'how many, newest last (1..10000)', '50')
    .action(async (raw: string | undefined, o: { limit: string }) => {
      const name = raw === undefined ? undefined : requireJobName(raw);
      const limit = intFlag('--limit', o.limit, 1, 10_000);
      const [{ openStore }, { eventsTable }] = await Promise.all([import('../jobs.ts'), import('../render/events.ts')]);
      ctx.io.out(eventsTable(await openStore(ctx).readEvents(name, limit), { job: true }));
    });
}
