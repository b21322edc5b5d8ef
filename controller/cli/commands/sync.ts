/** `ugro sync [--timeout S]`: ask the running controller to fetch its git branch now; returns once applied. */
import type { Command } from 'commander';
import { intFlag } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('sync')
    .description(
      'GitOps: ask the running controller to fetch its branch now; returns when the head is applied ' +
        '(exit 1 if the fetch fails or the head is refused, saying why)',
    )
    .option('--timeout <seconds>', 'give up after this long (1..3600)', '120')
    .action(async (o: { timeout: string }) => {
      const timeoutMs = intFlag('--timeout', o.timeout, 1, 3600) * 1000;
      const [{ UgroError }, { requestSync }, { sourceName }] = await Promise.all([
        import('../../../config/errors.ts'),
        import('../../gitops/request.ts'),
        import('../../gitops/state.ts'),
      ]);
      const { state, request } = await requestSync(ctx.jobsDir, timeoutMs);
      const name = sourceName(state);
      if (!request.ok) throw new UgroError(`${name}: ${request.message}`);
      const rev = request.revision ? request.revision.slice(0, 12) : '?';
      const subject = state.appliedSubject && state.applied === request.revision ? ` "${state.appliedSubject}"` : '';
      ctx.io.out(`${name} at ${rev}${subject}: ${request.message}`);
    });
}
