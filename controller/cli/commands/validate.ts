/** `ugro validate FILE…`: check TrainingJob files; exit 1 if any is invalid or unreadable. */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('validate')
    .description('check TrainingJob files; every problem with file:line and field; exit 1 if any is invalid')
    .argument('<files...>')
    .action(async (files: string[]) => {
      const [{ formatIssue }, { parseTrainingJob }, { readInputFile }] = await Promise.all([
        import('../../../config/errors.ts'),
        import('../../api/trainingjob.ts'),
        import('../jobs.ts'),
      ]);
      for (const f of files) {
        const input = await readInputFile(f);
        const res = input.ok ? parseTrainingJob(input.text) : undefined;
        if (res?.ok) {
          ctx.io.out(`${f}: valid (${res.value.metadata.name})`);
          continue;
        }
        ctx.fail();
        ctx.io.err(`${f}: invalid`);
        if (!input.ok) ctx.io.err(`  ${f}: ${input.message}`);
        for (const i of res && !res.ok ? res.issues : []) ctx.io.err(`  ${formatIssue(f, i)}`);
      }
    });
}
