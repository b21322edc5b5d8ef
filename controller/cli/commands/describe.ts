/** `ugro describe job NAME`: spec, status, conditions, per-host ranks, failures, recent events. */
import type { Command } from 'commander';
import { NotFoundError } from '../../../config/errors.ts';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  const describe = program.command('describe').description('details of a resource');
  describe
    .command('job')
    .description('spec, status, conditions, per-host ranks, failures and recent events of a job')
    .argument('<name>')
    .action(async (raw: string) => {
      const name = requireJobName(raw);
      const [{ openStore }, { describeJob }] = await Promise.all([
        import('../jobs.ts'),
        import('../render/describe.ts'),
      ]);
      const store = openStore(ctx);
      const [spec, status, events] = await Promise.all([
        store.readSpec(name),
        store.readStatus(name),
        store.readEvents(name, 15),
      ]);
      if (spec.kind === 'deleted' && !status) throw new NotFoundError(`job ${name} not found in ${store.dir}`);
      ctx.io.out(describeJob({ name, spec, status, events }));
    });
  describe
    .command('sweep')
    .description("a sweep's trials, best first, with their parameters and why each stopped")
    .argument('<name>')
    .action(async (raw: string) => {
      const name = requireJobName(raw);
      const [{ openStore }, { readSweeps }, { describeSweep }] = await Promise.all([
        import('../jobs.ts'),
        import('../sweeps.ts'),
        import('../render/sweeps.ts'),
      ]);
      const store = openStore(ctx);
      const [[row], events] = await Promise.all([readSweeps(store, [name]), store.readEvents(name, 15)]);
      ctx.io.out(describeSweep(row, events));
    });
}
